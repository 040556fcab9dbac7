#!/usr/bin/env bash
# The main job on a fresh machine, in one command: set up (once), search the MBConv space on the bundled digits
# with a local Ray, and export the best model to out/best-model. Extra arguments go to `nascore search`
# (e.g. --trials 4 --epochs 2 --workers 2).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/nascore ]; then
    python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    # Exactly the versions the test suite last passed with (constraints.txt); torch first, pinned, so pip takes
    # the CPU build on local disk instead of a multi-GB CUDA one.
    .venv/bin/python -m pip install --quiet -c constraints.txt torch==2.13.0
    .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[all]"
fi

rm -rf out/best-model
.venv/bin/nascore search search_spaces/mbconv.yaml --workers 2 --export out/best-model "$@"
.venv/bin/python -c "import nascore; m = nascore.load_model('out/best-model'); print('loaded', type(m).__name__)"
