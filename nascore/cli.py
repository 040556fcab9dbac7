"""The ``nascore`` command line. Every user error prints one line and exits 2; ``--help`` on every command."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from nascore.errors import NascoreError


def _fail_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NascoreError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
    return wrapper


def _load_plugins(ctx: click.Context, param: click.Parameter, modules: tuple[str, ...]) -> tuple[str, ...]:
    from nascore.ext.manager import register_plugin

    for module_name in modules:
        import importlib

        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - reported as a usage error
            raise click.BadParameter(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
        register_plugin(module, name=module_name)
    return modules


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.version_option(package_name="nascore")
@click.option("-p", "--plugin", "plugins", multiple=True, callback=_load_plugins, expose_value=False,
              is_eager=True, metavar="MODULE", help="Import MODULE as a plugin (repeatable), beside installed ones.")
def main() -> None:
    """nascore: compose, search and export neural architectures built from block plugins."""


# -- blocks ---------------------------------------------------------------------------------------------------------


@main.command("blocks")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a listing.")
@click.option("--check", is_flag=True,
              help="Check every block against its module (a given infer must agree exactly; exit 1 if one does not).")
@_fail_cleanly
def blocks_command(as_json: bool, check: bool) -> None:
    """List every block, the plugin that provides it, and its parameters."""
    from nascore.blocks.registry import BLOCKS

    if check:
        _check_blocks(as_json)
        return

    rows = []
    for name, spec in BLOCKS.items():
        rows.append({
            "name": name, "plugin": BLOCKS.owner(name), "doc": spec.summary, "paper": spec.paper,
            "aliases": list(spec.aliases), "inputs": spec.arity.describe(),
            "params": [{"name": p.name, "type": p.type_name, "default": None if p.required else p.default,
                        "required": p.required, "choices": list(p.choices) if p.choices else None,
                        "low": p.low, "high": p.high, "doc": p.doc} for p in spec.params],
        })
    problems = BLOCKS.problems()
    if as_json:
        click.echo(json.dumps({"blocks": rows, "problems": problems}, indent=2, default=list))
        return
    for row in rows:
        alias = f" (aliases: {', '.join(row['aliases'])})" if row["aliases"] else ""
        click.echo(f"{row['name']}{alias}  [{row['plugin']}]  {row['inputs']}")
        click.echo(f"    {row['doc']}")
        for p in row["params"]:
            default = "required" if p["required"] else f"default {p['default']!r}"
            click.echo(f"    - {p['name']}: {_describe(p)}, {default}  {p['doc']}")
    for line in problems:
        click.echo(f"problem: {line}", err=True)


def _check_blocks(as_json: bool) -> None:
    from nascore.blocks.testing import check_blocks

    results = check_blocks()
    failed = [r for r in results if r.status == "failed"]
    if as_json:
        click.echo(json.dumps({"blocks": [vars(r) for r in results]}, indent=2))
    else:
        for r in results:
            click.echo(f"{r.status:<7} {r.block}  [{r.plugin}]  {r.detail}")
        counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "skipped")}
        click.echo(f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped")
    for r in failed:
        click.echo(f"error: block {r.block!r} of plugin {r.plugin!r} fails its check with {r.detail}", err=True)
    if failed:
        sys.exit(1)


def _describe(p: dict[str, Any]) -> str:
    if p["choices"]:
        return f"{p['type']} in {{{', '.join(map(str, p['choices']))}}}"
    if p["low"] is not None or p["high"] is not None:
        return f"{p['type']} in [{p['low']}, {p['high']}]"
    return p["type"]


# -- graphs ---------------------------------------------------------------------------------------------------------


@main.group("graph")
def graph_group() -> None:
    """Inspect and draw architecture graphs."""


def _parse_input(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        dims = tuple(int(d) for d in value.lower().split("x"))
    except ValueError:
        dims = ()
    if not dims or len(dims) > 3 or any(d < 1 for d in dims):
        raise click.BadParameter(f"got {value!r}, expected CxHxW like 3x224x224", param_hint="--input")
    return dims


@graph_group.command("info")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--input", "input_shape", metavar="CxHxW", help="Input shape (default: the graph's own).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: params, macs, outputs, nodes.")
@_fail_cleanly
def graph_info(file: str, input_shape: str | None, as_json: bool) -> None:
    """Validate FILE and print parameters, MACs, output shapes and a per-node table."""
    from nascore.blocks.tally import fmt_shape
    from nascore.graph.core import Graph

    shape = _parse_input(input_shape)
    graph = Graph.load(file, validate=False)
    analysis = graph.analyse(shape)
    if as_json:
        click.echo(json.dumps({"name": graph.name, "hash": graph.structural_hash(), **analysis.as_dict()}, indent=2))
        return
    rows = [(n.name, n.block, ", ".join(fmt_shape(s) for s in n.outputs.values()), f"{n.n_params:,}",
             f"{n.macs / 1e6:,.2f}") for n in analysis.nodes.values()]
    header = ("node", "block", "output", "params", "MMACs")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    click.echo(f"{graph.name}: input {fmt_shape(analysis.input_shape)}, {len(rows)} nodes")
    click.echo("  ".join(h.ljust(w) if i < 3 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
    for r in rows:
        click.echo("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    click.echo(f"params: {analysis.params:,}")
    click.echo(f"MACs:   {analysis.macs:,} ({analysis.macs / 1e9:.3f} G)")
    for ref, s in analysis.outputs.items():
        click.echo(f"output {ref}: {fmt_shape(s)}")


@graph_group.command("render")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False),
              help="Output file: .dot, .mmd (Mermaid), or .svg/.png (needs Graphviz).")
@_fail_cleanly
def graph_render(file: str, out: str) -> None:
    """Draw FILE's graph to OUT."""
    from nascore.graph.core import Graph
    from nascore.graph.render import render

    path = render(Graph.load(file), out)
    click.echo(f"wrote {path}")


