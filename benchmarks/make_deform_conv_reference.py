"""Record torchvision's deformable convolution on the cases of tests/plugins/deform_conv_cases.py.

torchvision does not install beside the pinned torch (2.13, CPU), so this runs in the environment
benchmarks/make_torchvision_reference.py describes (torch 2.14.1 + torchvision 0.29.1, nascore installed from this
checkout with ``pip install --no-deps -e .``):

    /tmp/nascore-tv/bin/python benchmarks/make_deform_conv_reference.py

For each case it runs ``torchvision.ops.deform_conv2d`` in float64 and writes its output and the gradients of a fixed
loss (each projected on a fixed direction) to tests/plugins/data/deform_conv_reference.json, which
tests/plugins/test_context.py recomputes with nascore's pure-torch ``deform_conv2d_torch`` under the pinned torch.
Here it also compares the two directly (float64 and float32) and checks that the ``deform_conv`` block runs on
torchvision's operator when torchvision imports, printing the largest differences.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torchvision.ops import deform_conv2d

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nascore_plugins import context  # noqa: E402
from tests.plugins.deform_conv_cases import CASES, FIXTURE, run  # noqa: E402


def main() -> None:
    record = {"torch": torch.__version__, "torchvision": __import__("torchvision").__version__, "cases": {}}
    for name, case in CASES.items():
        out, grads = run(deform_conv2d, case)
        mine, my_grads = run(context.deform_conv2d_torch, case)
        out32, _ = run(deform_conv2d, case, torch.float32)
        mine32, _ = run(context.deform_conv2d_torch, case, torch.float32)
        grad_diff = max(abs(grads[k] - my_grads[k]) for k in grads)
        print(f"{name}: output {tuple(out.shape)}, max |torchvision - pure torch| float64 "
              f"{(out - mine).abs().max().item():.2e}, float32 {(out32 - mine32).abs().max().item():.2e}; "
              f"projected gradients float64 {grad_diff:.2e}")
        record["cases"][name] = {"shape": list(out.shape), "output": out.flatten().tolist(), "gradients": grads}
    assert context._torchvision_op() is deform_conv2d, "the deform_conv block does not use torchvision here"
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {FIXTURE.relative_to(ROOT)} ({FIXTURE.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
