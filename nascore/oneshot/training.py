"""Train a supernet once: one sampled path per step (single-path one-shot), with nascore's own trainer.

    nascore supernet train search_spaces/mbconv.yaml -o supernet/ [--sampling fair] [--workers 2]

    OUT/space.yaml           the space trained (self-contained: a base graph file inlined)
    OUT/supernet.json        how: kernel sharing, path sampling, seed, data, settings, the bank's layout
    OUT/checkpoint.pt        the whole training state after every epoch (resumable after a crash or kill -9)
    OUT/history.jsonl        one line per epoch: the trainer's record, and the mean validation accuracy of a few
                             fixed paths scored as a search scores them (inherited weights, recalibrated BN)
    OUT/supernet.safetensors the trained bank, once every epoch is done: what the ``supernet`` evaluator reads

:class:`SinglePath` turns the supernet into an ordinary model for :class:`~nascore.training.trainer.Trainer`: each
training forward runs the path of the current step, drawn by a rule that is a pure function of (seed, step), so
every data-parallel rank draws the same path and a resumed run continues the same sequence. Optimisers, schedules,
label smoothing, AMP and channels-last come from the trainer unchanged; drop-path is applied along the sampled path.

With ``workers`` > 0 the same loop runs on Ray Train (``TorchTrainer``: DDP over gloo on CPU, NCCL on GPU): each
rank trains on its share of every global batch, so the run follows the single-process one; rank 0 writes the folder,
which must therefore be on storage every node of a cluster reaches. A worker (or its node) lost mid-run makes Ray
Train restart the whole group, up to ``max_failures`` times: the new group continues from the last per-epoch
checkpoint of this run (found by the run's token, even with ``resume=False``), and ``OUT/restarts.jsonl`` records
each loss. An error of the user's input (a NascoreError in any worker: a data set missing on one node) ends the run
at once, never retried.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from nascore.errors import NascoreError, RunError, SupernetError
from nascore.graph.core import Graph
from nascore.io.atomic import atomic_write_bytes, atomic_write_text
from nascore.oneshot.calibrate import recalibrate_batch_norm
from nascore.oneshot.paths import fair_rule, sample_path, uniform_rule
from nascore.oneshot.supernet import KERNEL_SHARING, Supernet

SAMPLING = {"uniform": uniform_rule, "fair": fair_rule}
FORMAT = 1
SPACE_FILE, INFO_FILE, WEIGHTS_FILE = "space.yaml", "supernet.json", "supernet.safetensors"
RESTARTS = "restarts.jsonl"   # one line per worker group lost in a distributed run (written by Ray Train's controller)
MAX_FAILURES = 3              # worker-group restarts of a distributed run, by default
_RETRIES = 50   # fresh draws for a step whose path the space or a constraint rejects


def space_digest(space: Any) -> str:
    """What a supernet's weights depend on: the space's graph, scale and compound sections (not its settings)."""
    doc = {k: space.document.get(k) for k in ("graph", "scale", "compound")}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


class SinglePath(nn.Module):
    """``supernet`` as a one-input model: in training each call runs the path of step ``steps`` (a buffer, so it is
    checkpointed with the weights) and counts it; in eval mode it runs ``reference`` (the largest covering point).

    ``accept(graph)`` may reject a drawn path (a parameter or MAC limit): the step then draws again, as
    single-path one-shot samples only paths inside the search's constraints. An input whose side differs from the
    path's (a resolution choice) is resized to it, as a search does.
    """

    def __init__(self, supernet: Supernet, sampling: str = "uniform", seed: int = 0,
                 accept: Callable[[Graph], bool] | None = None):
        super().__init__()
        if sampling not in SAMPLING:
            raise SupernetError(f"got {sampling!r}, expected one of {list(SAMPLING)}", where="sampling")
        self.supernet = supernet
        self.sampling = sampling
        self.seed = seed
        self.accept = accept
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.reference = supernet.reference

    def path(self, step: int) -> Graph:
        """The architecture trained at ``step``: the same on every rank, in every run with this seed."""
        rule = SAMPLING[self.sampling]
        problem: Exception | None = None
        for attempt in range(_RETRIES):
            try:
                graph, _ = sample_path(self.supernet.space, rule(self.seed if attempt == 0 else (self.seed, attempt),
                                                                 step))
            except NascoreError as err:   # a combination the space rejects: draw again
                problem = err
                continue
            if self.accept is None or self.accept(graph):
                return graph
        raise SupernetError(f"no acceptable path in {_RETRIES} draws at step {step}"
                            + (f" (last rejection: {problem})" if problem else "; the constraints reject "
                               "every drawn path"), where="sampling")

    def forward(self, x: torch.Tensor) -> Any:
        if self.training:
            graph = self.path(int(self.steps))
            self.steps += 1
        else:
            graph = self.reference
        side = tuple(graph.input_shape[1:])
        if tuple(x.shape[2:]) != side:
            x = F.interpolate(x, size=side, mode="bilinear", align_corners=False)
        return self.supernet(x, graph)


# -- the folder ------------------------------------------------------------------------------------------------------


def _read_info(folder: Path) -> dict[str, Any]:
    path = folder / INFO_FILE
    if not path.is_file():
        raise RunError(f"has no {INFO_FILE}; expected a folder written by `nascore supernet train`",
                       where=str(folder))
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"is not readable JSON ({exc})", where=str(path)) from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise RunError(f"is not a nascore supernet description of format {FORMAT}", where=str(path))
    return info


def load_supernet(folder: str | Path, allow_unfinished: bool = False) -> tuple[Supernet, dict[str, Any]]:
    """The trained supernet of ``folder`` and its description; refuses (RunError) a folder whose training has not
    finished unless ``allow_unfinished`` (then the last epoch's checkpoint is used), and a bank whose layout differs
    from the stored one (another nascore or plugin version builds the space differently)."""
    from nascore.nas.space import SearchSpace

    folder = Path(folder)
    info = _read_info(folder)
    space = SearchSpace.load(folder / SPACE_FILE)
    supernet = Supernet(space, kernel_sharing=info["kernel_sharing"], cover_limit=info["cover_limit"],
                        initialise=False)
    _check_layout(supernet, info.get("layout") or [], folder)
    weights = folder / WEIGHTS_FILE
    if weights.is_file():
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        from nascore.training.checkpointed import CHECKPOINT
        from nascore.training.trainer import read_checkpoint

        if not allow_unfinished:
            raise RunError(f"has no {WEIGHTS_FILE}: its training has not finished; resume it with `nascore "
                           "supernet train` (or allow_unfinished=True to score with the last epoch's weights)",
                           where=str(folder))
        ckpt = read_checkpoint(folder / CHECKPOINT)
        state = {k.removeprefix("supernet."): v for k, v in ckpt["model"].items() if k.startswith("supernet.")}
    try:
        supernet.load_state_dict(state)
    except RuntimeError as exc:
        raise RunError(f"weights do not fit the space's supernet: {str(exc).strip().splitlines()[0]:.300}",
                       where=str(folder)) from None
    return supernet.eval(), info


def _check_layout(supernet: Supernet, stored: list[dict[str, Any]], folder: Path) -> None:
    mine = supernet.layout()
    if [(e["attr"], e["shape"]) for e in mine] != [(e.get("attr"), e.get("shape")) for e in stored]:
        first = next((a for a, b in zip(mine, stored) if (a["attr"], a["shape"]) != (b.get("attr"), b.get("shape"))),
                     mine[len(stored)] if len(mine) > len(stored) else stored[len(mine)])
        raise SupernetError(f"the space now builds a different weight bank than the one trained (first difference: "
                            f"{first.get('node')} {first.get('tensor')} {first.get('shape')}); expected the nascore "
                            "and plugin versions it was trained with", where=str(folder))


# -- training --------------------------------------------------------------------------------------------------------


def _constraint_filter(limits: Mapping[str, float]) -> Callable[[Graph], bool] | None:
    limits = {k: v for k, v in limits.items() if k in ("max_params", "max_macs")}
    if not limits:
        return None

    def accept(graph: Graph) -> bool:
        a = graph.analyse()
        return a.params <= limits.get("max_params", math.inf) and a.macs <= limits.get("max_macs", math.inf)
    return accept


def _monitor_paths(single: SinglePath, count: int) -> list[Graph]:
    """Fixed paths scored after every epoch: the reference (largest) and draws of another seed."""
    paths = [single.reference]
    step = 0
    while len(paths) < count and step < 10 * count:
        rule = SAMPLING["uniform"]((single.seed, "monitor"), step)
        step += 1
        try:
            graph, _ = sample_path(single.supernet.space, rule)
        except NascoreError:
            continue
        if single.accept is None or single.accept(graph):
            paths.append(graph)
    return paths


def score_path(supernet: Supernet, graph: Graph, trainer: Any, batches: int, split: str = "val") -> float:
    """A candidate's one-shot score: its subnet with inherited weights, batch norm recalibrated on ``batches``
    training batches, top-1 accuracy on ``split``. The supernet is left as it was."""
    model = supernet.subnet(graph, device=trainer.device)
    side = tuple(graph.input_shape[1:])
    if side != tuple(trainer.splits.input_shape[1:]):
        from nascore.training.trainer import Resize

        model = Resize(model, side)
    return recalibrated_accuracy(model, trainer, batches, split=split)[0]


def recalibrated_accuracy(model: nn.Module, trainer: Any, batches: int, batch_size: int | None = None,
                          split: str = "val") -> tuple[float, int]:
    """(top-1 accuracy on ``split``, batches used) of ``model`` after its batch-norm statistics are recomputed on
    ``batches`` training batches of ``trainer``'s data (a fixed draw): how every one-shot candidate is scored."""
    used = recalibrate_batch_norm(model, trainer.batches("train", batches, batch_size, seed=1))
    return trainer.evaluate(split, model=model), used


def _settings(space: Any, data: str | None, data_root: str | None, data_params: Mapping[str, Any] | None,
              train: Mapping[str, Any] | None, epochs: int | None, device: str | None) -> dict[str, Any]:
    """Data and training settings: arguments < the space's ``search:`` section < nascore's defaults."""
    search = space.settings
    settings = {**dict(search.get("train") or {}), **dict(train or {})}
    if epochs is not None:
        settings["epochs"] = epochs
    settings.setdefault("epochs", 20)
    if device is not None and (device != "auto" or "device" not in settings):
        settings["device"] = device
    return {"data": data or search.get("data", "digits"), "data_root": data_root or search.get("data_root"),
            "data_params": dict(data_params if data_params is not None else search.get("data_params") or {}),
            "train": settings, "constraints": dict(search.get("constraints") or {})}


def train_supernet(space_path: str | Path, out_dir: str | Path, *, data: str | None = None,
                   data_root: str | None = None, data_params: Mapping[str, Any] | None = None,
                   epochs: int | None = None, train: Mapping[str, Any] | None = None, sampling: str = "uniform",
                   kernel_sharing: str = "slice", seed: int = 0, cover_limit: int = 256, monitor: int = 3,
                   calibration_batches: int = 8, resume: bool = True, device: str | None = "auto",
                   workers: int = 0, cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0,
                   address: str | None = None, max_failures: int | None = None,
                   progress: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train the supernet of the space file ``space_path`` into ``out_dir``; resumable; returns its summary.

    Data and training settings default to the space's ``search:`` section (``epochs`` to 20). ``sampling``:
    ``uniform`` (single-path one-shot) or ``fair`` (each option of a decision once per round of steps, after
    FairNAS). ``kernel_sharing``: ``slice`` (smaller kernels are the centre of the largest) or ``separate``.
    ``workers`` > 0 trains data-parallel on Ray Train (the local Ray, or the cluster at ``address``); a lost
    worker or node restarts the worker group from the last epoch's checkpoint up to ``max_failures`` times (default
    3; 0: fail at once). An error of the input (NascoreError) in a worker is never retried.
    """
    from nascore.nas.space import SearchSpace

    say = progress or (lambda line: None)
    space = SearchSpace.load(space_path)
    out = Path(out_dir)
    job = {"space_doc": space.document, "space_source": str(space_path), "out": str(out.resolve()),
           **_settings(space, data, data_root, data_params, train, epochs, device),
           "sampling": sampling, "kernel_sharing": kernel_sharing, "seed": seed, "cover_limit": cover_limit,
           "monitor": monitor, "calibration_batches": calibration_batches, "resume": resume}
    if sampling not in SAMPLING:
        raise SupernetError(f"got {sampling!r}, expected one of {list(SAMPLING)}", where="sampling")
    if kernel_sharing not in KERNEL_SHARING:
        raise SupernetError(f"got {kernel_sharing!r}, expected one of {list(KERNEL_SHARING)}",
                            where="kernel_sharing")
    if max_failures is None:
        max_failures = MAX_FAILURES
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 0:
        raise SupernetError(f"got {max_failures!r}, expected an integer >= 0 (0: no restart of a lost worker group)",
                            where="max_failures")
    if workers <= 0:
        return _train(job, rank=0, world=1, say=say)
    return _train_on_ray(job, workers, cpus_per_worker, gpus_per_worker, address, say, max_failures)


def _train(job: dict[str, Any], rank: int, world: int, say: Callable[[str], None],
           wrap: Callable[[nn.Module], nn.Module] | None = None, device: Any = None,
           report: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The training of one process (rank ``rank`` of ``world``); rank 0 writes the folder."""
    from nascore.nas.space import SearchSpace
    from nascore.training.checkpointed import CheckpointedRun
    from nascore.training.data import load_dataset
    from nascore.training.trainer import TrainConfig, Trainer

    space = SearchSpace(job["space_doc"], job["space_source"])
    out = Path(job["out"])
    config = TrainConfig.from_dict(job["train"], "train")
    drop_path = config.drop_path
    data_record = json.dumps({"data": job["data"], "params": job["data_params"]}, sort_keys=True, default=str)
    how = {k: job[k] for k in ("sampling", "kernel_sharing", "seed", "cover_limit")}
    token = job.get("run_token")   # a distributed run's own: its restarted worker group resumes by it
    run = CheckpointedRun(out, {"space_hash": space_digest(space), "data": data_record,
                                "supernet": json.dumps(how, sort_keys=True)}, "supernet",
                          extra={"format": FORMAT, "space": space.name, **({"run": token} if token else {})})
    splits = load_dataset(job["data"], job["data_root"], **job["data_params"])   # a bad data set: nothing written
    state, config = run.resume(config, job["resume"], run=token)
    if rank == 0 and state is not None and token and state["nascore"].get("run") == token:
        say(f"{out}: worker group restarted; resuming this run after epoch {int(state['epoch'])}")

    torch.manual_seed(config.seed)
    supernet = Supernet(space, kernel_sharing=job["kernel_sharing"], cover_limit=job["cover_limit"],
                        seed=job["seed"])
    supernet.drop_path_rate = drop_path
    single = SinglePath(supernet, job["sampling"], job["seed"], _constraint_filter(job["constraints"]))
    model = wrap(single) if wrap is not None else single
    # the trainer's own drop-path schedule finds no DropPath module here: the supernet applies the rate per path
    trainer = Trainer(model, splits, config, device=device, shard=(rank, world))
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / SPACE_FILE, _yaml(space.document))
        atomic_write_text(out / INFO_FILE, json.dumps({
            "format": FORMAT, "space": space.name, "space_hash": space_digest(space), **how,
            "data": job["data"], "data_root": job["data_root"], "data_params": job["data_params"],
            "train": config.to_dict(), "constraints": job["constraints"], "workers": world,
            "bank_parameters": sum(p.numel() for p in supernet.parameters()), "layout": supernet.layout()},
            indent=1) + "\n")
        if state is None:
            say(f"{out}: training the supernet of {space.name!r} ({len(supernet.layout())} shared tensors, "
                f"{sum(p.numel() for p in supernet.parameters()):,} parameters) on {splits.name!r} for "
                f"{config.epochs} epochs, {job['sampling']} path sampling, {world} worker(s) on {trainer.device}")
    paths = _monitor_paths(single, job["monitor"]) if rank == 0 else []

    def after_epoch(record: dict[str, Any]) -> None:
        supernet.drop_path_rate = drop_path * trainer.epoch / config.epochs   # ScheduledDropPath, for the next
        if paths:
            scores = [score_path(supernet, g, trainer, job["calibration_batches"]) for g in paths]
            record["paths_val_acc"] = sum(scores) / len(scores)
            record["reference_val_acc"] = scores[0]
        if report is not None:
            report(record)

    supernet.drop_path_rate = drop_path * (int(state["epoch"]) if state else 0) / config.epochs
    resumed_from = run.train(trainer, state, say if rank == 0 else (lambda line: None), after_epoch,
                             write=rank == 0)
    summary = {"out": str(out), "epochs_done": trainer.epoch, "resumed_from": resumed_from,
               "history": trainer.history, "device": str(trainer.device), "workers": world}
    if rank == 0:
        from safetensors.torch import save

        state_dict = {k: v.detach().to("cpu").contiguous() for k, v in supernet.state_dict().items()}
        atomic_write_bytes(out / WEIGHTS_FILE, save(state_dict, metadata={"space_hash": space_digest(space)}))
        last = trainer.history[-1] if trainer.history else {}
        summary.update({k: last[k] for k in ("paths_val_acc", "reference_val_acc", "loss") if k in last})
        say(f"{out}: supernet trained ({trainer.epoch} epochs); search it with --evaluator supernet "
            f"--evaluator-option checkpoint={out}")
    return summary


