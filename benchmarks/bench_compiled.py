"""Compiled-model overhead: nascore-built networks against hand-written torchvision-style references.

For each model (resnet50, mobilenet_v2, efficientnet_b0, shufflenet_v2_x1_0) the reference from
``benchmarks/reference_models.py`` and the nascore build of ``graphs/<model>.yaml`` are made in one process, the
reference's weights are copied into the nascore model (state_dicts line up one to one, shapes checked) and their eval
outputs compared. Then, per backend (eager, torch.compile with the default inductor backend), mode and batch size:

    forward          model.eval(), torch.no_grad()
    forward+backward model.train(), dummy loss out.sum(), .backward() (gradients cleared, untimed, before each run)

warm-up runs of both, then timed runs interleaved A B / B A / A B ... (the order flips every round so neither side
always runs first), and the medians. ``ratio`` is nascore's median / the reference's median; ``paired`` is the
median of the per-round ratios (robust to drift in a noisy machine); ``iqr`` the spread of those per-round ratios.

    .venv/bin/python benchmarks/bench_compiled.py                  # side 224, eager + compile
    .venv/bin/python benchmarks/bench_compiled.py --quick          # side 112, fewer repeats
    .venv/bin/python benchmarks/bench_compiled.py --no-compile --models resnet50 --batches 1
    .venv/bin/python benchmarks/bench_compiled.py --backends compile --quick

Results are merged into ``benchmarks/results/compiled.json`` (keyed by backend / model / mode / batch / side), with
the machine, torch version, thread count and each invocation's command line.

``--patch NAME`` monkeypatches a proposed nascore fix before building (never edits nascore itself), to measure it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import reference_models

MODELS = ("resnet50", "mobilenet_v2", "efficientnet_b0", "shufflenet_v2_x1_0")
# torchvision's efficientnet_b0 trains with stochastic depth 0.2 x i / 16 in block i (i = 0..15); nascore's schedule is
# rate x i / 15, so rate = 0.2 x 15 / 16 gives torchvision's per-block rates exactly.
DROP_PATH = {"efficientnet_b0": 0.2 * 15 / 16}


# -- proposed fixes, applied by monkeypatching (nascore/ and plugins/ are not edited here) ---------------------------

def strip_identity(model: nn.Module) -> None:
    """Drop ``nn.Identity`` members of every Sequential (ConvNormAct's act / norm when "none"): fewer no-op calls,
    same state_dict (Identity holds no tensors)."""
    for m in list(model.modules()):
        if isinstance(m, nn.Sequential):
            for key in [k for k, sub in m._modules.items() if isinstance(sub, nn.Identity)]:
                del m._modules[key]


def _bottleneck_forward(self, x):
    out = self.drop_path(self.se(self.conv3(self.conv2(self.conv1(x)))))
    out += self.shortcut(x)          # torchvision: out += identity (no new block-sized tensor)
    return self.act(out)


def _basic_forward(self, x):
    out = self.drop_path(self.se(self.conv2(self.conv1(x))))
    out += self.shortcut(x)
    return self.act(out)


def _inverted_forward(self, x):
    y = self.project(self.se(self.dw(self.expand(x))))
    if self.use_res:
        y = self.drop_path(y)
        y += x                       # torchvision MBConv: result += input
    return y


def inplace_residual(model: nn.Module) -> None:
    """Residual joins add in place into the branch output (a fresh tensor from BN / SE / drop-path), as torchvision's
    Bottleneck, BasicBlock and MBConv do, instead of allocating the sum."""
    import types

    from nascore_plugins.mobile import InvertedResidual, MBConv
    from nascore_plugins.residual import BasicBlock, Bottleneck

    table = {Bottleneck: _bottleneck_forward, BasicBlock: _basic_forward, MBConv: _inverted_forward,
             InvertedResidual: _inverted_forward}
    for m in model.modules():
        if type(m) in table:
            m.forward = types.MethodType(table[type(m)], m)


PATCHES = {"strip-identity": strip_identity, "inplace-residual": inplace_residual}


# -- models ----------------------------------------------------------------------------------------------------------

def build_pair(name: str, patches=(), baseline="reference"):
    from nascore import Graph

    torch.manual_seed(0)
    ref = reference_models.MODELS[name]()
    n_ref = reference_models.count_params(ref)
    assert n_ref == reference_models.PARAMS[name], (name, n_ref)
    nas = Graph.load(ROOT / "graphs" / f"{name}.yaml").build(drop_path_rate=DROP_PATH.get(name))
    n_nas = sum(p.numel() for p in nas.parameters())
    assert n_nas == n_ref, f"{name}: nascore {n_nas:,} parameters, reference {n_ref:,}"
    copy_weights(ref, nas)
    if baseline == "nascore":  # A/B of a patch: the unpatched nascore build is the baseline
        ref = nas
        nas = Graph.load(ROOT / "graphs" / f"{name}.yaml").build(drop_path_rate=DROP_PATH.get(name))
        nas.load_state_dict(ref.state_dict())
    for patch in patches:
        PATCHES[patch](nas)
    return ref, nas


def call_order(model: nn.Module, side: int = 64) -> list[nn.Module]:
    """Modules holding tensors, in the order one forward calls them (a GraphModule registers its top-level children
    before nested stages, so registration order is not layer order)."""
    seen: dict[int, nn.Module] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, _: seen.setdefault(id(mod), mod) and None)
             for m in model.modules() if next(iter(m._parameters.values()), None) is not None or m._buffers]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, side, side))
    model.train(was)
    for h in hooks:
        h.remove()
    return list(seen.values())


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy ``src``'s parameters and buffers into ``dst`` layer by layer (in call order), asserting every shape."""
    a, b = call_order(src), call_order(dst)
    assert len(a) == len(b), (len(a), len(b))
    with torch.no_grad():
        for ms, md in zip(a, b):
            assert type(ms) is type(md), (ms, md)
            ts = list(ms._parameters.items()) + list(ms._buffers.items())
            td = list(md._parameters.items()) + list(md._buffers.items())
            assert [k for k, _ in ts] == [k for k, _ in td], (ms, md)
            for (k, vs), (_, vd) in zip(ts, td):
                if vs is None:
                    assert vd is None, (ms, k)
                    continue
                assert vs.shape == vd.shape, f"{ms} {k} {tuple(vs.shape)} vs {md} {tuple(vd.shape)}"
                vd.copy_(vs)
    assert sum(1 for _ in src.state_dict()) == sum(1 for _ in dst.state_dict())


def check_outputs(ref, nas, side: int) -> dict:
    """Eval outputs (running statistics), and train-mode outputs (batch statistics, so activations are O(1) even
    with freshly initialised weights) with dropout / stochastic depth switched off on copies of both models."""
    import copy

    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    result = {}
    for label, train in (("eval", False), ("train_batch_stats", True)):
        a_m, b_m = copy.deepcopy(ref), copy.deepcopy(nas)
        for m in list(a_m.modules()) + list(b_m.modules()):
            if isinstance(m, nn.Dropout):
                m.p = 0.0
            if hasattr(m, "drop_prob"):
                m.drop_prob = 0.0
            if isinstance(m, reference_models.StochasticDepth):
                m.p = 0.0
        a_m.train(train), b_m.train(train)
        with torch.no_grad():
            a, b = a_m(x), b_m(x)
        err, scale = (a - b).abs().max().item(), a.abs().max().item()
        result[label] = {"max_abs_diff": err, "max_abs_ref": scale, "agree": bool(err <= 1e-5 * max(1e-3, scale))}
    result["agree"] = all(v["agree"] for v in result.values() if isinstance(v, dict))
    result["max_abs_diff"] = max(v["max_abs_diff"] for v in result.values() if isinstance(v, dict))
    return result


def structure(model: nn.Module, side: int) -> dict:
    """Module counts and the number of module calls in one eval forward (each costs Python dispatch in eager)."""
    calls = [0]
    handles = [m.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1)) for m in model.modules()]
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, side, side))
    for h in handles:
        h.remove()
    mods = list(model.modules())
    return {"modules": len(mods), "identity": sum(isinstance(m, nn.Identity) for m in mods),
            "module_calls_per_forward": calls[0]}


