"""Zero-cost proxies as trial evaluators: ``nascore search SPACE --evaluator naswot`` ranks untrained candidates.

One evaluator per proxy of :mod:`nascore.zerocost`; each trial's ``val_acc`` is the proxy's score (higher is
better for all of them, the ``params`` and ``macs`` baselines included); a trial is one scoring (one "epoch",
whatever the search's ``epochs``). There is no test accuracy, so a search asking for ``test_acc`` is refused.
Each doc says whether the proxy ranked architectures better than ``params`` on nascore's ranking benchmark
(BENCHMARKS.md, "Zero-cost proxies"; ``benchmarks/results/zerocost_ranking.json``); one that did not is kept,
marked so.
"""

from __future__ import annotations

from nascore import hookimpl
from nascore.nas.evaluators import EvaluatorSpec
from nascore.zerocost.evaluator import OPTIONS, make
from nascore.zerocost.proxies import PROXIES

# Kendall tau against the 3-seed mean stand-alone val accuracy of the 24 mbconv architectures on digits, at the
# evaluators' defaults (benchmarks/bench_zerocost_ranking.py; tests/zerocost check these against its result file).
RANKING_TAU = {"synflow": 0.15, "naswot": 0.47, "grad_norm": 0.18, "snip": 0.33, "fisher": -0.13, "jacov": 0.14,
               "zico": -0.01, "params": 0.37, "macs": 0.51}
OBJECTIVES = ("val_acc", "params", "macs", "latency_ms")   # no test_acc: nothing is trained


def ranking_note(name: str) -> str:
    """What the ranking benchmark says of proxy ``name`` against the ``params`` baseline."""
    tau, base = RANKING_TAU.get(name), RANKING_TAU["params"]
    where = "on nascore's ranking benchmark (24 mbconv architectures on digits)"
    if name == "params":
        return f"Kendall tau {tau:.2f} {where}: the baseline the proxies are judged against."
    if tau is None:
        return f"Against params {where}: not measured."
    if tau > base:
        return f"Kendall tau {tau:.2f} {where}: beats params ({base:.2f})."
    return f"NOT BETTER THAN PARAMS: Kendall tau {tau:.2f} {where}, params {base:.2f}."


@hookimpl
def nascore_evaluators():
    return [EvaluatorSpec(p.name, make(p.name), f"Zero-cost proxy, val_acc = its score. {p.doc} "
                          f"{ranking_note(p.name)}", options=OPTIONS if p.data else (), epochs=1,
                          objectives=OBJECTIVES) for p in PROXIES.values()]
