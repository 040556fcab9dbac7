"""One-shot search against stand-alone training on a space (mbconv on digits by default): ranking and wall time.

    .venv/bin/python -m benchmarks.bench_oneshot                 # writes benchmarks/results/oneshot_mbconv.json

1. Ranking. The supernet of ``search_spaces/mbconv.yaml`` is trained once per kernel-sharing mode (``slice``: a
   3x3 kernel is the centre of the shared 5x5; ``separate``: one weight per kernel size), then scores the
   stand-alone benchmark's architectures (``benchmarks/results/standalone_mbconv.json``, made by
   ``benchmarks.bench_standalone``) as a search would: inherited weights, batch norm recalibrated on 8 training
   batches, validation accuracy. Kendall tau and Spearman rho against the stand-alone accuracies (the mean of two
   seeds, and the search-trial seed's alone), beside the ceiling (two stand-alone seeds against each other) and
   the ``params`` baseline.
2. Search. A one-shot search of ``--candidates`` candidates (evolution) over the better supernet; its wall time
   plus the supernet's training time is the one-shot cost. A multi-trial search (evolution, the stand-alone
   budget per trial) then runs for the same wall time (stopped by SIGTERM, which a search takes as Ctrl-C: the run
   is kept). Each method's best architecture is trained stand-alone with the benchmark's budget and seeds, and,
   with ``--final-epochs N``, also with N epochs and ``--final-seeds`` seeds: a short budget rewards networks that
   learn fast, which the multi-trial search optimises directly and a supernet does not see. Each best's graph is
   kept in the results, so it can be trained again at any budget without searching again.
3. The issue's goal. ``--multi-trial-factor F`` lets the multi-trial search run F times the one-shot wall time
   (the goal: the one-shot best within 1 point of the multi-trial best at no more than 1/5 of its wall time, F = 5);
   its best at the one-shot wall time (the trials completed by then) is judged too, so one run gives both.
   ``--reuse RESULT`` takes the supernets' scores and the one-shot search (its wall time and best graph) from an
   earlier result instead of training and searching again: neither depends on the ground truth, so a ground truth
   at another budget (``--standalone``) is ranked and searched against without repeating them. A best judged
   before (same graph, budget and seeds) is not trained again.
4. Screened. ``--screen-top K`` adds the one-shot screen a user runs before committing training: the supernet
   scores ``--candidates`` samples (``nascore search --warm-start supernet``) and only the best K are trained at
   the benchmark's budget; its cost is the supernet's training plus that search. ``--multi-trial-run RUN`` reads
   the multi-trial search from a kept run (its wall-time origin: its first trial's start, which leaves Ray's
   start-up out, in the multi-trial search's favour).

Everything runs on the CPU (one thread per process, two workers per search), so figures are this machine's. Run it
in a checkout nobody edits meanwhile (a clone): the searches import the plugins from the working tree.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from datetime import datetime, timedelta
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "mbconv.yaml"                     # --space, --standalone and --out set these
STANDALONE = ROOT / "benchmarks" / "results" / "standalone_mbconv.json"
OUT = ROOT / "benchmarks" / "results" / "oneshot_mbconv.json"
FINAL_SEEDS = "0,1000,2000"                                         # --final-epochs trainings (bench_final_budget too)
NASCORE = [sys.executable, "-c", "from nascore.cli import main; main()"]   # this interpreter, this checkout


def score_architectures(folder: Path, archs: list[dict[str, Any]], batches: int = 8
                        ) -> tuple[dict[str, float], dict[str, float]]:
    """``{hash: one-shot val_acc}`` of the stand-alone architectures, scored by the supernet in ``folder`` as the
    supernet evaluator does, and ``{hash: -val loss}`` of the same recalibrated subnets (a finer score where
    accuracies saturate; a diagnostic of this benchmark, not what the evaluator reports)."""
    import torch
    import torch.nn.functional as F

    from nascore.graph.document import graph_from_dict
    from nascore.oneshot.training import load_supernet, recalibrated_accuracy
    from nascore.training.trainer import TrainConfig, Trainer

    supernet, info = load_supernet(folder)
    splits = space_data()
    graphs = [graph_from_dict(a["graph"], f"architecture {a['index']}") for a in archs]
    trainer = Trainer(supernet.subnet(graphs[0]), splits, TrainConfig(batch_size=32, device="cpu"))
    torch.manual_seed(0)
    x, y = trainer._data["val"]          # the trainer's own prepared validation set (a benchmark reads inside)
    x = trainer._prepare(x, "val")
    accuracy, loss = {}, {}
    for a, g in zip(archs, graphs):
        model = supernet.subnet(g)
        accuracy[a["hash"]] = recalibrated_accuracy(model, trainer, batches)[0]
        with torch.no_grad():
            loss[a["hash"]] = -float(F.cross_entropy(model.eval()(x), y))
    return accuracy, loss


def train_supernet_timed(out: Path, epochs: int, sharing: str, seed: int = 0) -> dict[str, Any]:
    from nascore.oneshot.training import train_supernet

    t0 = time.perf_counter()
    summary = train_supernet(SPACE, out, epochs=epochs, kernel_sharing=sharing, seed=seed, device="cpu",
                             train={"threads": 2}, resume=False, progress=print)
    return {"kernel_sharing": sharing, "seed": seed, "epochs": epochs, "wall_s": time.perf_counter() - t0,
            "paths_val_acc": summary.get("paths_val_acc"), "reference_val_acc": summary.get("reference_val_acc")}


def _search_command(runs: Path, trials: int, evaluator: str, extra: list[str]) -> list[str]:
    return [*NASCORE, "search", str(SPACE), "--runs", str(runs), "--trials", str(trials), "--workers", "2",
            "--strategy", "evolution", "--evaluator", evaluator, "--pruner", "none", *extra]


def run_search(cmd: list[str], limit_s: float | None) -> tuple[Path, float]:
    """Run a search in its own process (stopped with SIGTERM after ``limit_s``); its run directory and wall time."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:   # a file, not a pipe: a full pipe would block the search
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        wall = time.perf_counter() - t0
        log.seek(0)
        text = log.read()
    runs = [line.split("run directory:", 1)[1].strip() for line in text.splitlines() if "run directory:" in line]
    if not runs:
        runs_root = Path(cmd[cmd.index("--runs") + 1])
        found = sorted(runs_root.iterdir())
        if not found:
            raise RuntimeError(f"search made no run directory:\n{text[-3000:]}")
        runs = [str(found[-1])]
    return Path(runs[-1]), wall


