"""Map torchvision's state-dict names to the zoo graphs' and record torchvision's outputs as a reference.

torchvision does not install beside the pinned torch (2.13, CPU), so this runs in a separate environment that has
it (torch 2.14.1 + torchvision 0.29.1 install together and import on CPU), with nascore installed from this checkout:

    python -m venv /tmp/nascore-tv
    /tmp/nascore-tv/bin/pip install torch==2.14.1 torchvision==0.29.1 pluggy networkx pyyaml safetensors click
    /tmp/nascore-tv/bin/pip install --no-deps -e .
    /tmp/nascore-tv/bin/python benchmarks/make_torchvision_reference.py

For each of the 11 classification zoo graphs that torchvision implements it builds torchvision's model (no weights
are downloaded: its own random initialisation, then every tensor overwritten by tests/zoo/reference_weights.py,
a formula of the tensor's name that does not depend on torch's generator) and the nascore graph, and

1. pairs the tensors in order: torchvision's state dict in registration order (auxiliary heads left out) against
   nascore's sorted by the graph's node order, checking every shape, and writes the module-to-module name mapping
   to graphs/torchvision/NAME.yaml (what `nascore import torchvision` loads);
2. loads the same formula weights into both through that mapping and prints the largest difference of their outputs
   in float32 and float64 (0 is exact);
3. writes torchvision's float64 outputs for a fixed small input to tests/zoo/data/torchvision_reference.json, which
   tests/zoo/test_torchvision_reference.py recomputes with nascore under the pinned torch.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nascore import Graph  # noqa: E402
from tests.zoo.reference_weights import reference_input, reference_tensor  # noqa: E402

FIXTURE = ROOT / "tests" / "zoo" / "data" / "torchvision_reference.json"
BATCH = 2
SAMPLED = 40          # logits kept per sample (every 25th of 1000), plus the sum and sum of squares of all

# zoo graph: (torchvision builder arguments, prefixes of tensors the zoo graph leaves out, input side, note)
TRANSFORM_NOTE = ("torchvision's pretrained {0} weights expect transform_input=True (torchvision rescales ImageNet-"
                  "normalised input to mean 0.5, std 0.5 inside the model); the zoo graph takes that input directly: "
                  "normalise with mean 0.5 and std 0.5 per channel.")
MODELS = {
    "resnet18": ({}, (), 64, None),
    "resnet50": ({}, (), 64, None),
    "resnext50_32x4d": ({}, (), 64, None),
    "mobilenet_v2": ({}, (), 64, None),
    "mobilenet_v3_large": ({}, (), 64, None),
    "efficientnet_b0": ({}, (), 64, None),
    "shufflenet_v2_x1_0": ({}, (), 64, None),
    "squeezenet1_1": ({}, (), 64, None),
    "densenet121": ({}, (), 64, None),
    "googlenet": ({"aux_logits": True, "init_weights": False}, ("aux1.", "aux2."), 64,
                  TRANSFORM_NOTE.format("googlenet")),
    "inception_v3": ({"aux_logits": True, "init_weights": False}, ("AuxLogits.",), 75,
                     TRANSFORM_NOTE.format("inception_v3")),
}


def nascore_order(graph: Graph, keys: list[str]) -> list[str]:
    """nascore's state-dict keys sorted by the node that owns them (graph order), registration order within one."""
    nodes = list(graph.analyse().nodes)
    index = {n: i for i, n in enumerate(nodes)}

    def owner(key: str) -> int:
        best = max((n for n in nodes if key.startswith(n + ".")), key=len)
        return index[best]

    return [k for _, _, k in sorted((owner(k), i, k) for i, k in enumerate(keys))]


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    while shape and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def module_mapping(src_state: dict, ns_state: dict, ns_keys: list[str], ignore: tuple[str, ...],
                   source: str = "torchvision") -> tuple[dict[str, str], dict[str, list[int]]]:
    """Source module -> nascore module, pairing the tensors in order; and the source tensors whose shape differs only
    by trailing 1s (a 1x1 convolution where nascore has a linear layer) with their source shape."""
    src_keys = [k for k in src_state if not k.startswith(ignore)]
    if len(src_keys) != len(ns_keys):
        raise SystemExit(f"{len(src_keys)} {source} tensors against {len(ns_keys)} nascore tensors")
    modules: dict[str, str] = {}
    reshape: dict[str, list[int]] = {}
    for src, ns in zip(src_keys, ns_keys):
        src_mod, src_leaf = src.rsplit(".", 1)
        ns_mod, ns_leaf = ns.rsplit(".", 1)
        src_shape, ns_shape = tuple(src_state[src].shape), tuple(ns_state[ns].shape)
        if src_leaf != ns_leaf or _squeezed(src_shape) != _squeezed(ns_shape):
            raise SystemExit(f"{src} {list(src_shape)} does not pair with {ns} {list(ns_shape)}")
        if src_shape != ns_shape:
            reshape[src] = list(src_shape)
        if modules.setdefault(src_mod, ns_mod) != ns_mod:
            raise SystemExit(f"{source} module {src_mod} pairs with both {modules[src_mod]} and {ns_mod}")
    if len(set(modules.values())) != len(modules):
        raise SystemExit(f"two {source} modules pair with one nascore module")
    return modules, reshape


