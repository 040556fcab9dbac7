"""On a GPU machine: supernet training speed with AMP + channels-last against plain fp32, and a short one-shot
search over the trained supernet on the GPU.

The mbconv space re-targeted to 3x32x32 inputs trains on synthetic CIFAR-sized data (no download) for a fixed
number of steps in each mode; the figure is images per second of supernet training (median over epochs after the
first), and the seconds per candidate of a one-shot search that scores on the GPU. Results go to
``benchmarks/results/supernet_gpu.json``.

    .venv/bin/python benchmarks/bench_supernet_gpu.py            # needs CUDA; exits 2 without it
    .venv/bin/python benchmarks/bench_supernet_gpu.py --smoke --device cpu   # the code path, tiny, anywhere

``--smoke`` shrinks everything (512 images, 1 epoch, 4 candidates) and writes nothing to ``benchmarks/results``:
it checks that the script runs, on a machine with no GPU too, before a device's minutes are spent on it.
"""

from __future__ import annotations

import argparse
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


def train(space: Path, out: Path, amp: bool, device: str, data: dict, epochs: int) -> dict:
    from nascore.oneshot.training import train_supernet

    t0 = time.perf_counter()
    summary = train_supernet(space, out, data="synthetic", data_params=data, epochs=epochs, device=device,
                             train={"batch_size": 256, "amp": amp, "channels_last": amp, "lr": 0.1},
                             resume=False, progress=print)
    from nascore.training.data import load_dataset

    seconds = [h["seconds"] for h in summary["history"][1:]] or [summary["history"][0]["seconds"]]
    n_train = len(load_dataset("synthetic", **data).train)
    return {"amp_channels_last": amp, "wall_s": time.perf_counter() - t0,
            "epoch_s_median": statistics.median(seconds),
            "images_per_s": n_train / statistics.median(seconds),
            "paths_val_acc": summary.get("paths_val_acc")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, nothing written: does the script run")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("no CUDA device: run this on a GPU machine (or --smoke --device cpu)", file=sys.stderr)
        return 2
    if not cuda and not args.smoke:
        print("--device cpu only with --smoke: the figures are a GPU's", file=sys.stderr)
        return 2
    from nascore.nas.driver import search

    data, epochs, candidates = (({"n": 512, "shape": DATA["shape"]}, 1, 4) if args.smoke else (DATA, 4, 40))
    modes = (False, True) if cuda else (False,)           # AMP is a CUDA mode here
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        space = _space(tmp)
        rows = [train(space, tmp / f"sn_{amp}", amp, args.device, data, epochs) for amp in modes]
        t0 = time.perf_counter()
        run = search(space, runs_root=tmp / "runs", data="synthetic", data_params=data, trials=candidates,
                     workers=1, gpus_per_trial=1 if cuda else 0, evaluator="supernet", strategy="evolution",
                     evaluator_options={"checkpoint": str(tmp / f"sn_{modes[-1]}")}, progress=print)
        search_s = time.perf_counter() - t0
    result = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
              "training": rows, "speedup_amp_channels_last": rows[0]["epoch_s_median"] / rows[-1]["epoch_s_median"],
              f"search_{candidates}_candidates_s": search_s, "run": str(run)}
    print(json.dumps(result, indent=2))
    if not args.smoke:
        out = ROOT / "benchmarks" / "results" / "supernet_gpu.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