def best_within(run: Path, started: datetime, seconds: float) -> dict[str, Any]:
    """``best_of`` among the trials completed within ``seconds`` of ``started``: a search stopped earlier."""
    import optuna

    from nascore.nas.rundir import RunDir

    rundir = RunDir.open(run)
    done = [t for t in rundir.load_study().trials if t.state == optuna.trial.TrialState.COMPLETE
            and t.datetime_complete <= started + timedelta(seconds=seconds)]
    if not done:
        return {"counts": {"complete": 0}, "search_s": seconds}
    best = max(done, key=lambda t: t.values[0])
    return {"trial": best.number, "val_acc_in_search": best.values[0],
            "graph": str(rundir.trial_dir(best.number) / "graph.yaml"), "counts": {"complete": len(done)},
            "search_s": seconds}


def best_of(run: Path) -> dict[str, Any]:
    from nascore.nas.rundir import RunDir

    summary = RunDir.open(run).summary()
    best = summary["best"][0]
    return {"trial": best["trial"], "val_acc_in_search": best["values"][0], "graph": best["graph"],
            "counts": summary["counts"]}


def standalone(graph, seeds: tuple[int, ...] = (0, 1000), epochs: int | None = None) -> dict[str, Any]:
    """One graph (a ``Graph`` or its file) trained stand-alone: the benchmark's budget and two seeds unless told
    otherwise."""
    from benchmarks.bench_standalone import train_config, train_one
    from nascore.graph.core import Graph
    from nascore.nas.space import SearchSpace

    space = SearchSpace.load(SPACE)
    splits = space_data()
    graph = graph if isinstance(graph, Graph) else Graph.load(graph)
    epochs = epochs or standalone_epochs()
    runs = [train_one(graph, splits, train_config(space, epochs, seed)) for seed in seeds]
    return {"hash": graph.structural_hash(), "params": graph.analyse().params, "epochs": epochs,
            "seeds": list(seeds), "val_acc_mean": statistics.fmean(r["val_acc"] for r in runs),
            "test_acc_mean": statistics.fmean(r["test_acc"] for r in runs), "runs": runs}


