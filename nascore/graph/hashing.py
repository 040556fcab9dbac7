"""A canonical structural hash: the same network under other node names or insertion order hashes the same.

Nodes are labelled by block and resolved parameters (a block's ``canonical`` hook first maps equivalent settings,
e.g. isomorphic cell genotypes, to one form); edges by input slot and producer output. networkx's
Weisfeiler-Lehman hash then summarises the labelled DAG; iterations cover the longest path, so the input node's
label sees the whole network downstream of it.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import networkx as nx

from nascore.errors import NascoreError, plugin_code
from nascore.graph.core import INPUT, Graph


def node_label(block: str, params: dict, spec) -> str:
    if spec is not None and spec.canonical is not None:
        with plugin_code(f"block {spec.name!r}'s canonical"):
            params = spec.canonical(dict(params))
    return f"{spec.name if spec else block}{json.dumps(params, sort_keys=True, default=list)}"


def structural_hash(graph: Graph) -> str:
    analysis = graph.analyse()
    g = nx.DiGraph()
    g.add_node(INPUT, label=f"input{list(graph.input_shape)}")
    outputs = {}
    for i, ref in enumerate(graph.outputs):
        outputs.setdefault(ref.node, []).append(f"{i}:{ref.output}")
    for name, info in analysis.nodes.items():
        try:
            label = node_label(info.block, info.params, info.spec)
        except NascoreError as err:
            raise graph.locate(err, name) from None
        if name in outputs:
            label += f"->out{outputs[name]}"
        g.add_node(name, label=label)
    for name, info in analysis.nodes.items():
        slots: dict[str, list[str]] = {}
        for slot, ref in enumerate(info.inputs):
            slots.setdefault(ref.node, []).append(f"{slot}:{ref.output}")
        for src, labels in slots.items():
            g.add_edge(src, name, label="|".join(labels))
    depth = nx.dag_longest_path_length(g) + 1
    # networkx 3.5 warns that directed hashes changed in 3.5. Hashes are stored in a run's study and in retrain
    # checkpoints; across a networkx upgrade a resumed run would only fail to recognise an earlier duplicate (and
    # train it again), and a retrain resume would refuse the checkpoint, naming both hashes.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        wl = nx.weisfeiler_lehman_graph_hash(g, node_attr="label", edge_attr="label", iterations=depth,
                                             digest_size=16)
    return hashlib.sha256(wl.encode()).hexdigest()[:32]