# -- what torch.compile sees ---------------------------------------------------------------------------------------

def _signature(gm) -> list[tuple]:
    """The ops of an FX graph with arguments renumbered (names and parameter paths dropped), to compare graphs."""
    index, sig = {}, []
    def norm(a):
        if isinstance(a, torch.fx.Node):
            return ("%", index[a])
        if isinstance(a, (list, tuple)):
            return tuple(norm(x) for x in a)
        if isinstance(a, dict):
            return tuple(sorted((k, norm(v)) for k, v in a.items()))
        return a if isinstance(a, (int, float, bool, str, type(None))) else str(a)
    for node in gm.graph.nodes:
        index[node] = len(index)
        if node.op in ("call_function", "call_method", "call_module"):
            sig.append((str(node.target), norm(node.args), norm(node.kwargs)))
        elif node.op == "placeholder":
            val = node.meta.get("val")
            sig.append(("input", tuple(val.shape) if isinstance(val, torch.Tensor) else None))
    return sig


def capture(model, mode, side) -> dict:
    """The aten graphs AOTAutograd hands to inductor (forward, and backward in train mode), and graph breaks."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    graphs = []
    def keep(gm, example_inputs):
        graphs.append(gm)
        return make_boxed_func(gm.forward)
    torch._dynamo.reset()
    model.train(mode == "fwdbwd")
    compiled = torch.compile(model, backend=aot_autograd(fw_compiler=keep, bw_compiler=keep), dynamic=False)
    x = torch.randn(2, 3, side, side)
    if mode == "fwd":
        with torch.no_grad():
            compiled(x)
    else:
        compiled(x).sum().backward()
        model.zero_grad(set_to_none=True)
    torch._dynamo.reset()
    return {"graphs": len(graphs), "sigs": [_signature(g) for g in graphs]}


def compare_graphs(ref, nas, side) -> dict:
    out = {}
    for mode in ("fwd", "fwdbwd"):
        a, b = capture(ref, mode, side), capture(nas, mode, side)
        diffs, ops = [], []
        for ga, gb in zip(a["sigs"], b["sigs"]):
            ops.append([len(ga), len(gb)])
            diffs.extend([(x, y) for x, y in zip(ga, gb) if x != y])
            if len(ga) != len(gb):
                diffs.append((f"{len(ga)} nodes", f"{len(gb)} nodes"))
        out[mode] = {"graphs": [a["graphs"], b["graphs"]], "nodes": ops, "identical": not diffs and
                     a["graphs"] == b["graphs"], "differences": len(diffs),
                     "first_differences": [[str(x)[:200], str(y)[:200]] for x, y in diffs[:6]]}
    return out


# -- deterministic estimates of eager overhead (robust on a noisy, shared machine) --------------------------------

def _best(fn, reps=7, inner=1):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def micro(ref, nas, name, structs, batches, side) -> dict:
    """Cost model of the eager differences: extra module calls x the cost of one no-op module call, and (ResNet)
    the out-of-place residual add (a fresh block-output-sized tensor per block) vs torchvision's in-place ``+=``."""
    x = torch.randn(1, 8, 4, 4)
    ident = nn.Identity()
    call_s = _best(lambda: ident(x), reps=7, inner=2000)
    extra_calls = structs["nascore"]["module_calls_per_forward"] - structs["ref"]["module_calls_per_forward"]
    out = {"noop_module_call_us": call_s * 1e6, "extra_module_calls": extra_calls,
           "extra_call_overhead_ms": extra_calls * call_s * 1e3}
    # torchvision adds in place in Bottleneck and MBConv (MobileNetV2 and ShuffleNetV2 have no such difference)
    joins = [m for m in ref.modules() if isinstance(m, reference_models.Bottleneck)
             or (isinstance(m, reference_models.MBConv) and m.use_res_connect)]
    if joins:
        shapes = []
        hooks = [m.register_forward_hook(lambda mod, i, o: shapes.append(tuple(o.shape[1:])) and None)
                 for m in joins]
        ref.eval()
        with torch.no_grad():
            ref(torch.zeros(1, 3, side, side))
        for h in hooks:
            h.remove()
        for batch in batches:
            extra = 0.0
            for shape in shapes:
                a, b = torch.randn(batch, *shape), torch.randn(batch, *shape)
                t_new = _best(lambda a=a, b=b: torch.add(a, b), reps=5)
                t_inplace = _best(lambda a=a, b=b: a.add_(b), reps=5)
                extra += t_new - t_inplace
            out[f"residual_add_alloc_ms_b{batch}"] = extra * 1e3
    return out


