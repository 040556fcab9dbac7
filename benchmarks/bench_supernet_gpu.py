"""On a GPU machine: supernet training speed with AMP + channels-last against plain fp32, and a short one-shot
search over the trained supernet on the GPU.

The mbconv space re-targeted to 3x32x32 inputs trains on synthetic CIFAR-sized data (no download) for a fixed
number of steps in each mode; the figure is images per second of supernet training (median over epochs after the
first), and the seconds per candidate of a one-shot search that scores on the GPU. Results go to
``benchmarks/results/supernet_gpu.json``.

    .venv/bin/python benchmarks/bench_supernet_gpu.py            # needs CUDA; exits 2 without it
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = {"n": 8192, "shape": [3, 32, 32]}


def _space(tmp: Path) -> Path:
    import yaml

    doc = yaml.safe_load((ROOT / "search_spaces" / "mbconv.yaml").read_text())
    doc["graph"]["input"] = [3, 32, 32]
    doc["search"].pop("constraints", None)
    path = tmp / "mbconv_cifar.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def train(space: Path, out: Path, amp: bool) -> dict:
    from nascore.oneshot.training import train_supernet

    t0 = time.perf_counter()
    summary = train_supernet(space, out, data="synthetic", data_params=DATA, epochs=4, device="cuda",
                             train={"batch_size": 256, "amp": amp, "channels_last": amp, "lr": 0.1},
                             resume=False, progress=print)
    from nascore.training.data import load_dataset

    seconds = [h["seconds"] for h in summary["history"][1:]]
    n_train = len(load_dataset("synthetic", **DATA).train)
    return {"amp_channels_last": amp, "wall_s": time.perf_counter() - t0,
            "epoch_s_median": statistics.median(seconds),
            "images_per_s": n_train / statistics.median(seconds),
            "paths_val_acc": summary.get("paths_val_acc")}


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: run this on a GPU machine", file=sys.stderr)
        return 2
    from nascore.nas.driver import search

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        space = _space(tmp)
        rows = [train(space, tmp / f"sn_{amp}", amp) for amp in (False, True)]
        t0 = time.perf_counter()
        run = search(space, runs_root=tmp / "runs", data="synthetic", data_params=DATA, trials=40, workers=1,
                     gpus_per_trial=1, evaluator="supernet", strategy="evolution",
                     evaluator_options={"checkpoint": str(tmp / "sn_True")}, progress=print)
        search_s = time.perf_counter() - t0
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "training": rows,
              "speedup_amp_channels_last": rows[0]["epoch_s_median"] / rows[1]["epoch_s_median"],
              "search_40_candidates_s": search_s, "run": str(run)}
    out = ROOT / "benchmarks" / "results" / "supernet_gpu.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
