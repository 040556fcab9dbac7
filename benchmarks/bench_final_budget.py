"""How far apart architectures of a ground truth stay at a longer budget: its worst, median and best trained again.

    .venv/bin/python -m benchmarks.bench_final_budget --space benchmarks/spaces/mbconv_scaled_digits.yaml \\
        --standalone benchmarks/results/standalone_mbconv_scaled_digits.json --epochs 15 \\
        -o benchmarks/results/final_budget_scaled_digits.json

A search's best judged at ``bench_oneshot --final-epochs N`` means little without this context: if every
architecture of the space reaches the same accuracy after N epochs, a gap of one point between two searches' bests
says nothing. The ground truth's worst, median and best (by their mean validation accuracy at the ground truth's own
budget) are trained with N epochs and the seeds of ``--final-epochs``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import benchmarks.bench_oneshot as oneshot
from benchmarks.bench_standalone import load_standalone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default=str(oneshot.SPACE))
    parser.add_argument("--standalone", default=str(oneshot.STANDALONE))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", default=oneshot.FINAL_SEEDS)
    parser.add_argument("-o", "--out", required=True)
    args = parser.parse_args(argv)
    oneshot.SPACE, oneshot.STANDALONE = Path(args.space).resolve(), Path(args.standalone).resolve()
    seeds = tuple(int(s) for s in args.seeds.split(","))

    from nascore.graph.core import Graph
    from nascore.io.atomic import atomic_write_text

    archs = sorted(load_standalone(oneshot.STANDALONE), key=lambda a: a["val_acc_mean"])
    picked = {"worst": archs[0], "median": archs[len(archs) // 2], "best": archs[-1]}
    rows = {}
    for role, arch in picked.items():
        trained = oneshot.standalone(Graph.from_dict(arch["graph"]), seeds, args.epochs)
        rows[role] = {"index": arch["index"], "hash": arch["hash"], "params": arch["params"],
                      "ground_truth_val_acc_mean": arch["val_acc_mean"], **trained}
        print(f"{role}: {arch['val_acc_mean']:.4f} at {oneshot.standalone_epochs()} epochs -> "
              f"{trained['val_acc_mean']:.4f} at {args.epochs} (" +
              ", ".join(f"{r['val_acc']:.4f}" for r in trained["runs"]) + ")", flush=True)
    spread = rows["best"]["val_acc_mean"] - rows["worst"]["val_acc_mean"]
    result = {"command": " ".join([".venv/bin/python -m benchmarks.bench_final_budget", *(argv or sys.argv[1:])]),
              "epochs": args.epochs, "seeds": list(seeds), "ground_truth_epochs": oneshot.standalone_epochs(),
              "spread_points": 100 * spread,
              "seed_sd_points": {role: 100 * statistics.stdev(r["val_acc"] for r in row["runs"])
                                 for role, row in rows.items()},
              "architectures": rows}
    atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    print(f"spread {100 * spread:.1f} points; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