def space_data():
    """The data set of the benchmark's space (its ``search:`` section), as the searches read it."""
    from benchmarks.bench_standalone import space_splits
    from nascore.nas.space import SearchSpace

    return space_splits(SearchSpace.load(SPACE))


def standalone_epochs() -> int:
    """The stand-alone budget of the ground truth: the multi-trial search and the bests train with it too."""
    return int(json.loads(Path(STANDALONE).read_text())["epochs"])


def _judged_cache(earlier: dict[str, Any] | None) -> dict[tuple[str, int, tuple[int, ...]], dict[str, Any]]:
    """Stand-alone judgements of an earlier result, by (graph hash, epochs, seeds): a best found again is not
    trained again."""
    cache = {}
    for entry in ((earlier or {}).get("search") or {}).values():
        for key in ("best_standalone", "best_final"):
            if isinstance(entry, dict) and key in entry:
                judged = entry[key]
                cache[judged["hash"], judged["epochs"], tuple(judged["seeds"])] = judged
    return cache


def _first_start(run: Path) -> datetime:
    """When a kept search's first trial started (its wall-time origin, leaving out Ray's start-up: in the
    compared method's favour, never in the reused search's)."""
    from nascore.nas.rundir import RunDir

    return min(t.datetime_start for t in RunDir.open(run).load_study().trials if t.datetime_start)


