"""The built-in trial evaluator: train with nascore's trainer (the same one ``nascore train`` uses), from scratch or,
with ``weights``, from a pretrained model's matching tensors (transfer learning: a searched head on a pretrained
backbone, ``freeze`` keeping the backbone as it is).

    nascore import torchvision resnet18 --weights resnet18.pth -o pretrained/resnet18
    nascore search my_head_space.yaml --evaluator-option weights=pretrained/resnet18 \
        --evaluator-option freeze=stem,layer1,layer2
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from nascore import hookimpl
from nascore.blocks.spec import Param
from nascore.errors import EvaluatorError, NascoreError
from nascore.nas.evaluators import EvaluatorSpec

_LOCK = threading.Lock()
_READ: dict[tuple[str, float], dict[str, Any]] = {}   # one pretrained state per worker process, reused by its trials


def _pretrained(path: str) -> dict[str, Any]:
    """The tensors of ``path``: a nascore export folder (its weights, checksum-verified) or a .safetensors file."""
    from nascore.exporting.verify import verified_weights

    resolved = Path(path).resolve()
    stamp = (resolved / "model.safetensors" if resolved.is_dir() else resolved)
    key = (str(resolved), stamp.stat().st_mtime if stamp.exists() else 0.0)
    with _LOCK:
        if key not in _READ:
            _READ.clear()
            try:
                _READ[key] = verified_weights(resolved)
            except NascoreError as err:
                raise EvaluatorError(f"{err.message}; expected a nascore export folder (nascore export / nascore "
                                     "import) or a .safetensors file", where="evaluator 'train': option 'weights' "
                                     f"({path})") from None
        return _READ[key]


def matching(state: dict[str, Any], weights: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(names of ``state`` that ``weights`` holds with the same shape, names it holds with another shape): what a
    transfer copies and what it leaves at its initial value, as timm drops a classifier of another class count."""
    same = [k for k, v in state.items() if k in weights and tuple(weights[k].shape) == tuple(v.shape)]
    other = [k for k, v in state.items() if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    return same, other


def _frozen(names: str | None) -> list[str]:
    return [n.strip() for n in (names or "").split(",") if n.strip()]


def _train(candidate):
    import torch.nn as nn

    from nascore.training.trainer import Resize, Trainer

    options = candidate.options
    core = candidate.model.model if isinstance(candidate.model, Resize) else candidate.model
    if options["weights"]:
        weights = _pretrained(options["weights"])
        own = core.state_dict()
        same, _ = matching(own, weights)
        core.load_state_dict({**own, **{k: weights[k] for k in same}})
    for name in _frozen(options["freeze"]):
        for key, module in core.named_modules():
            if key == name or key.startswith(name + "."):
                for parameter in module.parameters(recurse=False):
                    parameter.requires_grad_(False)   # the trainer's optimiser takes only trainable parameters
                if isinstance(module, nn.modules.batchnorm._BatchNorm):   # statistics kept too (frozen batch norm)
                    module.register_forward_pre_hook(_keep_statistics)
    return Trainer(candidate.model, candidate.splits, candidate.config, candidate.device)


def _keep_statistics(module: Any, args: Any) -> None:
    module.train(False)


def _check(options: dict[str, Any], space: Any) -> None:
    """Before the search creates anything: the weights can be read and fit a point of the space (some tensor with
    its name and shape), and every frozen name is a node of the space."""
    nodes = {template.name for template in space.nodes}
    unknown = [n for n in _frozen(options["freeze"]) if n not in nodes]
    if unknown:
        from nascore.errors import suggest

        raise EvaluatorError(f"{unknown[0]!r} is not a node of space {space.name!r}{suggest(unknown[0], nodes)}; "
                             f"expected comma-separated node names out of {sorted(nodes)}",
                             where="evaluator 'train': option 'freeze'")
    if options["weights"]:
        import torch

        from nascore.oneshot.paths import sample_path, uniform_rule

        weights = _pretrained(options["weights"])
        graph, _ = sample_path(space, uniform_rule(0, 0))
        with torch.device("meta"):
            state = graph.build().state_dict()
        same, other = matching(state, weights)
        if not same:
            hint = f" ({len(other)} share a name but not a shape, e.g. {other[0]!r})" if other else ""
            raise EvaluatorError(f"no tensor of {options['weights']} fits a point of space {space.name!r}{hint}; "
                                 "expected weights whose node names and shapes match the space's (a backbone of the "
                                 "same nodes)", where="evaluator 'train': option 'weights'")
    elif options["freeze"]:
        raise EvaluatorError("freezes nodes without pretrained weights; expected the option 'weights' beside it",
                             where="evaluator 'train': option 'freeze'")


OPTIONS = (
    Param("weights", str, None, "pretrained tensors to start from: a nascore export folder or .safetensors file; "
          "every tensor whose name and shape match the candidate's is copied in, the rest start from scratch"),
    Param("freeze", str, None, "comma-separated node names kept as loaded: parameters not trained, batch-norm "
          "statistics not updated (needs weights)"),
)


@hookimpl
def nascore_evaluators():
    return [EvaluatorSpec("train", _train, "Train the candidate: SGD/AdamW, warm-up + cosine, label smoothing, "
                          "scheduled drop-path, AMP and channels-last on CUDA; from scratch, or from pretrained "
                          "weights (option weights, with freeze).", options=OPTIONS, check=_check)]