def write_mapping(name: str, modules: dict[str, str], ignore: tuple[str, ...], note: str | None,
                  source: str = "torchvision", graph: str | None = None, model: str | None = None,
                  reshape: dict[str, list[int]] | None = None) -> Path:
    graph = graph or name
    model = model or f"torchvision.models.{name}"
    doc = {"graph": graph, "source": source, "model": model, "ignore": list(ignore)}
    if note:
        doc["note"] = note
    if reshape:
        doc["reshape"] = reshape
    doc["modules"] = modules
    script = f"benchmarks/make_{source}_reference.py"
    header = (f"# {model} state-dict names -> nascore's (graphs/{graph}.yaml),\n"
              f"# for `nascore import {source} {name}`. Written by {script};\n"
              f"# do not edit by hand. A {source} module maps to a nascore module; the tensor name after the last\n"
              "# dot (weight, bias, running_mean, ...) is kept. `ignore`: tensors the graph leaves out (aux heads).\n")
    if reshape:
        header += "# `reshape`: tensors the source stores in another shape of the same values, with that shape.\n"
    folder = ROOT / "graphs" / source
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=120), encoding="utf-8")
    return path


def map_and_record(source: str, name: str, model: torch.nn.Module, graph_name: str, ignore: tuple[str, ...],
                   note: str | None, side: int, label: str | None = None) -> tuple[dict, dict[str, float]]:
    """Map ``model`` (``source``'s ``name``, eval mode) to zoo graph ``graph_name`` and write the mapping; load the
    formula weights (of the source's names) into both and compare them; return the fixture entry (the source's
    float64 outputs for the reference input) and the largest output differences relative to the largest output."""
    src_state = model.state_dict()
    graph = Graph.load(ROOT / "graphs" / f"{graph_name}.yaml")
    ns = graph.build().eval()
    ns_state = ns.state_dict()
    modules, reshape = module_mapping(src_state, ns_state, nascore_order(graph, list(ns_state)), ignore, source)
    write_mapping(name, modules, ignore, note, source, graph_name, label, reshape)

    model.load_state_dict({k: reference_tensor(k, v) for k, v in src_state.items()})
    mapped = {}
    for k, v in src_state.items():
        if not k.startswith(ignore):
            mod, leaf = k.rsplit(".", 1)
            target = f"{modules[mod]}.{leaf}"
            mapped[target] = reference_tensor(k, v).reshape(ns_state[target].shape)
    ns.load_state_dict(mapped, strict=True)

    x = reference_input((BATCH, 3, side, side))
    diffs = {}
    with torch.no_grad():
        for dtype in (torch.float32, torch.float64):
            a, b = model.to(dtype)(x.to(dtype)), ns.to(dtype)(x.to(dtype))
            diffs[str(dtype).split(".")[1]] = float((a - b).abs().max() / a.abs().max())
    out = a.double()
    entry = {
        "input": [BATCH, 3, side, side],
        "sampled": out[:, ::1000 // SAMPLED].tolist(),
        "sum": out.sum(1).tolist(),
        "sum_sq": out.pow(2).sum(1).tolist(),
        "max_abs": float(out.abs().max()),
    }
    return entry, diffs


def record_all(source: str, version: str, models: dict, fixture: Path) -> None:
    """For each ``name: (build, graph, ignore, side, note, label)`` (``build()`` gives the source's model in eval mode):
    write its mapping, print the difference, and write all outputs to ``fixture``."""
    torch.set_num_threads(1)
    doc = {"torch": torch.__version__, source: version, "batch": BATCH, "sampled_every": 1000 // SAMPLED, "models": {}}
    print(f"torch {torch.__version__}, {source} {version}")
    for name, (build, graph, ignore, side, note, label) in models.items():
        t0 = time.perf_counter()
        model = build()
        tensors = len(model.state_dict())
        entry, diffs = map_and_record(source, name, model, graph, ignore, note, side, label)
        doc["models"][name] = entry
        print(f"{name:22s} {tensors:4d} tensors  relative max |{source} - nascore|: float32 "
              f"{diffs['float32']:.1e}, float64 {diffs['float64']:.1e}  (|out| <= {entry['max_abs']:.3g}, "
              f"{time.perf_counter() - t0:.1f} s)")
    fixture.parent.mkdir(parents=True, exist_ok=True)
    fixture.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {fixture.relative_to(ROOT)} and {len(models)} mappings in graphs/{source}")


def main() -> None:
    import torchvision

    def builder(name: str, kwargs: dict):
        return lambda: getattr(torchvision.models, name)(weights=None, **kwargs).eval()

    record_all("torchvision", torchvision.__version__,
               {name: (builder(name, kwargs), name, ignore, side, note, None)
                for name, (kwargs, ignore, side, note) in MODELS.items()}, FIXTURE)


if __name__ == "__main__":
    main()
