"""Run a snippet of Python in a child process with a wall-clock limit and an address-space limit.

The address-space limit is headroom on top of what importing nascore (torch, numpy) already maps: a CUDA build of
torch reserves about 3 GiB of address space at import (a CPU build about 0.6 GiB), so an absolute RLIMIT_AS would
measure the torch build rather than what the snippet allocates.

For inputs that could hang the test run or exhaust the machine's memory (a ``/dev/zero`` "document", a graph of a
million nodes, a grid over 10**12 integers) when nascore mishandles them: the child reports what happened as JSON
(``ok`` / ``nascore`` / ``other``), and a child that runs past its limit is killed and reported as ``timeout``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass

from tests.conftest import ROOT

_PRELUDE = """
import json, resource, sys, time, traceback
def _report(kind, exc=None, **extra):
    out = {"kind": kind, **extra}
    if exc is not None:
        out["type"] = type(exc).__name__
        out["message"] = str(exc)[:2000]
        out["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]
    print("\\n@@RESULT@@" + json.dumps(out), flush=True)
from nascore.errors import NascoreError
import numpy
def _limit_memory(extra):
    with open("/proc/self/status") as fh:
        mapped = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (mapped + extra, mapped + extra))
_limit_memory({limit})
_t0 = time.perf_counter()
try:
{body}
except NascoreError as _exc:
    _report("nascore", _exc, seconds=time.perf_counter() - _t0)
except BaseException as _exc:
    _report("other", _exc, seconds=time.perf_counter() - _t0)
else:
    _report("ok", None, seconds=time.perf_counter() - _t0, result=globals().get("RESULT"))
"""


@dataclass
class Outcome:
    kind: str                 # ok | nascore | other | timeout | crashed
    type: str | None = None
    message: str = ""
    traceback: str = ""
    seconds: float = 0.0
    result: object = None
    stderr: str = ""

    def __str__(self) -> str:
        text = f"{self.kind} after {self.seconds:.1f} s"
        if self.type:
            text += f": {self.type}: {self.message[:300]}"
        if self.traceback:
            text += "\n" + self.traceback
        elif self.stderr:
            text += "\n" + self.stderr[-2000:]
        return text


def run_bounded(body: str, timeout: float = 60.0, memory_gb: float = 2.0, env: dict | None = None) -> Outcome:
    """Run ``body`` (statements; may set ``RESULT``) in a child limited to ``timeout`` s and to ``memory_gb`` GiB of
    address space beyond what importing nascore maps."""
    limit = int(memory_gb * (1 << 30))    # beyond what the child maps once nascore is imported
    code = _PRELUDE.replace("{limit}", str(limit)).replace(
        "{body}", textwrap.indent(textwrap.dedent(body).strip() or "pass", "    "))

    child_env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    child_env.update(env or {})
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                              cwd=ROOT, env=child_env)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return Outcome("timeout", seconds=time.perf_counter() - start, stderr=err)
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            data = json.loads(line[len("@@RESULT@@"):])
            return Outcome(data.pop("kind"), stderr=proc.stderr, **{k: v for k, v in data.items()
                                                                    if k in Outcome.__dataclass_fields__})
    return Outcome("crashed", message=f"exit code {proc.returncode}", seconds=time.perf_counter() - start,
                   stderr=proc.stderr + proc.stdout[-2000:])
