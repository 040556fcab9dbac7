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
    from nascore.plugins import register_plugin

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
@_fail_cleanly
def blocks_command(as_json: bool) -> None:
    """List every block, the plugin that provides it, and its parameters."""
    from nascore.blocks import BLOCKS

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
    from nascore.costs import fmt_shape
    from nascore.graph import Graph

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
    from nascore.graph import Graph
    from nascore.render import render

    path = render(Graph.load(file), out)
    click.echo(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    main()