# -- timing ----------------------------------------------------------------------------------------------------------

def make_step(model, x, mode):
    if mode == "fwd":
        def step():
            with torch.no_grad():
                model(x)
        return step, None
    params = [p for p in model.parameters()]

    def clear():
        for p in params:
            p.grad = None

    def step():
        out = model(x)
        out.sum().backward()
    return step, clear


def timed(step, clear) -> float:
    if clear is not None:
        clear()
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def measure_cell(ref, nas, mode, batch, side, warmup, repeats, budget_s, min_repeats):
    for m in (ref, nas):
        m.train(mode == "fwdbwd")
    x = torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(2))
    steps = {"ref": make_step(ref, x, mode), "nascore": make_step(nas, x, mode)}
    t_compile0 = time.perf_counter()
    first = {}
    for key in ("ref", "nascore"):  # first call: compiles under torch.compile; timed separately
        first[key] = timed(*steps[key])
    for _ in range(max(0, warmup - 1)):
        for key in ("ref", "nascore"):
            timed(*steps[key])
    warm_s = time.perf_counter() - t_compile0
    times = {"ref": [], "nascore": []}
    start = time.perf_counter()
    for i in range(repeats):
        order = ("ref", "nascore") if i % 2 == 0 else ("nascore", "ref")
        for key in order:
            times[key].append(timed(*steps[key]))
        if i + 1 >= min_repeats and time.perf_counter() - start > budget_s:
            break
    for key in ("ref", "nascore"):
        if steps[key][1] is not None:
            steps[key][1]()
    r, n = statistics.median(times["ref"]), statistics.median(times["nascore"])
    pairs = sorted(b / a for a, b in zip(times["ref"], times["nascore"]))
    q = statistics.quantiles(pairs, n=4) if len(pairs) >= 2 else [pairs[0]] * 3
    return {"ref_ms": r * 1e3, "nascore_ms": n * 1e3, "ratio": n / r, "paired": statistics.median(pairs),
            "iqr": [q[0], q[2]], "runs": len(pairs), "first_call_s": first, "warmup_s": warm_s,
            "ref_all_ms": [t * 1e3 for t in times["ref"]], "nascore_all_ms": [t * 1e3 for t in times["nascore"]]}


