"""Draw a graph as Graphviz DOT, Mermaid, or (where Graphviz's ``dot`` is installed) SVG/PNG."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from nascore.blocks.tally import fmt_shape
from nascore.errors import NascoreError
from nascore.graph.core import INPUT, Graph
from nascore.io.atomic import atomic_write_bytes, atomic_write_text

FORMATS = (".dot", ".gv", ".mmd", ".svg", ".png")


def _labels(graph: Graph) -> dict[str, str]:
    analysis = graph.analyse()
    labels = {INPUT: f"input {fmt_shape(graph.input_shape)}"}
    for name, info in analysis.nodes.items():
        shapes = ", ".join(fmt_shape(s) for s in info.outputs.values())
        labels[name] = f"{name}\\n{info.block} -> {shapes}"
    return labels


def to_dot(graph: Graph) -> str:
    labels = _labels(graph)
    ids = {name: f"n{i}" for i, name in enumerate(labels)}
    lines = [f'digraph "{graph.name}" {{', "  rankdir=TB;", '  node [shape=box, style=rounded, fontname="Helvetica"];']
    for name, label in labels.items():
        lines.append(f'  {ids[name]} [label="{label}"];')
    for src, dst, key, out in graph.nx.edges(keys=True, data="output"):
        attr = f' [label="{out}"]' if out else ""
        lines.append(f"  {ids[src]} -> {ids[dst]}{attr};")
    for i, ref in enumerate(graph.outputs):
        lines.append(f'  out{i} [label="output {ref}", shape=ellipse];')
        lines.append(f"  {ids[ref.node]} -> out{i};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(graph: Graph) -> str:
    labels = _labels(graph)
    ids = {name: f"n{i}" for i, name in enumerate(labels)}
    lines = ["flowchart TD"]
    for name, label in labels.items():
        lines.append(f'  {ids[name]}["{label.replace(chr(92) + "n", "<br/>")}"]')
    for src, dst, key, out in graph.nx.edges(keys=True, data="output"):
        lines.append(f"  {ids[src]} -->{'|' + out + '|' if out else ''} {ids[dst]}")
    return "\n".join(lines) + "\n"


def render(graph: Graph, out: str | Path) -> Path:
    """Write ``graph`` to ``out``; the suffix picks the format."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise NascoreError(f"unknown format {suffix or '(none)'!r}, expected one of {', '.join(FORMATS)}",
                           where=str(out))
    if suffix in (".dot", ".gv"):
        atomic_write_text(out, to_dot(graph))
    elif suffix == ".mmd":
        atomic_write_text(out, to_mermaid(graph))
    else:
        dot = shutil.which("dot")
        if dot is None:
            raise NascoreError(f"{suffix} needs Graphviz's 'dot' program (apt install graphviz); "
                               "write .dot or .mmd instead", where=str(out))
        proc = subprocess.run([dot, f"-T{suffix[1:]}"], input=to_dot(graph).encode("utf-8"), capture_output=True,
                              check=False)
        if proc.returncode != 0:
            raise NascoreError(f"Graphviz failed: {proc.stderr.decode('utf-8', 'replace').strip()}", where=str(out))
        atomic_write_bytes(out, proc.stdout)
    return out
