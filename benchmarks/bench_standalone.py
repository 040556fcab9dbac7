"""Stand-alone ground truth for cheap evaluators: N distinct architectures of a space, each trained from scratch.

Every cheap evaluator (the one-shot supernet's inherited weights, zero-cost proxies) is judged by how well its
ranking of architectures agrees with the ranking their stand-alone training gives. This script makes that
reference: it samples N (default 24) distinct architectures of ``search_spaces/mbconv.yaml`` deterministically, trains
each from scratch with the search's own trainer on the search's own data splits, and writes
``benchmarks/results/standalone_mbconv.json``.

    .venv/bin/python -m benchmarks.bench_standalone                       # the committed result (see BUDGET)
    .venv/bin/python -m benchmarks.bench_standalone --pilot 6             # the budget pilot (nothing written)

Sampling. Architecture candidates are ``PathTrial(uniform_rule(seed, step))`` for step = 0, 1, 2, ... (the one-shot
supernet's own uniform single-path rule, a pure function of (seed, step, decision): every run draws the same
sequence), turned into a Graph by ``SearchSpace.sample``. A candidate that breaks the space's ``max_params`` /
``max_macs`` constraint, or whose structural hash was already taken, is skipped, until N are collected. Each
architecture is also replayed with ``space.fixed(decisions)`` and must give the same hash: a consumer can rebuild any
of them from the stored decisions alone.

Training. Exactly a search trial: ``Trainer.from_graph`` (seeded build, then the Trainer; SGD, warm-up + cosine,
label smoothing 0.1) on ``load_dataset(space's data)`` (digits: the fixed stratified 60/20/20 split), with the
space's ``search.train`` settings (batch 32, lr 0.1) and seed ``seed + index`` (a search trains trial N with seed +
N). Always on the CPU with one thread, so a rerun reproduces the accuracies too, not only the architectures.

BUDGET: 2 epochs (batch 32, lr 0.1 from the space's ``search.train``; warm-up 1 epoch, then cosine), every
architecture trained three times (seed + i, the search-trial seed, then seed + 1000 + i and seed + 2000 + i). The
pilot (``--pilot 6 --pilot-epochs 1,2,4`` and ``--pilot-epochs 3``: the first 6 architectures, each with two
seeds) gave, per epoch budget, the val-accuracy spread across the 6 (first seed / second seed), the mean, the mean
|difference| between two seeds of one architecture, and the Kendall tau between the two seeds' rankings:

    epochs  spread (seed 1 / 2)  mean    |seed diff|  tau(seed 1, seed 2)  s/arch (busy 2 cores)
    1       0.469 / 0.242        0.759   0.114        0.33                 2.1
    2       0.033 / 0.061        0.967   0.009        0.85                 3.6
    3       0.025 / 0.022        0.982   0.004        0.29                 10.2 (machine busier)
    4       0.019 / 0.006        0.984   0.004        0.48                 10.8

One epoch is the warm-up alone: the accuracies are mostly seed noise (seed diff 11 points, tau 0.33). From 3
epochs on digits saturates (~0.98, spread under 3 points, and the ordering is again seed noise). 2 epochs is the
budget where architectures differ by more than the 3 points the benchmark needs while two seeds of the same
architecture agree (mean difference under 1 point, tau 0.85 on those six).

Over all 24 the seed noise is larger than those six suggested: a first full run with two seeds gave a val spread of
5.6 points but a seed-against-seed Kendall tau of only 0.48 (Spearman 0.62; mean |difference| 1.1 points). One
training per architecture is therefore a noisy ground truth, and each is trained with three seeds (about 1.5x the
wall time of two; still under the ~12 minute budget): ``val_acc`` is the search-trial seed's (what a search would
have recorded), ``val_acc_mean`` the mean of the three - the better reference to rank a cheap evaluator against -
and ``summary.seed_agreement_pairs`` the tau / rho between every two seeds: the order of magnitude of agreement
that two independent stand-alone trainings reach, to read a cheap evaluator's tau against (a mean of three seeds
agrees with the true order better than any single seed does). The same settings are used for all N. digits takes
no data-set parameters (``nascore datasets``), so the epoch budget is the only knob; no architecture is chosen or
dropped by its accuracy.

RESULT (the committed file, 298 s wall on the shared 2 cores): 24 distinct architectures in the first 24 draws
(no duplicate, none over max_params 150,000); val_acc (search-trial seed) 0.928..0.983, spread 5.6 points, mean
0.963, best #11 (val 0.983, test 0.983); val_acc_mean (3 seeds) spread 6.4 points, mean 0.963, best #8.
Seed-against-seed tau 0.48 / 0.54 / 0.26 (rho 0.61 / 0.73 / 0.36). Baseline to beat: params alone ranks
val_acc_mean with tau 0.37 (rho 0.53). A second run reproduced every hash, decision and accuracy bit for bit.

Importable (``benchmarks`` is a package):

- :func:`load_standalone` - the architectures of a result file, as a list of dicts
- :func:`standalone_scores` - ``{structural hash: metric}`` of a result file, for pairing with another evaluator
- :func:`rank_correlations` - Kendall tau and Spearman rho of two paired score lists or two dicts keyed alike
- :func:`sample_architectures` - the deterministic sampling itself (for evaluators that score the same points)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPACE = "search_spaces/mbconv.yaml"
DEFAULT_OUT = "benchmarks/results/standalone_mbconv.json"
DEFAULT_N = 24
DEFAULT_EPOCHS = 2
DEFAULT_REPEATS = 3       # trainings per architecture: seed + i, then seed + 1000 r + i
REPEAT_OFFSET = 1000
FORMAT = 1


# -- sampling --------------------------------------------------------------------------------------------------------


def sample_architectures(space: Any, n: int = DEFAULT_N, seed: int = 0, max_steps: int | None = None,
                         data_shape: Any = None) -> list[dict[str, Any]]:
    """The first ``n`` distinct architectures of ``space`` (a SearchSpace or a path) under ``uniform_rule(seed,
    step)``, step = 0, 1, ...; constraint violators and structural duplicates skipped.

    Returns dicts ``{index, step, graph (Graph), decisions, hash, params, macs}``; ``skipped`` counts on the first.
    """
    from nascore.nas.space import SearchSpace
    from nascore.oneshot.paths import PathTrial, uniform_rule
    from nascore.training.data import check_fits

    if not isinstance(space, SearchSpace):
        space = SearchSpace.load(space)
    limits = dict(space.settings.get("constraints") or {})
    max_steps = max_steps if max_steps is not None else 200 * n
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    skipped = {"duplicate": 0, "constraint": 0, "invalid": 0}
    step = 0
    while len(found) < n:
        if step >= max_steps:
            raise RuntimeError(f"only {len(found)} distinct valid architectures in {max_steps} samples of "
                               f"{space.source}; expected {n}")
        trial = PathTrial(uniform_rule(seed, step))
        step += 1
        try:
            graph = space.sample(trial)
            if data_shape is not None:
                check_fits(graph, data_shape, where=space.source)
        except Exception:  # noqa: BLE001 - an invalid point is skipped, as a search records it and goes on
            skipped["invalid"] += 1
            continue
        analysis = graph.analyse()
        if any(key in limits and value > limits[key]
               for key, value in (("max_params", analysis.params), ("max_macs", analysis.macs))):
            skipped["constraint"] += 1
            continue
        digest = graph.structural_hash()
        if digest in seen:
            skipped["duplicate"] += 1
            continue
        seen.add(digest)
        found.append({"index": len(found), "step": step - 1, "graph": graph, "decisions": dict(trial.params),
                      "hash": digest, "params": int(analysis.params), "macs": int(analysis.macs)})
    if found:
        found[0]["skipped"] = skipped
    return found


# -- training --------------------------------------------------------------------------------------------------------


def train_config(space: Any, epochs: int, seed: int, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A search trial's TrainConfig settings: epochs and seed first, the space's ``search.train`` over them (as
    the driver merges them), then ``overrides``; always CPU, one thread."""
    settings = {"epochs": epochs, "seed": seed, **dict(space.settings.get("train") or {}), **dict(overrides or {})}
    settings.update({"epochs": epochs, "seed": seed, "device": "cpu", "threads": 1})
    return settings