def _yaml(doc: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(dict(doc), sort_keys=False)


# -- Ray Train -------------------------------------------------------------------------------------------------------


def _ray_worker(job: dict[str, Any]) -> None:
    """One Ray Train worker: the same loop, DDP-wrapped, on this rank's share of every batch."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    torch.set_num_threads(max(1, int(job.get("threads") or 1)))

    def wrap(module: nn.Module) -> nn.Module:
        # unused options of a step get no gradient: DDP must not wait for them
        return ray.train.torch.prepare_model(module, parallel_strategy_kwargs={"find_unused_parameters": True})

    def report(record: dict[str, Any]) -> None:
        ray.train.report({k: v for k, v in record.items() if isinstance(v, (int, float))})

    _train(job, ctx.get_world_rank(), ctx.get_world_size(), print if ctx.get_world_rank() == 0 else
           (lambda line: None), wrap=wrap, device=ray.train.torch.get_device(), report=report)


def _nascore_error(exc: BaseException | None) -> NascoreError | None:
    """The NascoreError inside Ray's wrappers of ``exc`` (a worker's, the controller's), or None."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, NascoreError):
            return e
        failures = getattr(e, "worker_failures", None)
        stack.extend([getattr(e, attr, None) for attr in ("cause", "_base_exc", "health_check_failure",
                                                          "controller_failure")])
        stack.extend([e.__cause__, e.__context__, *(failures.values() if isinstance(failures, dict) else ())])
    return None


def _lost_nodes(text: str) -> list[str]:
    """The nodes named in Ray's error text of a lost worker, as "ID (ADDRESS)": those the cluster reports dead when
    it can tell, else every node id the text names."""
    import ray

    ids = list(dict.fromkeys(re.findall(r"\b([0-9a-f]{56})\b", text)))
    try:
        dead = {n["NodeID"]: n.get("NodeManagerAddress", "") for n in ray.nodes() if not n.get("Alive")}
    except Exception:  # noqa: BLE001 - only words for a message: the ids alone do
        dead = {}
    named = [i for i in ids if i in dead] or ids
    return [f"{i[:12]} ({dead[i]})" if dead.get(i) else i[:12] for i in named]


def _epochs_done(out: Path) -> int:
    try:
        lines = (out / "history.jsonl").read_text(encoding="utf-8").splitlines()
        return int(json.loads(lines[-1])["epoch"]) if lines else 0
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _failure_watch(out: str, token: str, max_failures: int) -> Any:
    """A Ray Train callback (run in its controller): a NascoreError in any worker ends the run at once (raised
    here, Ray Train's controller fails without retrying); any other worker failure (a worker or node lost) is
    recorded as a line of ``OUT/restarts.jsonl`` before Ray Train restarts the group."""
    from ray.train import UserCallback

    class FailureWatch(UserCallback):
        def __init__(self) -> None:
            self.failures = 0

        def after_exception(self, run_context: Any, worker_exceptions: dict[int, Exception]) -> None:
            for exc in worker_exceptions.values():
                user = _nascore_error(exc)
                if user is not None:
                    raise user                   # the user's input: no retry would help
            self.failures += 1
            text = "\n".join(str(e) for e in worker_exceptions.values())
            record = {"run": token, "time": time.time(), "failure": self.failures,
                      "restart": self.failures <= max_failures, "after_epoch": _epochs_done(Path(out)),
                      "ranks": sorted(int(r) for r in worker_exceptions), "nodes": _lost_nodes(text),
                      "error": next((line for line in text.splitlines() if line.strip()), "")[:300]}
            with open(Path(out) / RESTARTS, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    return FailureWatch()


def _restart_line(record: Mapping[str, Any], max_failures: int) -> str:
    lost = (f"node {', '.join(record['nodes'])}" if record.get("nodes") else
            f"worker rank {', '.join(map(str, record.get('ranks') or []))} ({record.get('error', '')[:120]})")
    if not record.get("restart"):
        return f"worker group failed after losing {lost}; no restart left (--max-failures {max_failures})"
    return (f"worker group restarted after losing {lost}; resuming from epoch {int(record.get('after_epoch', 0))} "
            f"(restart {record.get('failure')} of at most {max_failures})")


def _read_restarts(out: Path, token: str) -> list[dict[str, Any]]:
    try:
        lines = (out / RESTARTS).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue                              # a line being written
        if isinstance(record, dict) and record.get("run") == token:
            found.append(record)
    return found


def _train_on_ray(job: dict[str, Any], workers: int, cpus: float, gpus: float, address: str | None,
                  say: Callable[[str], None], max_failures: int = MAX_FAILURES) -> dict[str, Any]:
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from nascore.nas.cluster import check_capacity, connect_ray

    if workers < 1 or cpus <= 0 or gpus < 0:
        raise SupernetError(f"got workers={workers}, cpus_per_worker={cpus}, gpus_per_worker={gpus}; expected "
                            "workers >= 1, cpus > 0, gpus >= 0", where="workers")
    from nascore.training.checkpointed import CheckpointedRun

    out = Path(job["out"])
    CheckpointedRun(out, {}, "supernet").claim()   # nascore's folder before Ray writes its own records into it
    token = uuid.uuid4().hex                        # this run's: its checkpoints carry it, a restart resumes by it
    job = {**job, "threads": max(1, math.ceil(cpus)), "run_token": token,
           "train": {**job["train"], "device": "cuda" if gpus > 0 else "cpu"}}
    owns = connect_ray(address, math.ceil(workers * min(cpus, os.cpu_count() or 1)))
    resources = {"CPU": cpus, **({"GPU": gpus} if gpus > 0 else {})}
    try:
        # the worker group starts whole or not at all: what the cluster cannot hold is refused now, not waited on
        check_capacity(workers, cpus, gpus, options=("--cpus-per-worker", "--gpus-per-worker"), unit="worker",
                       all_at_once=True)
        trainer = TorchTrainer(_ray_worker, train_loop_config=job,
                               scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus > 0,
                                                            resources_per_worker=resources),
                               run_config=RunConfig(name="ray", storage_path=str(out.resolve()),
                                                    failure_config=FailureConfig(max_failures=max_failures),
                                                    callbacks=[_failure_watch(str(out.resolve()), token,
                                                                              max_failures)]))
        say(f"{out}: Ray Train, {workers} worker(s) x ({cpus:g} CPU, {gpus:g} GPU), up to {max_failures} "
            "restart(s) of a lost worker group (--max-failures)")
        done = threading.Event()

        def tell_restarts() -> None:   # the controller records a loss; the driver says it while training goes on
            told = 0
            while not done.wait(0.5 if told < max_failures + 1 else 5):
                records = _read_restarts(out, token)
                for record in records[told:]:
                    say(f"{out}: {_restart_line(record, max_failures)}")
                told = max(told, len(records))
            for record in _read_restarts(out, token)[told:]:
                say(f"{out}: {_restart_line(record, max_failures)}")

        teller = threading.Thread(target=tell_restarts, name="nascore-restarts", daemon=True)
        teller.start()
        try:
            result = trainer.fit()
        except Exception as exc:  # noqa: BLE001 - Ray wraps the worker's error; nascore's own is re-raised
            raise _unwrap_ray_error(exc) from None
        finally:
            done.set()
            teller.join(timeout=5)
        if getattr(result, "error", None) is not None:
            raise _unwrap_ray_error(result.error)
    finally:
        if owns:
            ray.shutdown()
    history_path = out / "history.jsonl"
    history = [json.loads(line) for line in history_path.read_text().splitlines()] if history_path.is_file() else []
    last = history[-1] if history else {}
    return {"out": str(out), "epochs_done": int(last.get("epoch", 0)), "history": history, "workers": workers,
            "restarts": sum(1 for r in _read_restarts(out, token) if r.get("restart")),
            **{k: last[k] for k in ("paths_val_acc", "reference_val_acc", "loss") if k in last}}


def _unwrap_ray_error(exc: BaseException) -> BaseException:
    """The NascoreError a worker raised, found in Ray's wrappers; else a RunError naming Ray's failure."""
    user = _nascore_error(exc)
    if user is not None:
        return user
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RunError(f"distributed supernet training failed: {first[:300]}", where="ray train")


__all__ = ["SAMPLING", "SinglePath", "load_supernet", "recalibrated_accuracy", "score_path", "space_digest",
           "train_supernet"]
