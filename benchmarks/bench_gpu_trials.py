"""On a GPU machine: prove that a trial given a GPU trains on it, and measure trials per hour with fractional GPUs.

Runs a small CIFAR-style search (synthetic 3x32x32 data, the macro space re-targeted to 3 input channels) with
``--gpus-per-trial`` 0.5 and two workers, then checks from the run's own records that every trained trial ran on a
CUDA device, and samples ``nvidia-smi`` utilisation while it runs. Also compares images/s of the built zoo models
with AMP + channels-last against plain fp32.

    .venv/bin/python benchmarks/bench_gpu_trials.py            # needs CUDA; exits 2 without it
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def gpu_utilisation(samples: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5).stdout
            samples.append(int(out.split()[0]))
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            pass
        time.sleep(0.5)


def search_on_gpu(trials: int) -> dict:
    import yaml

    from nascore.nas.rundir import RunDir
    from nascore.nas.driver import search

    doc = yaml.safe_load((ROOT / "search_spaces" / "macro.yaml").read_text())
    doc["graph"]["input"] = [3, 32, 32]
    samples: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=gpu_utilisation, args=(samples, stop), daemon=True)
    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp) / "macro_cifar.yaml"
        space.write_text(yaml.safe_dump(doc))
        watcher.start()
        t0 = time.perf_counter()
        run = search(space, runs_root=tmp, data="synthetic", data_params={"n": 8192, "shape": [3, 32, 32]},
                     trials=trials, epochs=3, workers=2, gpus_per_trial=0.5, cpus_per_trial=2,
                     train={"batch_size": 128}, pruner="none", progress=print)
        wall = time.perf_counter() - t0
        stop.set()
        study = RunDir.open(run).load_study()
        devices = [t.user_attrs.get("device") for t in study.trials if t.user_attrs.get("kind") == "trained"]
    return {"trials": trials, "wall_s": wall, "trials_per_hour": trials / wall * 3600, "devices": devices,
            "all_on_cuda": all(str(d).startswith("cuda") for d in devices),
            "gpu_util_median": statistics.median(samples) if samples else None,
            "gpu_util_max": max(samples) if samples else None}


def throughput(name: str, batch: int = 64, side: int = 224, steps: int = 20) -> dict:
    from nascore import Graph

    graph = Graph.load(ROOT / "graphs" / f"{name}.yaml")
    model = graph.build().cuda().eval()
    x = torch.randn(batch, 3, side, side, device="cuda")
    result = {"model": name, "batch": batch}
    for label, amp, channels_last in (("fp32", False, False), ("amp_channels_last", True, True)):
        m = model.to(memory_format=torch.channels_last) if channels_last else model
        xi = x.to(memory_format=torch.channels_last) if channels_last else x
        with torch.no_grad(), torch.autocast("cuda", enabled=amp):
            for _ in range(5):
                m(xi)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):
                m(xi)
            torch.cuda.synchronize()
        result[f"{label}_img_per_s"] = batch * steps / (time.perf_counter() - t0)
    return result


def main() -> None:
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark runs on a GPU machine only", file=sys.stderr)
        sys.exit(2)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    rows = [throughput(n) for n in ("resnet50", "mobilenet_v2", "efficientnet_b0", "shufflenet_v2_x1_0")]
    for r in rows:
        print(f"{r['model']:<20} fp32 {r['fp32_img_per_s']:8.0f} img/s   AMP+channels-last "
              f"{r['amp_channels_last_img_per_s']:8.0f} img/s")
    gpu = search_on_gpu(int(os.environ.get("NASCORE_GPU_TRIALS", "8")))
    print(json.dumps(gpu, indent=2))
    out = ROOT / "benchmarks" / "results" / "gpu.json"
    out.write_text(json.dumps({"machine": {"platform": platform.platform(), "gpu": torch.cuda.get_device_name(0)},
                               "throughput": rows, "search": gpu}, indent=2))
    if not gpu["all_on_cuda"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
