"""Read a run directory back: trials, states, metrics, the best graph or the Pareto set (``nascore runs show``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nascore.nas.rundir import RunDir


def describe_run(path: str | Path) -> dict[str, Any]:
    """A JSON-ready report of the run; works while the search is still running (read-only)."""
    run = RunDir.open(path)
    config = run.config()
    summary = run.summary()
    study = run.load_study(config)
    trials = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        row = {"number": t.number, "state": t.state.name, "kind": attrs.get("kind", "-"),
               "values": t.values, "params": attrs.get("params"), "macs": attrs.get("macs"),
               "latency_ms": attrs.get("latency_ms"), "test_acc": attrs.get("test_acc"),
               "epochs": len(attrs.get("history", [])), "reason": attrs.get("reason"),
               "duplicate_of": attrs.get("duplicate_of"), "retry_of": attrs.get("retry_of"),
               "proxy": attrs.get("proxy"), "proxy_name": attrs.get("proxy_name"), "node": attrs.get("node"),
               "arch": t.params}
        trials.append(row)
    key = "best" if len(config.objectives) == 1 else "pareto"
    return {"run": str(run.path), "state": summary.get("state", "unknown"), "objectives": config.objectives,
            "directions": config.directions, "storage": run.storage_url(config), "evaluator": config.evaluator,
            "val_acc_is": summary.get("val_acc_is"), "warm_start": summary.get("warm_start"),
            "counts": summary.get("counts", {}), key: summary.get(key, []), "trials": trials}


def format_run(report: dict[str, Any]) -> str:
    lines = [f"run {report['run']} ({report['state']})",
             f"objectives: {', '.join(f'{o} ({d})' for o, d in zip(report['objectives'], report['directions']))}",
             f"storage: {report['storage']}"]
    if report.get("val_acc_is"):
        lines.append(f"evaluator: {report['evaluator']}; val_acc is {report['val_acc_is']}")
    warm = report.get("warm_start")
    if warm:
        lines.append(f"warm start: {warm.get('scored')} candidates scored with {warm.get('proxy')}, trained the "
                     f"best {len(warm.get('top', []))} (trials {', '.join(map(str, warm.get('top', [])))})")
    names = sorted({t["proxy_name"] for t in report["trials"] if t.get("proxy_name")})
    proxy = f" {'/'.join(names)[:10]:>10}" if names else ""     # the proxy score column, when a proxy scored
    header = f"{'#':>4}  {'state':<9} {'kind':<11} {'values':<24} {'params':>10} {'MMACs':>9}{proxy} {'ep':>3}  note"
    lines += ["", header]
    for t in report["trials"]:
        values = ", ".join(f"{v:.4g}" for v in t["values"]) if t["values"] else "-"
        params = f"{t['params']:,}" if t["params"] is not None else "-"
        macs = f"{t['macs'] / 1e6:.2f}" if t["macs"] is not None else "-"
        note = t["reason"] or (f"same as #{t['duplicate_of']}" if t["duplicate_of"] is not None else "")
        if t["retry_of"] is not None:
            note = f"retry of #{t['retry_of']} " + note
        score = ""
        if names:
            score = f" {t['proxy']:>10.4g}" if isinstance(t.get("proxy"), (int, float)) else f" {'-':>10}"
        lines.append(f"{t['number']:>4}  {t['state']:<9} {t['kind']:<11} {values:<24} {params:>10} {macs:>9}"
                     f"{score} {t['epochs']:>3}  {note}")
    counts = report["counts"]
    if counts:
        lines += ["", "counts: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v)]
    if report.get("best"):
        b = report["best"][0]
        lines.append(f"best: trial {b['trial']} {report['objectives'][0]}={b['values'][0]:.4f}  graph: {b['graph']}")
    if report.get("pareto"):
        lines.append(f"Pareto set ({len(report['pareto'])} trials):")
        for p in report["pareto"]:
            lines.append(f"  trial {p['trial']}: " + ", ".join(f"{o}={v:.4g}" for o, v in
                                                                zip(report["objectives"], p["values"])))
    return "\n".join(lines)