def compare_searches(args: Any, earlier: dict[str, Any] | None, row: dict[str, Any], tmp: Path,
                     final_seeds: tuple[int, ...], judge_seeds: tuple[int, ...]) -> dict[str, Any]:
    """The one-shot search, and with ``--screen-top K`` the screened one (the supernet scores the candidates, the
    best K are trained), against a multi-trial search of ``--multi-trial-factor`` times the longer one's wall time;
    the multi-trial best is read at each method's wall time and at the factor times it; every best is judged by
    stand-alone training."""
    from nascore.graph.core import Graph
    from nascore.nas.rundir import RunDir

    cache = _judged_cache(earlier)
    epochs = standalone_epochs()

    def judge(found: dict[str, Any]) -> dict[str, Any]:
        """A search's best (``best_of``) trained stand-alone at the benchmark's budget and, if asked, at the
        ``--final-epochs`` one; its graph kept as YAML text."""
        if "graph" in found:
            found["graph_yaml"] = Path(found.pop("graph")).read_text()
        graph = Graph.from_dict(yaml.safe_load(found["graph_yaml"]))
        digest = graph.structural_hash()
        for key, seeds, budget in (("best_standalone", judge_seeds, epochs),
                                   ("best_final", final_seeds, args.final_epochs)):
            if budget:
                if (digest, budget, tuple(seeds)) not in cache:
                    cache[digest, budget, tuple(seeds)] = standalone(graph, seeds, budget)
                found[key] = cache[digest, budget, tuple(seeds)]
        return found

    folder = tmp / f"supernet_{row['kernel_sharing']}_{row['seed']}"
    methods: dict[str, dict[str, Any]] = {}
    if earlier:
        keep = ("kernel_sharing", "supernet_train_s", "search_s", "total_s", "candidates", "trial",
                "val_acc_in_search", "counts", "graph_yaml")
        methods["oneshot"] = {k: earlier["search"]["oneshot"][k] for k in keep}
    else:
        run, wall = run_search(_search_command(tmp / "runs_oneshot", args.candidates, "supernet",
                                               ["--evaluator-option", f"checkpoint={folder}"]), None)
        methods["oneshot"] = {"kernel_sharing": row["kernel_sharing"], "supernet_train_s": row["wall_s"],
                              "search_s": wall, "total_s": row["wall_s"] + wall, "candidates": args.candidates,
                              **best_of(run)}
    if args.screen_top:
        supernet_s = row["wall_s"]
        if not (folder / "supernet.safetensors").is_file():     # reused scores: the supernet is trained again
            supernet_s = train_supernet_timed(folder, row["epochs"], row["kernel_sharing"], row["seed"])["wall_s"]
        run, wall = run_search(_search_command(
            tmp / "runs_screened", args.screen_top, "train",
            ["--epochs", str(epochs), "--warm-start", "supernet", "--warm-start-option", f"checkpoint={folder}",
             "--warm-start-candidates", str(args.candidates), "--warm-start-top", str(args.screen_top)]), None)
        methods["oneshot_screened"] = {"supernet_train_s": supernet_s, "search_s": wall, "total_s": supernet_s + wall,
                                       "candidates": args.candidates, "trained": args.screen_top, **best_of(run)}
    for name, found in methods.items():
        methods[name] = judge(found)
        print(name, json.dumps({k: v for k, v in found.items() if k != "graph_yaml"}, indent=1, default=str))
    longest = max(m["total_s"] for m in methods.values())
    if args.multi_trial_run:
        run = Path(args.multi_trial_run)
        started = _first_start(run)
        multi_wall = max((t.datetime_complete - started).total_seconds()
                         for t in RunDir.open(run).load_study().trials if t.datetime_complete)
    else:
        started = datetime.now()
        run, multi_wall = run_search(_search_command(tmp / "runs_multi", 100000, "train", ["--epochs", str(epochs)]),
                                     longest * args.multi_trial_factor)
    out: dict[str, Any] = {**methods, "multi_trial": {"search_s": multi_wall, "epochs_per_trial": epochs,
                                                     "reused_run": args.multi_trial_run, "at": {}}}
    for name, found in methods.items():
        for factor in sorted({1.0, args.multi_trial_factor}):
            seconds = found["total_s"] * factor
            label = f"{name}_x{factor:g}"
            if seconds > multi_wall + 30:                           # the multi-trial search did not run that long
                out["multi_trial"]["at"][label] = {"search_s": seconds, "note": "beyond the multi-trial run"}
                continue
            multi = best_within(run, started, seconds)
            if multi["counts"]["complete"]:
                multi = judge(multi)
                multi["gap_points"] = 100 * (found["best_standalone"]["val_acc_mean"]
                                             - multi["best_standalone"]["val_acc_mean"])
                if args.final_epochs:
                    multi["final_gap_points"] = 100 * (found["best_final"]["val_acc_mean"]
                                                       - multi["best_final"]["val_acc_mean"])
            out["multi_trial"]["at"][label] = multi
            print(label, json.dumps({k: v for k, v in multi.items() if k != "graph_yaml"}, indent=1, default=str))
    return out


