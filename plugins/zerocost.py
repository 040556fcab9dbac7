"""Zero-cost proxies as trial evaluators: ``nascore search SPACE --evaluator naswot`` ranks untrained candidates.

One evaluator per proxy of :mod:`nascore.zerocost`; each trial's ``val_acc`` is the proxy's score (higher is
better for all of them, the ``params`` and ``macs`` baselines included); a trial is one scoring (one "epoch",
whatever the search's ``epochs``). Whether a proxy ranks architectures better
than ``params`` on nascore's ranking benchmark is stated in its doc once measured.
"""

from __future__ import annotations

from nascore import hookimpl
from nascore.nas.evaluators import EvaluatorSpec
from nascore.zerocost.evaluator import OPTIONS, make
from nascore.zerocost.proxies import PROXIES

NOT_RANKED = "Against params on nascore's ranking benchmark: not measured yet."


@hookimpl
def nascore_evaluators():
    return [EvaluatorSpec(p.name, make(p.name), f"Zero-cost proxy, val_acc = its score. {p.doc}"
                          + ("" if p.name == "params" else f" {NOT_RANKED}"),
                          options=OPTIONS if p.data else (), epochs=1) for p in PROXIES.values()]
