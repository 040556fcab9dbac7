"""Zero-cost proxies against stand-alone training: how well each proxy ranks the 24 mbconv architectures.

Reads the stand-alone ground truth (``benchmarks/results/standalone_mbconv.json``, made by
``benchmarks/bench_standalone.py``: 24 distinct mbconv-space architectures, each trained 2 epochs on digits with 3
seeds), rebuilds every architecture from its stored graph document, and scores it with every proxy of
:mod:`nascore.zerocost` at the evaluators' defaults (one batch of 64 training samples drawn with seed 0; the
initial weights built with ``torch.manual_seed(seed + index)``, the seed its first stand-alone training started
from). Per proxy: Kendall tau and Spearman rho (``bench_standalone.rank_correlations``) against the 3-seed mean
validation accuracy (``val_acc_mean``, the less noisy target) and against the first seed's (``val_acc``, what a
search trial would have measured), and whether the proxy beat the ``params`` baseline (a higher Kendall tau against
``val_acc_mean``). Nothing is tuned to this benchmark: the settings are the evaluators' defaults.

    .venv/bin/python -m benchmarks.bench_zerocost_ranking     # writes benchmarks/results/zerocost_ranking.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_standalone import load_standalone, rank_correlations  # noqa: E402
from nascore.graph.core import Graph  # noqa: E402
from nascore.training.data import load_dataset  # noqa: E402
from nascore.zerocost import PROXIES, draw_batches, score  # noqa: E402

STANDALONE = ROOT / "benchmarks" / "results" / "standalone_mbconv.json"
OUT = ROOT / "benchmarks" / "results" / "zerocost_ranking.json"
TARGETS = ("val_acc_mean", "val_acc")


def scores(archs: Sequence[dict], batch_size: int, batches: int, seed: int, data_name: str = "digits",
           data_params: dict | None = None) -> dict[str, list[float | None]]:
    """Every proxy's score of every architecture (None where the proxy failed on it), in ``archs`` order, on
    batches of the ground truth's data set."""
    data = load_dataset(data_name, None, **dict(data_params or {}))
    drawn = draw_batches(data, batch_size, batches, seed)
    result: dict[str, list[float | None]] = {name: [] for name in PROXIES}
    for a in archs:
        graph = Graph.from_dict(a["graph"], source=f"architecture {a['index']}")
        for name in PROXIES:
            torch.manual_seed(seed + a["index"])
            model = graph.build()
            try:
                result[name].append(score(name, model, drawn if PROXIES[name].data else [], graph, seed=seed))
            except Exception as exc:  # noqa: BLE001 - recorded, not fatal: a failed proxy ranks nothing
                print(f"{name} failed on architecture {a['index']}: {exc}", file=sys.stderr)
                result[name].append(None)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--standalone", default=str(STANDALONE))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    archs = load_standalone(args.standalone)
    truth = json.loads(Path(args.standalone).read_text())
    started = time.perf_counter()
    by_proxy = scores(archs, args.batch_size, args.batches, args.seed, truth.get("data", "digits"),
                      truth.get("data_params"))
    rows = []
    for name, values in by_proxy.items():
        kept = [(v, a) for v, a in zip(values, archs) if v is not None]
        row = {"proxy": name, "scored": len(kept), "failed": len(values) - len(kept)}
        for target in TARGETS:
            corr = rank_correlations([v for v, _ in kept], [a[target] for _, a in kept])
            row[target] = {k: corr[k] for k in ("kendall_tau", "spearman_rho", "kendall_p", "spearman_p")}
        rows.append(row)
    baseline = next(r for r in rows if r["proxy"] == "params")["val_acc_mean"]["kendall_tau"]
    for row in rows:
        if row["proxy"] != "params":
            row["beats_params"] = bool(row["val_acc_mean"]["kendall_tau"] > baseline)
    doc = {"benchmark": "zerocost_ranking",
           "command": " ".join([".venv/bin/python -m benchmarks.bench_zerocost_ranking",
                                *map(shlex.quote, argv if argv is not None else sys.argv[1:])]),
           "standalone": str(Path(args.standalone).resolve().relative_to(ROOT))
           if Path(args.standalone).resolve().is_relative_to(ROOT) else args.standalone,
           "architectures": len(archs), "batch_size": args.batch_size, "batches": args.batches, "seed": args.seed,
           "init_seed_rule": "architecture i is scored with the initial weights of torch.manual_seed(seed + i)",
           "beats_params_rule": "Kendall tau against val_acc_mean above that of params",
           "targets": list(TARGETS), "wall_seconds": time.perf_counter() - started,
           "torch": torch.__version__, "platform": platform.platform(), "rows": rows,
           "scores": {name: values for name, values in by_proxy.items()},
           "hashes": [a["hash"] for a in archs]}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{'proxy':<10} {'tau(mean)':>9} {'rho(mean)':>9} {'tau(val)':>9} {'rho(val)':>9}  beats params")
    for r in rows:
        m, v = r["val_acc_mean"], r["val_acc"]
        print(f"{r['proxy']:<10} {m['kendall_tau']:>9.3f} {m['spearman_rho']:>9.3f} {v['kendall_tau']:>9.3f} "
              f"{v['spearman_rho']:>9.3f}  {r.get('beats_params', '-')}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