def train_one(graph: Any, splits: Any, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Train ``graph`` from scratch as a search trial does; its per-epoch val accuracy, final / best, test."""
    import torch

    from nascore.training.trainer import TrainConfig, Trainer

    torch.set_num_threads(1)
    start = time.perf_counter()
    trainer = Trainer.from_graph(graph, splits, TrainConfig.from_dict(dict(settings), "train"))
    history = [trainer.train_epoch() for _ in range(trainer.config.epochs)]
    test_acc = trainer.evaluate("test")
    seconds = time.perf_counter() - start
    vals = [float(h["val_acc"]) for h in history]
    return {"val_acc": vals[-1], "best_val_acc": max(vals), "best_epoch": vals.index(max(vals)) + 1,
            "test_acc": float(test_acc), "train_acc": float(history[-1]["train_acc"]),
            "loss": float(history[-1]["loss"]), "val_history": vals, "train_seconds": seconds}


def space_splits(space: Any) -> Any:
    """The data set a space's ``search:`` section names (digits when it names none), as its searches load it."""
    from nascore.training.data import load_dataset

    return load_dataset(space.settings.get("data", "digits"), None, **dict(space.settings.get("data_params") or {}))


_SPLITS: Any = None     # one data set per training process, loaded by its initialiser


def _load_splits(space_path: str) -> None:
    global _SPLITS
    from nascore.nas.space import SearchSpace

    _SPLITS = space_splits(SearchSpace.load(space_path))


def _train_job(graph_doc: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    from nascore.graph.core import Graph

    return train_one(Graph.from_dict(graph_doc), _SPLITS, settings)


def _train_all(picked: Sequence[Mapping[str, Any]], jobs: Sequence[tuple[int, int, int]], space: Any,
               space_path: str, epochs: int, overrides: Mapping[str, Any] | None, processes: int, splits: Any
               ) -> dict[tuple[int, int], dict[str, Any]]:
    """``{(architecture index, repeat): train_one result}`` for every job ``(index, repeat, seed)``; in this process
    or in ``processes`` spawned ones (a process pool of the standard library: the jobs share nothing)."""
    graphs = {a["index"]: a["graph"] for a in picked}
    settings = {(i, r): train_config(space, epochs, s, overrides) for i, r, s in jobs}
    if processes <= 1:
        return {key: train_one(graphs[key[0]], splits, settings[key]) for key in settings}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"), initializer=_load_splits,
                             initargs=(space_path,)) as pool:
        futures = {key: pool.submit(_train_job, graphs[key[0]].to_dict(), settings[key])
                   for key in settings}
        return {key: future.result() for key, future in futures.items()}


# -- results ---------------------------------------------------------------------------------------------------------


def load_standalone(path: str | Path = ROOT / DEFAULT_OUT) -> list[dict[str, Any]]:
    """The architectures of a result file: ``{index, hash, decisions, graph (document), params, macs, val_acc,
    best_val_acc, test_acc, train_seconds, ...}`` each, in index order. ``space.fixed(a["decisions"])`` or
    ``Graph.from_dict(a["graph"])`` rebuilds one."""
    doc = json.loads(Path(path).read_text())
    archs = doc["architectures"]
    if not isinstance(archs, list) or not archs:
        raise ValueError(f"{path}: no architectures")
    return sorted(archs, key=lambda a: a["index"])


def standalone_scores(path: str | Path = ROOT / DEFAULT_OUT, metric: str = "val_acc") -> dict[str, float]:
    """``{structural hash: metric}`` of a result file (``val_acc``: final-epoch validation accuracy)."""
    return {a["hash"]: float(a[metric]) for a in load_standalone(path)}


def rank_correlations(a: Sequence[float] | Mapping[Any, float],
                      b: Sequence[float] | Mapping[Any, float]) -> dict[str, float]:
    """Kendall tau (tau-b, ties handled) and Spearman rho (average ranks for ties) of two rankings.

    ``a`` and ``b`` are paired sequences of scores (higher = better; only the order matters), or two mappings
    (e.g. ``{hash: score}``) paired on their common keys. Returns ``{"kendall_tau", "spearman_rho", "n",
    "kendall_p", "spearman_p"}``; a constant side gives NaN correlations. scipy is in the venv (a dependency of
    scikit-learn), so scipy.stats computes them.
    """
    from scipy import stats

    if isinstance(a, Mapping) and isinstance(b, Mapping):
        keys = [k for k in a if k in b]
        xs, ys = [float(a[k]) for k in keys], [float(b[k]) for k in keys]
    elif isinstance(a, Mapping) or isinstance(b, Mapping):
        raise TypeError("pass two sequences or two mappings, not one of each")
    else:
        xs, ys = [float(v) for v in a], [float(v) for v in b]
        if len(xs) != len(ys):
            raise ValueError(f"{len(xs)} scores against {len(ys)}; expected paired lists of equal length")
    if len(xs) < 2:
        raise ValueError(f"{len(xs)} paired scores; expected at least 2")
    nan = float("nan")
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return {"kendall_tau": nan, "spearman_rho": nan, "n": len(xs), "kendall_p": nan, "spearman_p": nan}
    tau = stats.kendalltau(xs, ys)
    rho = stats.spearmanr(xs, ys)
    return {"kendall_tau": float(tau.statistic), "spearman_rho": float(rho.statistic), "n": len(xs),
            "kendall_p": float(tau.pvalue), "spearman_p": float(rho.pvalue)}


def summarise(archs: Sequence[Mapping[str, Any]], repeats: int = 1) -> dict[str, Any]:
    """Spread, mean and best of ``val_acc`` (the search-trial seed), the same of ``val_acc_mean`` and, with
    repeats, how well two seeds of the same architectures agree: the ceiling any cheap evaluator's ranking can
    reach against this noisy ground truth."""
    vals = [a["val_acc"] for a in archs]
    means = [a.get("val_acc_mean", a["val_acc"]) for a in archs]
    best = max(range(len(archs)), key=lambda i: (vals[i], -i))
    return {"n": len(archs), "val_acc_min": min(vals), "val_acc_max": max(vals),
            "val_acc_spread": max(vals) - min(vals), "val_acc_mean": statistics.fmean(vals),
            "val_acc_stdev": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "best_index": archs[best]["index"], "best_hash": archs[best]["hash"],
            "best_val_acc": vals[best], "best_test_acc": archs[best]["test_acc"],
            "test_acc_mean": statistics.fmean(a["test_acc"] for a in archs),
            "val_test_correlation": (rank_correlations(vals, [a["test_acc"] for a in archs])
                                     if len(archs) > 2 else None),
            "params_val_correlation": (rank_correlations([a["params"] for a in archs], vals)
                                       if len(archs) > 2 else None),
            "val_acc_mean_spread": max(means) - min(means), "val_acc_mean_mean": statistics.fmean(means),
            "best_index_by_mean": archs[max(range(len(archs)), key=lambda i: (means[i], -i))]["index"],
            "seed_agreement": (rank_correlations(vals, [a["repeats"][0]["val_acc"] for a in archs])
                               if repeats > 1 and len(archs) > 2 else None),
            "seed_agreement_pairs": _seed_pairs(archs, repeats),
            "seed_abs_diff_mean": (statistics.fmean(abs(a["val_acc"] - a["repeats"][0]["val_acc"]) for a in archs)
                                   if repeats > 1 else None),
            "distinct_hashes": len({a["hash"] for a in archs})}


def _seed_pairs(archs: Sequence[Mapping[str, Any]], repeats: int) -> list[dict[str, Any]] | None:
    """Kendall tau / Spearman rho between every two seeds' val accuracies over the architectures."""
    if repeats < 2 or len(archs) < 3:
        return None
    runs = [[a["val_acc"], *(r["val_acc"] for r in a["repeats"])] for a in archs]
    pairs = []
    for i in range(repeats):
        for j in range(i + 1, repeats):
            c = rank_correlations([r[i] for r in runs], [r[j] for r in runs])
            pairs.append({"seed_offsets": [REPEAT_OFFSET * i, REPEAT_OFFSET * j],  # arch i: seed + offset + i
                          "kendall_tau": c["kendall_tau"], "spearman_rho": c["spearman_rho"]})
    return pairs


# -- driver ----------------------------------------------------------------------------------------------------------


def _command(argv: Sequence[str]) -> str:
    return " ".join([".venv/bin/python -m benchmarks.bench_standalone", *map(shlex.quote, argv)]).strip()


def run(space_path: str = DEFAULT_SPACE, n: int = DEFAULT_N, epochs: int = DEFAULT_EPOCHS, seed: int = 0,
        out: str | Path | None = DEFAULT_OUT, overrides: Mapping[str, Any] | None = None,
        command: str = "", repeats: int = DEFAULT_REPEATS, processes: int = 1, say=print) -> dict[str, Any]:
    """Sample, train and (with ``out``) write the result document; returns it. ``processes`` > 1 trains that many
    at a time, each in its own single-thread process: every training is seeded, so the figures do not change."""
    import torch

    from nascore.nas.space import SearchSpace

    torch.set_num_threads(1)
    space = SearchSpace.load(space_path)
    data = space.settings.get("data", "digits")
    data_params = dict(space.settings.get("data_params") or {})
    splits = space_splits(space)
    start = time.perf_counter()
    picked = sample_architectures(space, n, seed, data_shape=splits)
    skipped = picked[0].pop("skipped")
    say(f"sampled {n} distinct architectures in {picked[-1]['step'] + 1} draws (skipped {skipped})")
    def seed_of(index: int, repeat: int) -> int:
        return seed + REPEAT_OFFSET * repeat + index

    jobs = [(arch["index"], r, seed_of(arch["index"], r)) for arch in picked for r in range(repeats)]
    trained = _train_all(picked, jobs, space, space_path, epochs, overrides, processes, splits)
    archs = []
    for arch in picked:
        replay = space.fixed(arch["decisions"]).structural_hash()
        if replay != arch["hash"]:
            raise RuntimeError(f"architecture {arch['index']}: space.fixed(decisions) hashes {replay}, the sample "
                               f"{arch['hash']}; expected the same")
        result = trained[arch["index"], 0]
        extra = [{"seed": seed_of(arch["index"], r),
                  **{k: trained[arch["index"], r][k] for k in ("val_acc", "best_val_acc", "test_acc", "val_history",
                                                               "train_seconds")}}
                 for r in range(1, repeats)]
        runs = [result, *extra]
        record = {"index": arch["index"], "step": arch["step"], "hash": arch["hash"],
                  "decisions": arch["decisions"], "params": arch["params"], "macs": arch["macs"],
                  "seed": seed_of(arch["index"], 0), **result,
                  "val_acc_mean": statistics.fmean(x["val_acc"] for x in runs),
                  "test_acc_mean": statistics.fmean(x["test_acc"] for x in runs),
                  "repeats": extra, "graph": arch["graph"].to_dict()}
        archs.append(record)
        again_text = "".join(f" / {x['val_acc']:.4f}" for x in extra)
        say(f"[{arch['index'] + 1:2d}/{n}] {arch['hash'][:10]} params {arch['params']:7,d} macs {arch['macs']:9,d}"
            f"  val {result['val_acc']:.4f}{again_text} (best {result['best_val_acc']:.4f})  test "
            f"{result['test_acc']:.4f}  {sum(x['train_seconds'] for x in runs):.1f}s")
    wall = time.perf_counter() - start
    import nascore

    doc = {"format": FORMAT, "space": space_path, "space_name": space.name, "data": data,
           "data_params": data_params, "splits": splits.sizes() if hasattr(splits, "sizes") else None,
           "train": {k: v for k, v in train_config(space, epochs, seed, overrides).items() if k != "seed"},
           "epochs": epochs, "seed": seed,
           "seed_rule": "architecture i trains with seed + i (a search's trial N: seed + N); repeat r >= 1 with "
                        f"seed + {REPEAT_OFFSET} r + i",
           "repeats": repeats,
           "sampling": {"rule": "nascore.oneshot.paths.uniform_rule(seed, step), step = 0, 1, ...",
                        "draws": picked[-1]["step"] + 1, "skipped": skipped,
                        "constraints": dict(space.settings.get("constraints") or {}),
                        "dedup": "nascore structural hash"},
           "command": command, "wall_seconds": wall, "torch": torch.__version__,
           "nascore": getattr(nascore, "__version__", None), "summary": summarise(archs, repeats),
           "architectures": archs}
    if out is not None:
        from nascore.io.atomic import atomic_write_text

        path = Path(out)
        atomic_write_text(path, json.dumps(doc, indent=1, default=_plain) + "\n")
        say(f"wrote {path}")
    return doc


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, set)):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def pilot(space_path: str, k: int, epoch_list: Sequence[int], seed: int, overrides, say=print) -> dict[str, Any]:
    """Train the first ``k`` architectures at each epoch budget with two seeds: spread across architectures
    against the seed-to-seed difference of one architecture. Writes nothing."""
    import torch

    from nascore.nas.space import SearchSpace

    torch.set_num_threads(1)
    space = SearchSpace.load(space_path)
    splits = space_splits(space)
    picked = sample_architectures(space, k, seed, data_shape=splits)
    report = {}
    for epochs in epoch_list:
        rows = []
        for arch in picked:
            a = train_one(arch["graph"], splits, train_config(space, epochs, seed + arch["index"], overrides))
            b = train_one(arch["graph"], splits, train_config(space, epochs, seed + 1000 + arch["index"],
                                                              overrides))
            rows.append((a["val_acc"], b["val_acc"], a["train_seconds"]))
            say(f"  epochs {epochs} arch {arch['index']} params {arch['params']:7,d} val {a['val_acc']:.4f} / "
                f"{b['val_acc']:.4f} (seed {seed + arch['index']} / {seed + 1000 + arch['index']}) "
                f"{a['train_seconds']:.1f}s")
        first, second = [r[0] for r in rows], [r[1] for r in rows]
        noise = statistics.fmean(abs(r[0] - r[1]) for r in rows)
        report[epochs] = {"spread": max(first) - min(first), "spread_seed2": max(second) - min(second),
                          "mean": statistics.fmean(first), "seed_abs_diff": noise,
                          "seconds": statistics.fmean(r[2] for r in rows),
                          "seed_agreement": rank_correlations(first, second)}
        r = report[epochs]
        say(f"epochs {epochs}: spread {r['spread']:.4f} (seed 2: {r['spread_seed2']:.4f}) mean {r['mean']:.4f} "
            f"|seed diff| {noise:.4f} tau(seed1, seed2) {r['seed_agreement']['kendall_tau']:.2f} "
            f"{r['seconds']:.1f}s/arch")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_standalone", description=__doc__.split("\n")[0])
    p.add_argument("--space", default=DEFAULT_SPACE)
    p.add_argument("-n", "--n", type=int, default=DEFAULT_N, help="architectures (at least 24 for the benchmark)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    p.add_argument("--seed", type=int, default=0, help="sampling seed; architecture i trains with seed + i")
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                   help="trainings per architecture with different seeds (the first is the search-trial seed)")
    p.add_argument("--lr", type=float, default=None, help="override the space's search.train lr")
    p.add_argument("--batch-size", type=int, default=None, help="override the space's search.train batch_size")
    p.add_argument("--processes", type=int, default=1,
                   help="trainings at a time, one single-thread process each (the figures do not change)")
    p.add_argument("-o", "--out", default=DEFAULT_OUT)
    p.add_argument("--pilot", type=int, default=0, metavar="K", help="budget pilot on K architectures; writes nothing")
    p.add_argument("--pilot-epochs", default="1,2,3,4")
    args = p.parse_args(argv)
    os.chdir(ROOT)
    overrides = {k: v for k, v in (("lr", args.lr), ("batch_size", args.batch_size)) if v is not None}
    if args.pilot:
        pilot(args.space, args.pilot, [int(e) for e in args.pilot_epochs.split(",")], args.seed, overrides)
        return 0
    command = _command(argv)
    doc = run(args.space, args.n, args.epochs, args.seed, args.out, overrides, command, args.repeats,
              args.processes)
    s = doc["summary"]
    print(f"{s['n']} architectures: val_acc spread {s['val_acc_spread']:.4f} (min {s['val_acc_min']:.4f}, max "
          f"{s['val_acc_max']:.4f}), mean {s['val_acc_mean']:.4f}; best #{s['best_index']} val "
          f"{s['best_val_acc']:.4f} test {s['best_test_acc']:.4f}; {doc['wall_seconds']:.0f}s")
    if s["seed_agreement"]:
        pairs = ", ".join(f"{p['seed_offsets']}: tau {p['kendall_tau']:.3f} rho {p['spearman_rho']:.3f}"
                          for p in s["seed_agreement_pairs"])
        print(f"seed against seed over the architectures (seed offsets): {pairs}; mean |val diff| of the first two "
              f"{s['seed_abs_diff_mean']:.4f}; mean over seeds: spread {s['val_acc_mean_spread']:.4f}, mean "
              f"{s['val_acc_mean_mean']:.4f}, best #{s['best_index_by_mean']}")
    if s["val_acc_spread"] < 0.03:
        print("WARNING: spread below 3 points; the ranking figures would mean little", file=sys.stderr)
    print(f"command: {command}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
