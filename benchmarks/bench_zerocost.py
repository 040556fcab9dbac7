"""Zero-cost proxy throughput: mbconv-space architectures scored per minute on the CPU, one thread.

Samples architectures with the single-path rule (``nascore.oneshot.paths.uniform_rule``), builds each, and scores it
with every proxy on one batch of 64 digits (``nascore.zerocost.draw_batches``), repeating each scoring; per proxy the
median over architectures of the median over repeats, as milliseconds and as architectures per minute, for scoring
alone and with sampling + building added (what a search pays per candidate). The load average is recorded: on a
shared machine other processes slow every figure.

    .venv/bin/python benchmarks/bench_zerocost.py     # writes benchmarks/results/zerocost_throughput.json

``--processes P`` adds the machine's figure: P processes (one thread each, as a search's P workers) each sample,
build and score their share of ``--pool`` architectures; architectures per minute of wall time, per proxy.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nascore.nas.space import SearchSpace  # noqa: E402
from nascore.oneshot.paths import sample_path, uniform_rule  # noqa: E402
from nascore.training.data import load_dataset  # noqa: E402
from nascore.zerocost import PROXIES, draw_batches, score  # noqa: E402


@functools.lru_cache(maxsize=None)
def _process_setup(batch_size: int):
    """A worker's space and batch, loaded once per process (the warm-up), as a search's worker holds them."""
    torch.set_num_threads(1)
    space = SearchSpace.load(ROOT / "search_spaces" / "mbconv.yaml")
    return space, draw_batches(load_dataset("digits", None), batch_size, 1, seed=0)


def _score_share(args: tuple[str, int, int, int, int, Any]) -> int:
    """One process's share: sample, build and score architectures ``start, start + step, ...`` below ``count``.
    The barrier holds each share until every process has one: an idle pool may hand two shares to one process."""
    name, start, step, count, batch_size, barrier = args
    space, batches = _process_setup(batch_size)
    barrier.wait()
    for i in range(start, count, step):
        graph, _ = sample_path(space, uniform_rule(1, i))
        torch.manual_seed(i)
        score(name, graph.build(), batches, graph)
    return len(range(start, count, step))


def machine_throughput(processes: int, pool: int, batch_size: int) -> list[dict[str, float]]:
    """Per proxy: ``pool`` architectures sampled, built and scored by ``processes`` processes; per minute of wall."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import Manager

    rows = []
    with ProcessPoolExecutor(processes) as workers, Manager() as manager:
        barrier = manager.Barrier(processes)
        list(workers.map(_score_share, [("params", p, processes, processes, batch_size, barrier)
                                        for p in range(processes)]))
        for name in PROXIES:
            t0 = time.perf_counter()
            done = sum(workers.map(_score_share, [(name, p, processes, pool, batch_size, barrier)
                                                  for p in range(processes)]))
            wall = time.perf_counter() - t0
            rows.append({"proxy": name, "architectures": done, "wall_s": wall, "per_minute": 60 * done / wall})
            print(f"{name:>10}: {60 * done / wall:7.0f} architectures / min with {processes} processes "
                  f"(sample + build + score, {done} in {wall:.1f} s)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--processes", type=int, default=0, help="also measure P processes together (0: skip)")
    parser.add_argument("--pool", type=int, default=120, help="architectures scored in the --processes figure")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "zerocost_throughput.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = SearchSpace.load(ROOT / "search_spaces" / "mbconv.yaml")
    batches = draw_batches(load_dataset("digits", None), args.batch_size, 1, seed=0)
    build_times, sizes, per_proxy = [], [], {name: [] for name in PROXIES}
    for i in range(args.architectures):
        t0 = time.perf_counter()
        graph, _ = sample_path(space, uniform_rule(0, i))
        torch.manual_seed(i)
        model = graph.build()
        build_times.append(time.perf_counter() - t0)
        sizes.append(graph.analyse().params)
        for name in PROXIES:
            score(name, model, batches, graph)                     # warm-up
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                score(name, model, batches, graph)
                times.append(time.perf_counter() - t0)
            per_proxy[name].append(statistics.median(times))
    build = statistics.median(build_times)
    rows = []
    for name, times in per_proxy.items():
        ms = statistics.median(times)
        rows.append({"proxy": name, "score_ms": ms * 1e3, "per_minute": 60 / ms,
                     "per_minute_with_build": 60 / (ms + build)})
        print(f"{name:>10}: {ms * 1e3:8.2f} ms  {60 / ms:9.0f} / min scoring, {60 / (ms + build):7.0f} / min with "
              f"sample + build")
    command = "python benchmarks/bench_zerocost.py" + "".join(
        f" --{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out")
    result = {"benchmark": "zerocost_throughput", "command": command,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                          "threads": torch.get_num_threads(), "torch": torch.__version__},
              "space": "mbconv", "data": "digits", "batch_size": args.batch_size, "batches": 1,
              "architectures": args.architectures, "repeats": args.repeats,
              "median_params": statistics.median(sizes), "sample_build_ms": build * 1e3, "rows": rows}
    if args.processes:
        result["machine_rows"] = machine_throughput(args.processes, args.pool, args.batch_size)
        result["processes"] = args.processes
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}\ncommand: {command}")


if __name__ == "__main__":
    main()
