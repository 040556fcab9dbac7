"""Architecture estimation: sample -> validate -> shapes, params, MACs without weights, against a CPU build.

For each space, draws the same architectures for both paths (a seeded random trial), interleaves the two
measurements, and reports medians: architectures per second for nascore's weight-free analysis, and for building
the network on the CPU and counting there (parameters, and MACs from one CPU forward under the same counter).

    .venv/bin/python benchmarks/bench_estimation.py            # writes benchmarks/results/estimation.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nascore.nas.space import SearchSpace  # noqa: E402
from nascore.blocks.testing import measure  # noqa: E402


class RandomTrial:
    """A seeded define-by-run trial with no storage: what a sampler hands the space, minus Optuna's bookkeeping."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def suggest_categorical(self, name, choices):
        return self.rng.choice(list(choices))

    def suggest_int(self, name, low, high, step=1, log=False):
        return self.rng.randrange(low, high + 1, step)

    def suggest_float(self, name, low, high, step=None, log=False):
        if step:
            return low + step * self.rng.randrange(int(round((high - low) / step)) + 1)
        return self.rng.uniform(low, high)


def estimate(space: SearchSpace, seed: int):
    graph = space.sample(RandomTrial(seed))          # sample + validate + shapes + params + MACs
    a = graph.analyse()
    return a.params, a.macs, len(graph)


def cpu_build(space: SearchSpace, seed: int):
    graph = space.sample(RandomTrial(seed))
    model = graph.build()
    real = measure(model, [graph.input_shape], device="cpu")
    return real.params, real.macs


def bench(space_name: str, n: int, n_cpu: int) -> dict:
    space = SearchSpace.load(ROOT / "search_spaces" / f"{space_name}.yaml")
    for seed in range(3):                             # warm up imports and caches
        estimate(space, 10_000 + seed)
    est_times, cpu_times, sizes = [], [], []
    for i in range(n):
        t0 = time.perf_counter()
        params, macs, size = estimate(space, i)
        est_times.append(time.perf_counter() - t0)
        sizes.append(size)
        if i < n_cpu:                                 # interleaved: the same architecture, built for real
            t0 = time.perf_counter()
            real_params, real_macs = cpu_build(space, i)
            cpu_times.append(time.perf_counter() - t0)
            assert (real_params, real_macs) == (params, macs), (space_name, i)
    est = statistics.median(est_times)
    cpu = statistics.median(cpu_times)
    return {"space": space_name, "architectures": n, "cpu_built": n_cpu, "median_nodes": statistics.median(sizes),
            "estimate_ms": est * 1e3, "estimate_per_s": 1 / est, "cpu_build_ms": cpu * 1e3, "cpu_per_s": 1 / cpu,
            "speedup": cpu / est}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="architectures estimated per space")
    parser.add_argument("--n-cpu", type=int, default=15, help="of those, built on the CPU too")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "estimation.json"))
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    rows = [bench(name, args.n, args.n_cpu) for name in ("mbconv", "macro", "mbconv_imagenet")]
    print(f"{'space':<16} {'nodes':>5} {'estimate ms':>11} {'arch/s':>8} {'CPU build ms':>12} {'arch/s':>7} "
          f"{'speed-up':>8}")
    for r in rows:
        print(f"{r['space']:<16} {r['median_nodes']:>5.0f} {r['estimate_ms']:>11.2f} {r['estimate_per_s']:>8.0f} "
              f"{r['cpu_build_ms']:>12.1f} {r['cpu_per_s']:>7.1f} {r['speedup']:>7.0f}x")
    result = {"benchmark": "estimation", "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
