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

MAPPINGS = ROOT / "graphs" / "torchvision"
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


def module_mapping(tv_state: dict, ns_state: dict, ns_keys: list[str], ignore: tuple[str, ...]) -> dict[str, str]:
    tv_keys = [k for k in tv_state if not k.startswith(ignore)]
    if len(tv_keys) != len(ns_keys):
        raise SystemExit(f"{len(tv_keys)} torchvision tensors against {len(ns_keys)} nascore tensors")
    modules: dict[str, str] = {}
    for tv, ns in zip(tv_keys, ns_keys):
        tv_mod, tv_leaf = tv.rsplit(".", 1)
        ns_mod, ns_leaf = ns.rsplit(".", 1)
        if tv_leaf != ns_leaf or tuple(tv_state[tv].shape) != tuple(ns_state[ns].shape):
            raise SystemExit(f"{tv} {list(tv_state[tv].shape)} does not pair with {ns} {list(ns_state[ns].shape)}")
        if modules.setdefault(tv_mod, ns_mod) != ns_mod:
            raise SystemExit(f"torchvision module {tv_mod} pairs with both {modules[tv_mod]} and {ns_mod}")
    if len(set(modules.values())) != len(modules):
        raise SystemExit("two torchvision modules pair with one nascore module")
    return modules


def write_mapping(name: str, modules: dict[str, str], ignore: tuple[str, ...], note: str | None) -> Path:
    doc = {"graph": name, "source": "torchvision", "model": f"torchvision.models.{name}", "ignore": list(ignore)}
    if note:
        doc["note"] = note
    doc["modules"] = modules
    header = (f"# torchvision.models.{name} state-dict names -> nascore's (graphs/{name}.yaml),\n"
              f"# for `nascore import torchvision {name}`. Written by benchmarks/make_torchvision_reference.py;\n"
              "# do not edit by hand. A torchvision module maps to a nascore module; the tensor name after the last\n"
              "# dot (weight, bias, running_mean, ...) is kept. `ignore`: tensors the graph leaves out (aux heads).\n")
    path = MAPPINGS / f"{name}.yaml"
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=120), encoding="utf-8")
    return path


def main() -> None:
    import torchvision

    torch.set_num_threads(1)
    MAPPINGS.mkdir(parents=True, exist_ok=True)
    fixture = {"torch": torch.__version__, "torchvision": torchvision.__version__, "batch": BATCH,
               "sampled_every": 1000 // SAMPLED, "models": {}}
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}")
    for name, (kwargs, ignore, side, note) in MODELS.items():
        t0 = time.perf_counter()
        tv = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
        tv_state = tv.state_dict()
        graph = Graph.load(ROOT / "graphs" / f"{name}.yaml")
        ns = graph.build().eval()
        ns_state = ns.state_dict()
        modules = module_mapping(tv_state, ns_state, nascore_order(graph, list(ns_state)), ignore)
        write_mapping(name, modules, ignore, note)

        tv.load_state_dict({k: reference_tensor(k, v) for k, v in tv_state.items()})
        mapped = {}
        for k, v in tv_state.items():
            if not k.startswith(ignore):
                mod, leaf = k.rsplit(".", 1)
                mapped[f"{modules[mod]}.{leaf}"] = reference_tensor(k, v)
        ns.load_state_dict(mapped, strict=True)

        x = reference_input((BATCH, 3, side, side))
        diffs = {}
        with torch.no_grad():
            for dtype in (torch.float32, torch.float64):
                a, b = tv.to(dtype)(x.to(dtype)), ns.to(dtype)(x.to(dtype))
                diffs[str(dtype).split(".")[1]] = float((a - b).abs().max() / a.abs().max())
        out = a.double()
        fixture["models"][name] = {
            "input": [BATCH, 3, side, side],
            "sampled": out[:, ::1000 // SAMPLED].tolist(),
            "sum": out.sum(1).tolist(),
            "sum_sq": out.pow(2).sum(1).tolist(),
            "max_abs": float(out.abs().max()),
        }
        print(f"{name:20s} {len(tv_state):4d} tensors  relative max |torchvision - nascore|: float32 "
              f"{diffs['float32']:.1e}, float64 {diffs['float64']:.1e}  (|out| <= {float(out.abs().max()):.3g}, "
              f"{time.perf_counter() - t0:.1f} s)")
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(fixture, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {FIXTURE.relative_to(ROOT)} and {len(MODELS)} mappings in {MAPPINGS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
