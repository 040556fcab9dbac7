"""Search overhead: a search whose trials each do a fixed 1 s of work, with 1 and 2 workers.

Per-trial framework overhead = (wall time - trials x work / workers) / trials, measured two ways: for the whole
search call (Ray start-up and actor creation included) and in steady state (from the first trial's start to the
last trial's end, as the driver saw them). Also the speed-up of 2 workers over 1 and the peak resident memory of
the driver plus every Ray process (sampled every 50 ms).

    .venv/bin/python benchmarks/bench_search_overhead.py --trials 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["NASCORE_PLUGINS"] = "benchmarks.sleep_evaluator"
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


class PeakMemory(threading.Thread):
    """Peak summed RSS of this process and all its descendants (Ray's raylet, GCS, workers)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = 0
        self.running = True

    def run(self):
        import psutil

        me = psutil.Process()
        while self.running:
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.05)


def one_search(trials: int, workers: int, work: float) -> dict:
    import ray

    from nascore.nas.rundir import RunDir
    from nascore.nas.driver import search

    marks: list[float] = []

    def progress(line: str) -> None:
        marks.append(time.perf_counter())

    monitor = PeakMemory()
    monitor.start()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = search(ROOT / "search_spaces" / "mbconv.yaml", runs_root=tmp, trials=trials, epochs=1,
                     workers=workers, evaluator="sleep", strategy="random", pruner="none", progress=progress)
        wall = time.perf_counter() - t0
        study = RunDir.open(run).load_study()
        starts = [t.datetime_start.timestamp() for t in study.trials if t.datetime_start]
        ends = [t.datetime_complete.timestamp() for t in study.trials if t.datetime_complete]
        trained = sum(1 for t in study.trials if t.user_attrs.get("kind") == "trained")
    monitor.running = False
    monitor.join()
    assert not ray.is_initialized()
    steady = max(ends) - min(starts)
    ideal = trials * work / workers
    return {"trials": trials, "trained": trained, "workers": workers, "wall_s": wall, "steady_s": steady,
            "overhead_per_trial_s": (wall - ideal) / trials, "steady_overhead_per_trial_s": (steady - ideal) / trials,
            "peak_rss_mb": monitor.peak / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of (1 worker, 2 workers)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "search_overhead.json"))
    args = parser.parse_args()
    work = float(os.environ.get("NASCORE_SLEEP_SECONDS", "1.0"))
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for workers in (1, 2):
            runs[workers].append(one_search(args.trials, workers, work))
    rows = []
    for workers, results in runs.items():
        rows.append({"workers": workers, **{k: statistics.median(r[k] for r in results) for k in
                                            ("wall_s", "steady_s", "overhead_per_trial_s",
                                             "steady_overhead_per_trial_s", "peak_rss_mb")}})
    speedup = statistics.median(a["wall_s"] / b["wall_s"] for a, b in zip(runs[1], runs[2]))
    steady_speedup = statistics.median(a["steady_s"] / b["steady_s"] for a, b in zip(runs[1], runs[2]))
    print(f"{args.trials} trials x {work:.1f} s of work, medians of {args.repeats} interleaved repeats")
    print(f"{'workers':>7} {'wall s':>7} {'overhead/trial s':>16} {'steady overhead/trial s':>23} {'peak MB':>8}")
    for r in rows:
        print(f"{r['workers']:>7} {r['wall_s']:>7.1f} {r['overhead_per_trial_s']:>16.3f} "
              f"{r['steady_overhead_per_trial_s']:>23.3f} {r['peak_rss_mb']:>8.0f}")
    print(f"speed-up of 2 workers over 1: {speedup:.2f}x (steady state {steady_speedup:.2f}x)")
    result = {"benchmark": "search_overhead", "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "work_s": work,
              "rows": rows, "speedup": speedup, "steady_speedup": steady_speedup, "raw": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