def main(argv: list[str] | None = None) -> int:
    global SPACE, STANDALONE, OUT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="supernet training epochs")
    parser.add_argument("--candidates", type=int, default=500, help="one-shot search candidates")
    parser.add_argument("--sharing", default="slice,separate", help="kernel-sharing modes to compare")
    parser.add_argument("--seeds", default="0", help="supernet seeds (bank initialisation and path draws)")
    parser.add_argument("--no-search", action="store_true", help="ranking only")
    parser.add_argument("--final-epochs", type=int, default=0,
                        help="also train each search's best with this many epochs (0: the benchmark's budget only)")
    parser.add_argument("--judge-seeds", default="0,1000", help="seeds of the bests' trainings at the benchmark's budget")
    parser.add_argument("--final-seeds", default=FINAL_SEEDS, help="seeds of the --final-epochs trainings")
    parser.add_argument("--multi-trial-factor", type=float, default=1.0,
                        help="the multi-trial search runs this many times the one-shot wall time (the goal: 5)")
    parser.add_argument("--reuse", metavar="RESULT",
                        help="take the supernets' scores and the one-shot search from this earlier result")
    parser.add_argument("--screen-top", type=int, default=0, metavar="K",
                        help="also a screened search: the supernet scores --candidates samples, the best K are trained")
    parser.add_argument("--multi-trial-run", metavar="RUN_DIR",
                        help="read the multi-trial search from this kept run instead of running one")
    parser.add_argument("--space", default=str(SPACE), help="the space (its search: section names the data)")
    parser.add_argument("--standalone", default=str(STANDALONE), help="the ground truth of bench_standalone")
    parser.add_argument("-o", "--out", default=str(OUT))
    args = parser.parse_args(argv)
    SPACE, STANDALONE, OUT = Path(args.space).resolve(), Path(args.standalone).resolve(), Path(args.out)
    final_seeds = tuple(int(s) for s in args.final_seeds.split(","))
    judge_seeds = tuple(int(s) for s in args.judge_seeds.split(","))

    from benchmarks.bench_standalone import load_standalone, rank_correlations

    archs = load_standalone(STANDALONE)
    truth_mean = {a["hash"]: a.get("val_acc_mean", a["val_acc"]) for a in archs}
    truth_seed = {a["hash"]: a["val_acc"] for a in archs}
    params = {a["hash"]: float(a["params"]) for a in archs}
    ceiling = rank_correlations(truth_seed, {a["hash"]: a["repeats"][0]["val_acc"] for a in archs}) \
        if archs[0].get("repeats") else None
    result: dict[str, Any] = {
        "command": " ".join([".venv/bin/python -m benchmarks.bench_oneshot", *map(shlex.quote, argv or
                                                                                  sys.argv[1:])]),
        "standalone": {"n": len(archs), "spread": max(truth_seed.values()) - min(truth_seed.values()),
                       "seed_agreement": ceiling},
        "params_baseline": {"vs_mean": rank_correlations(params, truth_mean),
                            "vs_seed": rank_correlations(params, truth_seed)},
        "ranking": [], "machine": f"{os.cpu_count()} cores, torch CPU"}
    earlier = json.loads(Path(args.reuse).read_text()) if args.reuse else None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sharings, seeds = args.sharing.split(","), [int(s) for s in args.seeds.split(",")]
        if earlier:
            sharings = list(dict.fromkeys(r["kernel_sharing"] for r in earlier["ranking"]))
            seeds = list(dict.fromkeys(r["seed"] for r in earlier["ranking"]))
            result["reused"] = {"result": str(args.reuse), "command": earlier["command"]}
        for sharing in sharings:
            for seed in seeds:
                if earlier:
                    row = next(dict(r) for r in earlier["ranking"] if (r["kernel_sharing"], r["seed"]) == (sharing,
                                                                                                        seed))
                    scores, losses = row["scores"], row["neg_val_loss"]
                else:
                    folder = tmp / f"supernet_{sharing}_{seed}"
                    row = train_supernet_timed(folder, args.epochs, sharing, seed)
                    t0 = time.perf_counter()
                    scores, losses = score_architectures(folder, archs)
                    row["scoring_s_per_arch"] = (time.perf_counter() - t0) / len(archs)
                if set(scores) != set(truth_mean):
                    raise SystemExit(f"the reused scores are of other architectures than {STANDALONE}; expected the "
                                     "same sampling (bench_standalone's --seed and -n)")
                row["vs_mean"] = rank_correlations(scores, truth_mean)
                row["vs_seed"] = rank_correlations(scores, truth_seed)
                row["loss_vs_mean"] = rank_correlations(losses, truth_mean)
                row["scores"] = scores
                row["neg_val_loss"] = losses
                result["ranking"].append(row)
                print(json.dumps({k: v for k, v in row.items() if k not in ("scores", "neg_val_loss")}, indent=1))
            rows = [r for r in result["ranking"] if r["kernel_sharing"] == sharing]
            summary = {"seeds": seeds}
            for score in ("vs_mean", "loss_vs_mean"):
                taus = [r[score]["kendall_tau"] for r in rows]
                summary[score] = {"kendall_tau_mean": statistics.fmean(taus), "kendall_tau_each": taus,
                                  "kendall_tau_sd": statistics.stdev(taus) if len(taus) > 1 else 0.0}
            result.setdefault("ranking_over_seeds", {})[sharing] = summary
            print(json.dumps(summary))
        # the search uses the first listed mode and seed: choosing by tau would use the ground truth
        searched_row = result["ranking"][0]
        if not args.no_search:
            result["search"] = compare_searches(args, earlier, searched_row, tmp, final_seeds, judge_seeds)
    from nascore.io.atomic import atomic_write_text

    atomic_write_text(OUT, json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