@graph_group.command("scale")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Where to write the scaled graph.")
@click.option("--width", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Channel multiplier (multiples of 8, never below 90%).")
@click.option("--depth", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Repeat multiplier (rounded up).")
@click.option("--resolution", type=click.IntRange(min=1), help="New input side.")
@click.option("--compound", metavar="ALPHA,BETA,GAMMA",
              help="EfficientNet coefficients (from a compound search): depth alpha^phi, width beta^phi, "
                   "resolution gamma^phi.")
@click.option("--phi", type=float, default=1.0, show_default=True, help="Compound exponent.")
@_fail_cleanly
def graph_scale(file, out, width, depth, resolution, compound, phi) -> None:
    """Write FILE scaled in width, depth and resolution (EfficientNet's rules) to OUT."""
    from nascore.graph.core import Graph

    graph = Graph.load(file)
    if compound:
        try:
            alpha, beta, gamma = (float(v) for v in compound.split(","))
        except ValueError:
            raise click.BadParameter(f"got {compound!r}, expected three numbers like 1.2,1.1,1.15",
                                     param_hint="--compound") from None
        depth, width = depth * alpha ** phi, width * beta ** phi
        resolution = resolution or round(graph.input_shape[1] * gamma ** phi)
    scaled = graph.scale(width=width, depth=depth, resolution=resolution)
    scaled.save(out)
    a = scaled.analyse()
    click.echo(f"wrote {out}: {a.params:,} params, {a.macs / 1e9:.3f} GMACs, input "
               f"{'x'.join(map(str, scaled.input_shape))}")


# -- search ---------------------------------------------------------------------------------------------------------


@main.command("search")
@click.argument("space", required=False, type=click.Path(dir_okay=False))
@click.option("--resume", "resume", type=click.Path(file_okay=False), help="Continue the search in RUN_DIR.")
@click.option("--runs", "runs_root", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Where new run directories are made.")
@click.option("--strategy", help="Search strategy (`nascore strategies`); default: the space's, else tpe.")
@click.option("--trials", type=click.IntRange(min=1), help="Architectures to train.")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs per trial.")
@click.option("--workers", type=click.IntRange(min=1), help="Concurrent trials.")
@click.option("--cpus-per-trial", type=click.FloatRange(min=0, min_open=True), help="CPUs per trial.")
@click.option("--gpus-per-trial", type=click.FloatRange(min=0), help="GPUs per trial (fractions allowed).")
@click.option("--address", help="Join a running Ray cluster (e.g. auto or HOST:PORT) instead of a local one.")
@click.option("--resource-timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Give up when no worker has started after SECONDS (the cluster busy, or short of what a trial "
                   "asks); meanwhile say what is pending. Default 300.")
@click.option("--data", help="Data set name (`nascore datasets`); default: the space's, else digits.")
@click.option("--data-root", type=click.Path(), help="Where the data set lives (cifar10, imagefolder...).")
@click.option("--objective", "objectives", multiple=True,
              type=click.Choice(["val_acc", "test_acc", "params", "macs", "latency_ms"]),
              help="Objective (repeat for multi-objective, e.g. --objective val_acc --objective params).")
@click.option("--max-params", type=float, help="Hard constraint: never train a larger network.")
@click.option("--max-macs", type=float, help="Hard constraint on MACs.")
@click.option("--max-latency-ms", type=float, help="Hard constraint on measured latency (batch 1).")
@click.option("--pruner", type=click.Choice(["hyperband", "asha", "median", "none"]), help="Early stopping.")
@click.option("--evaluator", help="How trials are scored (`nascore evaluators`); default: the space's, else train.")
@click.option("--evaluator-option", "evaluator_options", multiple=True, metavar="KEY=VALUE",
              help="An option of the evaluator (e.g. checkpoint=supernet/ for the supernet evaluator).")
@click.option("--warm-start", "warm_start_proxy", metavar="PROXY",
              help="Warm start: score --warm-start-candidates samples with this evaluator that trains nothing (a "
                   "zero-cost proxy such as naswot, or supernet) and train only the --warm-start-top best.")
@click.option("--warm-start-option", "warm_start_options", multiple=True, metavar="KEY=VALUE",
              help="An option of the warm-start scorer (e.g. checkpoint=supernet/ for supernet).")
@click.option("--warm-start-candidates", type=click.IntRange(min=1), help="Warm start: samples the proxy scores (M).")
@click.option("--warm-start-top", type=click.IntRange(min=1), help="Warm start: best-scored samples trained (k).")
@click.option("--storage", help="Optuna storage URL (default sqlite in the run dir; journal:PATH; postgresql://...).")
@click.option("--seed", type=int, help="Base seed (trial n trains with seed + n).")
@click.option("--tensorboard/--no-tensorboard", default=None,
              help="Per-trial and search scalars in RUN_DIR/tensorboard (default: on when tensorboard is installed).")
@click.option("--export", "export_dir", type=click.Path(file_okay=False),
              help="When done, export the best model to this directory.")
@_fail_cleanly
def search_command(space, resume, runs_root, strategy, trials, epochs, workers, cpus_per_trial, gpus_per_trial,
                   address, resource_timeout, data, data_root, objectives, max_params, max_macs, max_latency_ms,
                   pruner, evaluator, evaluator_options, warm_start_proxy, warm_start_options, warm_start_candidates,
                   warm_start_top, storage, seed, tensorboard, export_dir) -> None:
    """Search the architectures of SPACE (a search-space YAML) on local Ray, or a cluster with --address."""
    from nascore.errors import NascoreError
    from nascore.nas.driver import search

    if (space is None) == (resume is None):
        raise NascoreError("give exactly one of SPACE or --resume RUN_DIR")
    constraints = {k: v for k, v in (("max_params", max_params), ("max_macs", max_macs),
                                     ("max_latency_ms", max_latency_ms)) if v is not None}
    overrides = dict(strategy=strategy, trials=trials, epochs=epochs, workers=workers, cpus_per_trial=cpus_per_trial,
                     gpus_per_trial=gpus_per_trial, address=address, resource_timeout=resource_timeout, data=data,
                     data_root=data_root, objectives=list(objectives) or None, constraints=constraints or None,
                     pruner=pruner, evaluator=evaluator,
                     evaluator_options=_settings(evaluator_options, "--evaluator-option") or None,
                     warm_start_proxy=warm_start_proxy,
                     warm_start_options=_settings(warm_start_options, "--warm-start-option") or None,
                     warm_start_candidates=warm_start_candidates, warm_start_top=warm_start_top, storage=storage,
                     seed=seed, tensorboard=tensorboard)
    if export_dir:                 # refused now, not after the whole search
        from nascore.exporting.package import check_target

        check_target(export_dir)
    try:
        run = search(space, resume=resume, runs_root=runs_root, **overrides)
    except KeyboardInterrupt:
        sys.exit(130)
    click.echo(f"run directory: {run}")
    if export_dir:
        from nascore.exporting.package import export

        out = export(run, export_dir)
        click.echo(f"exported the best model to {out}")


def _settings(pairs: tuple[str, ...], option: str) -> dict[str, Any]:
    """``key=value`` pairs; values read as YAML scalars (``lr=0.1``, ``optimizer=adamw``, ``augment=true``)."""
    import yaml

    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"got {pair!r}, expected KEY=VALUE", param_hint=option)
        settings[key.strip()] = yaml.safe_load(value)
    return settings


def _graph_source(path: str) -> tuple[str, dict[str, Any]]:
    """A graph file, a folder with graph.yaml, or a run directory (its best graph, and its data settings)."""
    from pathlib import Path

    from nascore.nas.rundir import RunDir

    p = Path(path)
    if p.is_dir() and (p / "config.yaml").is_file():
        run = RunDir.open(p)
        config = run.config()
        best = run.summary().get("best") or run.summary().get("pareto") or []
        if not best:
            raise NascoreError("has no finished trial to take a graph from", where=str(p))
        return best[0]["graph"], {"data": config.data, "data_root": config.data_root,
                                  "data_params": config.data_params, "train": dict(config.train)}
    return path, {}


@main.group("supernet")
def supernet_group() -> None:
    """One-shot search: train a weight-sharing supernet once, then search it with --evaluator supernet."""


@supernet_group.command("train")
@click.argument("space", type=click.Path(dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder (resumable).")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs (default 20).")
@click.option("--sampling", type=click.Choice(["uniform", "fair"]), default="uniform", show_default=True,
              help="Path sampling: uniform single-path, or fair (each option once per round, after FairNAS).")
@click.option("--kernel-sharing", type=click.Choice(["slice", "separate"]), default="slice", show_default=True,
              help="Kernel choices: centre slices of the largest kernel, or one weight per kernel size.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the path sequence.")
@click.option("--data", help="Data set (default: the space's, else digits).")
@click.option("--data-root", type=click.Path(), help="Where the data set lives.")
@click.option("--data-param", "data_params", multiple=True, metavar="KEY=VALUE", help="Data set parameter.")
@click.option("--set", "train_settings", multiple=True, metavar="KEY=VALUE",
              help="Training setting (lr, batch_size, optimizer, label_smoothing, drop_path, amp, ...).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto (without --workers).")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Data-parallel Ray Train workers (0: train in this process).")
@click.option("--cpus-per-worker", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--address", help="Ray cluster to train on (e.g. auto or HOST:PORT); default: a Ray of this machine.")
@click.option("--max-failures", type=click.IntRange(min=0), default=3, show_default=True,
              help="With --workers: restarts of a worker group that lost a worker or node, each from the last "
                   "epoch's checkpoint (0: fail at once). Errors of the input are never retried.")
@click.option("--no-resume", is_flag=True, help="Start afresh even if OUT holds a checkpoint (a restarted worker "
                                                "group still resumes this run's own epochs).")
@_fail_cleanly
def supernet_train_command(space, out, epochs, sampling, kernel_sharing, seed, data, data_root, data_params,
                           train_settings, device, workers, cpus_per_worker, gpus_per_worker, address,
                           max_failures, no_resume) -> None:
    """Train the supernet of SPACE (a search-space YAML) into OUT; run again to resume after a crash."""
    from nascore.oneshot.training import train_supernet

    params = _settings(data_params, "--data-param")
    summary = train_supernet(space, out, data=data, data_root=data_root, data_params=params or None,
                             epochs=epochs, train=_settings(train_settings, "--set"), sampling=sampling,
                             kernel_sharing=kernel_sharing, seed=seed, resume=not no_resume, device=device,
                             workers=workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                             address=address, max_failures=max_failures, progress=click.echo)
    if "paths_val_acc" in summary:
        click.echo(f"mean one-shot val_acc of the monitored paths {summary['paths_val_acc']:.4f}; next: nascore "
                   f"search {space} --evaluator supernet --evaluator-option checkpoint={out}")


@main.command("train")
@click.argument("graph", type=click.Path(exists=False))
@click.option("-o", "--out", type=click.Path(file_okay=False), help="Output folder (default: train-<graph name>).")
@click.option("--data", help="Data set (default: the run's, else digits).")
@click.option("--data-root", type=click.Path(), help="Where the data set lives.")
@click.option("--data-param", "data_params", multiple=True, metavar="KEY=VALUE", help="Data set parameter.")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True, help="Training epochs.")
@click.option("--set", "train_settings", multiple=True, metavar="KEY=VALUE",
              help="Training setting (lr, batch_size, optimizer, weight_decay, label_smoothing, drop_path, ...).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--no-resume", is_flag=True, help="Start afresh even if OUT holds a checkpoint.")
@click.option("--fine-tune", is_flag=True,
              help="Start from the weights the run's trial ended with (a one-shot search's inherited weights) "
                   "instead of from scratch.")
@click.option("--export", "export_dir", type=click.Path(file_okay=False), help="Export the trained model here.")
@_fail_cleanly
def train_command(graph, out, data, data_root, data_params, epochs, train_settings, device, no_resume, fine_tune,
                  export_dir) -> None:
    """Train GRAPH (a graph YAML, or a run directory's best) at full budget, from scratch or (--fine-tune) from
    the run's weights; resumable."""
    from pathlib import Path

    from nascore.graph.core import Graph
    from nascore.training.retrain import train_graph

    graph_path, inherited = _graph_source(graph)
    name = Graph.load(graph_path).name
    initial = None
    if fine_tune:
        initial = Path(graph_path).parent / "model.safetensors"
        if "data" not in inherited or not initial.is_file():
            raise NascoreError("--fine-tune needs a run directory whose best trial kept its weights "
                               f"({initial} not found); expected a run of `nascore search`", where=graph)
    out = out or f"train-{name}"
    if export_dir:                 # refused now, not after the training
        from nascore.exporting.package import check_target

        check_target(export_dir)
    train = {**inherited.get("train", {}), **_settings(train_settings, "--set")}
    params = {**inherited.get("data_params", {}), **_settings(data_params, "--data-param")}
    metrics = train_graph(graph_path, out, data=data or inherited.get("data", "digits"),
                          data_root=data_root or inherited.get("data_root"), data_params=params, epochs=epochs,
                          train=train, resume=not no_resume, device=device, progress=click.echo,
                          initial_weights=initial)
    click.echo(f"test_acc {metrics['test_acc']:.4f}, best val_acc {metrics['best_val_acc']:.4f}; "
               f"results in {Path(out).resolve()}")
    if export_dir:
        from nascore.exporting.package import export

        click.echo(f"exported to {export(out, export_dir)}")


@main.command("export")
@click.argument("source", type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Export folder to create.")
@click.option("--format", "formats", help="Comma-separated formats (`nascore exporters`); default: all available.")
@click.option("--input", "input_shape", metavar="CxHxW", help="Input shape of the exported programs.")
@click.option("--trial", type=click.IntRange(min=0), help="Export this trial of a run instead of its best.")
@click.option("--overwrite", is_flag=True, help="Replace an existing export (only once the new one is complete).")
@_fail_cleanly
def export_command(source, out, formats, input_shape, trial, overwrite) -> None:
    """Export SOURCE (a run directory, a graph YAML, or a trained folder) as a deployable model folder."""
    from nascore.exporting.package import export
    from nascore.exporting.verify import read_manifest

    path = export(source, out, formats=formats, input_shape=_parse_input(input_shape), trial=trial,
                  overwrite=overwrite)
    manifest = read_manifest(path)
    click.echo(f"exported {', '.join(sorted(manifest['files']))} to {path}")
    for name, reason in manifest.get("skipped_formats", {}).items():
        click.echo(f"skipped format {name}: {reason}", err=True)


@main.command("import")
@click.argument("source")
@click.argument("model")
@click.option("--weights", required=True, type=click.Path(dir_okay=False),
              help="Your state dict: .pth / .pt (read with weights_only=True) or .safetensors; nothing is downloaded.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Export folder to create.")
@click.option("--format", "formats", help="Comma-separated formats (`nascore exporters`); default: all available.")
@click.option("--input", "input_shape", metavar="CxHxW", help="Input shape of the exported programs.")
@click.option("--overwrite", is_flag=True, help="Replace an existing export (only once the new one is complete).")
@_fail_cleanly
def import_command(source, model, weights, out, formats, input_shape, overwrite) -> None:
    """Load SOURCE's pretrained MODEL (`nascore import torchvision resnet50 --weights resnet50.pth -o DIR`, or
    `nascore import timm seresnet50 ...`: SOURCE is torchvision or timm, MODEL as that library names it) into its zoo
    graph and export it; every tensor is checked by name and shape."""
    from nascore.exporting.pretrained import import_weights
    from nascore.exporting.verify import read_manifest

    path = import_weights(source, model, weights, out, formats=formats, input_shape=_parse_input(input_shape),
                          overwrite=overwrite)
    manifest = read_manifest(path)
    click.echo(f"imported {source} {model} from {weights}; exported {', '.join(sorted(manifest['files']))} to {path}")
    if manifest["source"].get("note"):
        click.echo(f"note: {manifest['source']['note']}", err=True)


@main.command("verify")
@click.argument("export_dir", type=click.Path(file_okay=False))
@_fail_cleanly
def verify_command(export_dir) -> None:
    """Check an export folder: every listed file's size and sha256, no unlisted file, and the graph. The manifest
    itself is not checksummed: this shows integrity, not authorship."""
    from nascore.exporting.verify import PROVES, verify_export

    problems = verify_export(export_dir)
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if problems:
        sys.exit(1)
    click.echo(f"{export_dir}: intact: {PROVES}")


@main.command("exporters")
@_fail_cleanly
def exporters_command() -> None:
    """List the export formats and the plugins that provide them."""
    from nascore.exporting.spec import EXPORTERS

    for name, spec in EXPORTERS.items():
        state = "available" if spec.available else f"needs: {spec.install_hint}"
        click.echo(f"{name}  [{EXPORTERS.owner(name)}]  {spec.filename}  ({state})\n    {spec.doc}")


@main.command("strategies")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_fail_cleanly
def strategies_command(as_json: bool) -> None:
    """List the search strategies and the plugins that provide them."""
    from nascore.nas.strategies import STRATEGIES

    rows = [{"name": n, "plugin": STRATEGIES.owner(n), "doc": s.doc, "multi_objective": s.multi_objective}
            for n, s in STRATEGIES.items()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        multi = "single/multi-objective" if r["multi_objective"] else "single-objective"
        click.echo(f"{r['name']}  [{r['plugin']}]  {multi}\n    {r['doc']}")


def _echo_params(params: Any) -> None:
    """One line per Param of a listed plugin (an evaluator's options, a data set's parameters)."""
    for p in params:
        default = "required" if p.required else f"default {p.default!r}"
        click.echo(f"    - {p.name}: {p.describe()}, {default}  {p.doc}")


@main.command("evaluators")
@_fail_cleanly
def evaluators_command() -> None:
    """List the trial evaluators, their options and the plugins that provide them."""
    from nascore.nas.evaluators import EVALUATORS

    for name, spec in EVALUATORS.items():
        click.echo(f"{name}  [{EVALUATORS.owner(name)}]\n    {spec.doc}")
        _echo_params(spec.options)


@main.command("datasets")
@_fail_cleanly
def datasets_command() -> None:
    """List the data sets and their parameters."""
    from nascore.training.data import DATASETS

    for name, spec in DATASETS.items():
        click.echo(f"{name}  [{DATASETS.owner(name)}]\n    {spec.summary if hasattr(spec, 'summary') else spec.doc}")
        _echo_params(spec.params)


@main.group("runs")
def runs_group() -> None:
    """Inspect search runs."""


@runs_group.command("show")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON: state, counts, trials, best or Pareto set.")
@_fail_cleanly
def runs_show(run_dir: str, as_json: bool) -> None:
    """Show RUN_DIR's trials, their states and metrics, and the best graph or the Pareto set."""
    from nascore.nas.runs import describe_run, format_run

    report = describe_run(run_dir)
    click.echo(json.dumps(report, indent=2, default=str) if as_json else format_run(report))


@runs_group.command("plot")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("-o", "--out", type=click.Path(file_okay=False), help="Folder for the PNGs (default RUN_DIR/plots).")
@_fail_cleanly
def runs_plot(run_dir: str, out: str | None) -> None:
    """Plot RUN_DIR's search history (best so far against trials and time) and, for several objectives, the
    Pareto front, as PNG files."""
    from nascore.nas.plots import plot_run

    for path in plot_run(run_dir, out):
        click.echo(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    main()
