"""Training on the CPU in channels-last against contiguous (NCHW) memory: seconds per epoch of real trainings.

The ground truth's first architectures (``bench_standalone`` results: mbconv networks on ``scaled_digits``) are each
trained one epoch with ``channels_last`` off and on, interleaved, ``--repeats`` times, one thread; median seconds per
epoch and the ratio. The trainer's ``channels_last`` setting is on by default on CUDA and CPU since this measurement.

    .venv/bin/python -m benchmarks.bench_memory_format     # -> benchmarks/results/memory_format_cpu.json (2 min)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STANDALONE = ROOT / "benchmarks" / "results" / "standalone_mbconv_scaled_digits_6ep.json"
SPACE = ROOT / "benchmarks" / "spaces" / "mbconv_scaled_digits.yaml"


def main(argv: list[str] | None = None) -> int:
    from benchmarks.bench_standalone import load_standalone, space_splits, train_config, train_one
    from nascore.graph.core import Graph
    from nascore.io.atomic import atomic_write_text
    from nascore.nas.space import SearchSpace

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("-o", "--out", default=str(ROOT / "benchmarks" / "results" / "memory_format_cpu.json"))
    args = parser.parse_args(argv)
    space = SearchSpace.load(SPACE)
    splits = space_splits(space)
    rows = []
    for arch in load_standalone(STANDALONE)[:args.architectures]:
        graph = Graph.from_dict(arch["graph"])
        seconds = {False: [], True: []}
        for _ in range(args.repeats):
            for channels_last in (False, True):
                run = train_one(graph, splits, train_config(space, 1, 0, {"channels_last": channels_last}))
                seconds[channels_last].append(run["train_seconds"])
        row = {"hash": arch["hash"], "params": arch["params"], "contiguous_s": statistics.median(seconds[False]),
               "channels_last_s": statistics.median(seconds[True])}
        row["speedup"] = row["contiguous_s"] / row["channels_last_s"]
        rows.append(row)
        print(f"{arch['params']:7,d} params: contiguous {row['contiguous_s']:.2f} s, channels-last "
              f"{row['channels_last_s']:.2f} s per epoch: x{row['speedup']:.2f}")
    doc = {"command": " ".join([".venv/bin/python -m benchmarks.bench_memory_format", *(argv or sys.argv[1:])]),
           "load_average": os.getloadavg(), "median_speedup": statistics.median(r["speedup"] for r in rows),
           "architectures": rows}
    atomic_write_text(Path(args.out), json.dumps(doc, indent=1) + "\n")
    print(f"median speed-up x{doc['median_speedup']:.2f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
