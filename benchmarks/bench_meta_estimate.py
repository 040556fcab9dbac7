"""Per block: a hand-written ``infer`` (Tally formula) against the meta-device estimate a block without one gets.

For each built-in block on a 16x32x32 input (64x16x16 for the wide ones), times three ways to get the same
Inference, interleaved, and reports medians per call: the block's ``infer``; ``estimate`` with its cache cleared
(build on the meta device, one forward under FlopCounterMode); and ``estimate`` answered from its cache. Every
estimate is asserted equal to the formula (shapes, parameters, MACs) before timing.

    .venv/bin/python benchmarks/bench_meta_estimate.py        # writes benchmarks/results/meta_estimate.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nascore.blocks.estimate import estimate  # noqa: E402
from nascore.blocks.registry import get_block  # noqa: E402

CASES = [  # (block, input shapes, parameters): the built-ins a search space is made of
    ("conv_bn_act", [(16, 32, 32)], dict(out=32, stride=2)),
    ("depthwise_separable", [(16, 32, 32)], dict(out=32, se_ratio=0.25)),
    ("mbconv", [(16, 32, 32)], dict(out=24, expand=6, kernel=5, se_ratio=0.25)),
    ("fused_mbconv", [(16, 32, 32)], dict(out=24)),
    ("inverted_residual", [(16, 32, 32)], dict(out=24, stride=2)),
    ("shufflenet_v2", [(16, 32, 32)], dict(out=32, stride=2)),
    ("resnet_basic", [(16, 32, 32)], dict(out=32, stride=2)),
    ("resnet_bottleneck", [(64, 16, 16)], dict(out=64)),
    ("res2net", [(64, 16, 16)], dict(out=64)),
    ("dense_block", [(16, 32, 32)], {}),
    ("inception_v3_a", [(64, 16, 16)], {}),
    ("se", [(64, 16, 16)], {}),
    ("max_pool", [(16, 32, 32)], {}),
    ("global_avg_pool", [(16, 32, 32)], {}),
    ("linear", [(64,)], dict(out=10)),
    ("add", [(16, 32, 32), (16, 32, 32)], {}),
    ("fpn", [(16, 32, 32), (32, 16, 16), (64, 8, 8)], dict(out=32)),
]


def _median_call(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(name, in_shapes, params, rounds: int, repeats: int) -> dict:
    spec = get_block(name)
    resolved = spec.resolve(params)
    formula = spec.infer(in_shapes, **resolved)
    estimate.cache_clear()
    measured = estimate(spec, in_shapes, resolved)
    assert (list(measured.outputs.values()), measured.params, measured.macs) == \
        (list(formula.outputs.values()), formula.params, formula.macs), name

    def cold():
        estimate.cache_clear()
        estimate(spec, in_shapes, resolved)

    infer_s, cold_s, warm_s = [], [], []
    for _ in range(rounds):                           # interleaved, so drift hits all three alike
        infer_s.append(_median_call(lambda: spec.infer(in_shapes, **resolved), repeats * 20))
        cold_s.append(_median_call(cold, repeats))
        estimate(spec, in_shapes, resolved)
        warm_s.append(_median_call(lambda: estimate(spec, in_shapes, resolved), repeats * 20))
    infer, cold_, warm = (statistics.median(x) for x in (infer_s, cold_s, warm_s))
    return {"block": name, "inputs": [list(s) for s in in_shapes], "params": params, "infer_us": infer * 1e6,
            "estimate_ms": cold_ * 1e3, "cached_us": warm * 1e6, "ratio": cold_ / infer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per block")
    parser.add_argument("--repeats", type=int, default=10, help="meta-device estimates per round (formulas: 20x)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "meta_estimate.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [bench(name, shapes, params, args.rounds, args.repeats) for name, shapes, params in CASES]
    print(f"{'block':<20} {'infer us':>9} {'estimate ms':>11} {'cached us':>9} {'ratio':>6}")
    for r in rows:
        print(f"{r['block']:<20} {r['infer_us']:>9.1f} {r['estimate_ms']:>11.2f} {r['cached_us']:>9.1f} "
              f"{r['ratio']:>5.0f}x")
    summary = {key: statistics.median(r[key] for r in rows) for key in ("infer_us", "estimate_ms", "cached_us",
                                                                         "ratio")}
    print(f"{'median of blocks':<20} {summary['infer_us']:>9.1f} {summary['estimate_ms']:>11.2f} "
          f"{summary['cached_us']:>9.1f} {summary['ratio']:>5.0f}x")
    result = {"benchmark": "meta_estimate", "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
              "rows": rows, "median": summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