# -- main ------------------------------------------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--side", type=int, default=None, help="input height and width (default 224; 112 with --quick)")
    p.add_argument("--quick", action="store_true", help="side 112 and fewer repeats")
    p.add_argument("--batches", default="1,32")
    p.add_argument("--modes", default="fwd,fwdbwd", help="fwd (eval, no_grad) and/or fwdbwd (train, dummy loss)")
    p.add_argument("--backends", default="eager,compile")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--warmup", type=int, default=None, help="warm-up runs of each model (default 3; 2 with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs of each model (default 15; 7 with --quick)")
    p.add_argument("--min-repeats", type=int, default=3, help="timed runs even when over --cell-budget")
    p.add_argument("--cell-budget", type=float, default=None,
                   help="stop timing a cell after this many seconds, once --min-repeats are done (default 40; 15 "
                        "with --quick)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the CPU count)")
    p.add_argument("--patch", action="append", default=[], choices=sorted(PATCHES),
                   help="monkeypatch a proposed nascore fix before building")
    p.add_argument("--graphs", action="store_true",
                   help="compare the aten graphs torch.compile hands inductor (fwd and fwd+bwd), then time")
    p.add_argument("--micro", action="store_true",
                   help="cost-model the eager differences (no-op module calls, out-of-place residual add)")
    p.add_argument("--baseline", choices=("reference", "nascore"), default="reference",
                   help="what the 'ref' column is: the hand-written reference, or the unpatched nascore build (to A/B "
                        "a --patch)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compiled.json"))
    p.add_argument("--tag", default="", help="suffix for the result keys (e.g. the patch being tried)")
    a = p.parse_args(argv)

    side = a.side or (112 if a.quick else 224)
    warmup = a.warmup if a.warmup is not None else (2 if a.quick else 3)
    repeats = a.repeats if a.repeats is not None else (7 if a.quick else 15)
    budget = a.cell_budget if a.cell_budget is not None else (15.0 if a.quick else 40.0)
    threads = a.threads or os.cpu_count()
    torch.set_num_threads(threads)
    backends = [b for b in a.backends.split(",") if b and b != "none" and not (a.no_compile and b == "compile")]
    unknown = set(backends) - {"eager", "compile"}
    if unknown:
        p.error(f"unknown backend(s) {sorted(unknown)}: eager, compile, or none (no timing)")
    models = [m for m in a.models.split(",") if m]
    batches = [int(b) for b in a.batches.split(",")]
    modes = [m for m in a.modes.split(",") if m]
    tag = a.tag or ("+".join(a.patch) if a.patch else "") + ("" if a.baseline == "reference" else "/vs-nascore")

    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "interop_threads": torch.get_num_interop_threads(), "torch": torch.__version__,
               "python": platform.python_version(), "loadavg_start": os.getloadavg()}
    command = "python " + " ".join(shlex.quote(x) for x in [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    print(f"# {command}\n# torch {torch.__version__}, {threads} threads of {os.cpu_count()} CPUs, side {side}, "
          f"warm-up {warmup}, repeats {repeats} (cell budget {budget:g}s), patches {a.patch or 'none'}", flush=True)

    results, checks, structures = [], {}, {}
    header = f"{'model':20s} {'backend':8s} {'mode':7s} {'batch':>5s} {'ref ms':>10s} {'nascore ms':>10s} " \
             f"{'ratio':>6s} {'paired':>6s} {'iqr':>13s} {'n':>3s}"
    print(header, flush=True)
    t_all = time.perf_counter()
    for name in models:
        ref, nas = build_pair(name, a.patch, a.baseline)
        checks[name] = check_outputs(ref, nas, side)
        structures[name] = {"ref": structure(ref, side), "nascore": structure(nas, side)}
        if a.micro:
            structures[name]["micro"] = mi = micro(ref, nas, name, structures[name], batches, side)
            print(f"# {name}: " + ", ".join(f"{k} {v:.3g}" for k, v in mi.items()), flush=True)
        if a.graphs:
            structures[name]["compile_graphs"] = g = compare_graphs(ref, nas, min(side, 64))
            print(f"# {name}: aten graphs " + ", ".join(
                f"{m} {'identical' if v['identical'] else str(v['differences']) + ' differences'} (nodes {v['nodes']})"
                for m, v in g.items()), flush=True)
            for m, v in g.items():
                for x, y in v["first_differences"]:
                    print(f"#   {m}: ref {x}\n#   {m}: nas {y}", flush=True)
        for backend in backends:
            if backend == "compile":
                torch._dynamo.reset()
                r_run, n_run = torch.compile(ref, dynamic=False), torch.compile(nas, dynamic=False)
            else:
                r_run, n_run = ref, nas
            for mode in modes:
                for batch in batches:
                    res = measure_cell(r_run, n_run, mode, batch, side, warmup, repeats, budget, a.min_repeats)
                    res.update(model=name, backend=backend, mode=mode, batch=batch, side=side, tag=tag,
                               threads=threads, warmup=warmup)
                    results.append(res)
                    print(f"{name:20s} {backend:8s} {mode:7s} {batch:5d} {res['ref_ms']:10.2f} "
                          f"{res['nascore_ms']:10.2f} {res['ratio']:6.3f} {res['paired']:6.3f} "
                          f"[{res['iqr'][0]:.3f},{res['iqr'][1]:.3f}] {res['runs']:3d}", flush=True)
                    gc.collect()
        del ref, nas
        gc.collect()
    wall = time.perf_counter() - t_all
    machine["loadavg_end"] = os.getloadavg()
    print("# outputs agree: " + ", ".join(f"{k} {v['agree']} ({v['max_abs_diff']:.2e})" for k, v in checks.items()))
    print(f"# wall {wall:.0f}s", flush=True)

    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = json.loads(out.read_text()) if out.exists() else {}
    doc.setdefault("description", "nascore-built models vs hand-written torchvision-style references, one process, "
                                  "interleaved runs; ratio = nascore median / reference median (goal <= 1.02)")
    doc.setdefault("runs", [])
    doc["runs"].append({"command": command, "machine": machine, "side": side, "warmup": warmup, "repeats": repeats,
                        "cell_budget_s": budget, "patches": a.patch, "baseline": a.baseline, "wall_s": wall, "output_check": checks,
                        "structure": structures})
    cells = doc.setdefault("results", {})
    for res in results:
        key = f"{res['backend']}/{res['model']}/{res['mode']}/b{res['batch']}/s{res['side']}" + (f"/{tag}" if tag
                                                                                                  else "")
        cells[key] = dict(res, command=command)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"# wrote {out}")


if __name__ == "__main__":
    main()
