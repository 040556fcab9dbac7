"""A real two-node Ray cluster on loopback, a node lost mid-trial, and a cluster that cannot give what is asked.

The cluster: ``ray start --head --port P --node-ip-address 127.0.0.1 --num-cpus 1`` and ``ray start --address
127.0.0.1:P --num-cpus 1``, each with its own temp dir, their own free ports, in their own sessions; one CPU per node
and one per trial, so a two-worker search puts one worker on each. Killing the second node kills its raylet and
everything under it (the worker actors) with SIGKILL, as a machine lost from a cluster. The module's fixture kills
every process it started (found by its temp dir and as children of its raylets, never by name: ``ray stop`` would
stop every Ray on the machine). Tests address 127.0.0.1 only.

The rest needs no cluster of its own: ``--address`` to a port where nothing (or something else) listens, trial
resources no node has, and a cluster too busy to start a worker (the session's local Ray, its CPUs held).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from nascore.cli import main
from nascore.errors import ClusterError
from nascore.nas import cluster
from nascore.nas.rundir import RunDir
from tests.conftest import ROOT, SPACES

TRIALS, EPOCHS = 4, 5        # trials long enough to be caught training on the second node
SPACE = """\
name: spread
search: {data: digits, objectives: [val_acc], strategy: random, pruner: none, train: {batch_size: 32, lr: 0.05}}
graph:
  input: [1, 8, 8]
  nodes:
    - {name: stem, block: conv_bn_act, out: {int: [16, 48]}, kernel: {choice: [1, 3]}}
    - {name: body, block: depthwise_separable, out: {int: [16, 64]}, stride: {choice: [1, 2]}}
    - {name: gap, block: global_avg_pool}
    - {name: fc, block: linear, out: 10}
"""


# -- processes of the loopback cluster --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process visible here."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        found[int(entry)] = (ppid, cmd)
    return found


def _tree(marker: str) -> set[int]:
    """The processes whose command line holds ``marker`` (a node's temp dir), and all their descendants (Ray's
    workers rename themselves ``ray::...``, but stay children of their raylet)."""
    procs = _processes()
    found = {pid for pid, (_, cmd) in procs.items() if marker in cmd}
    while True:
        more = {pid for pid, (ppid, _) in procs.items() if ppid in found} - found
        if not more:
            return found
        found |= more


def _kill(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _ray_start(args: list[str], temp_dir: Path, env: dict[str, str]) -> None:
    ports = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port",
             "--runtime-env-agent-port"]
    cmd = [sys.executable, "-c", "from ray.scripts.scripts import main; main()", "start", *args,
           "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "0", "--temp-dir", str(temp_dir),
           "--object-store-memory", str(100 * 1024 * 1024), "--disable-usage-stats",
           *[x for port in ports for x in (port, str(_free_port()))]]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          start_new_session=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _node_id(temp_dir: Path) -> str:
    for _, cmd in _processes().values():
        if str(temp_dir) in cmd and "raylet/raylet " in cmd:
            return next(a.split("=", 1)[1] for a in cmd.split() if a.startswith("--node_id="))
    raise AssertionError(f"no raylet under {temp_dir}")


@pytest.fixture(scope="module")
def loopback_cluster():
    """A head and a second node on this machine, one CPU each; the port, both node ids and both temp dirs."""
    root = Path(tempfile.mkdtemp(prefix="ncray-", dir="/tmp"))       # short: Ray's socket paths must fit
    head, other = root / "h", root / "w"
    port = _free_port()
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get(
               "PYTHONPATH", "")]), RAY_health_check_period_ms="1000", RAY_health_check_timeout_ms="1000",
               RAY_health_check_failure_threshold="3")                 # a lost node is noticed in seconds
    try:
        _ray_start(["--head", "--port", str(port), "--include-dashboard", "false", "--dashboard-port",
                    str(_free_port()), "--ray-client-server-port", str(_free_port())], head, env)
        _ray_start(["--address", f"127.0.0.1:{port}"], other, env)
        yield {"port": port, "head": head, "other": other, "head_id": _node_id(head), "other_id": _node_id(other),
               "root": root, "env": env}
    finally:
        for _ in range(3):
            _kill(_tree(str(root)))
            time.sleep(0.5)
        leftover = _tree(str(root))
        shutil.rmtree(root, ignore_errors=True)
        assert not leftover, f"processes of the test cluster left: {leftover}"


def _search(args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               RAY_AUTH_MODE="disabled")
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "nascore.cli", "search", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)


@contextmanager
def _reaped(proc: subprocess.Popen):
    """``proc`` (a driver in its own session), killed with its group if it is still running at the end."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _succeeded(proc: subprocess.Popen, log: Path, timeout: float) -> str:
    """The output of the driver ``proc``, once it has ended with 0 and without a traceback."""
    assert proc.wait(timeout=timeout) == 0, log.read_text()[-4000:]
    output = log.read_text()
    assert "Traceback" not in output, output[-4000:]
    return output


def _trials(run: Path) -> list:
    try:
        return RunDir.open(run).load_study().get_trials(deepcopy=False)
    except Exception:  # noqa: BLE001 - not made yet, or mid-write
        return []


# -- the node-loss test -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_search_spreads_over_two_nodes_and_goes_on_when_one_is_lost(loopback_cluster, tmp_path):
    space = tmp_path / "spread.yaml"
    space.write_text(SPACE)
    runs, log = tmp_path / "runs", tmp_path / "driver.log"
    other = loopback_cluster["other_id"]
    started = time.time()
    with _reaped(_search([str(space), "--runs", str(runs), "--address", f"127.0.0.1:{loopback_cluster['port']}",
                          "--workers", "2", "--trials", str(TRIALS), "--epochs", str(EPOCHS), "--seed", "3",
                          "--no-tensorboard"], log)) as proc:
        # wait until a trial completed (so there is something not to lose) and one trains on the second node
        run, victim, before = None, None, {}
        deadline = time.time() + 150
        while time.time() < deadline and proc.poll() is None and victim is None:
            dirs = [p for p in runs.iterdir() if not p.name.startswith(".")] if runs.is_dir() else []
            run = dirs[0] if dirs else None
            trials = _trials(run) if run else []
            done = {t.number: t.values for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
            on_other = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and
                        (t.user_attrs.get("node") or {}).get("node_id") == other]
            if done and on_other:
                victim, before = on_other[0], done
            else:
                time.sleep(0.2)
        assert victim is not None, f"no trial ran on the second node:\n{log.read_text()[-3000:]}"
        _kill(_tree(str(loopback_cluster["other"])))          # the second node is lost, mid-trial
        killed_at = time.time() - started
        output = _succeeded(proc, log, 240)

    trials = _trials(run)
    by_number = {t.number: t for t in trials}
    report = f"killed at {killed_at:.0f} s\n" + "\n".join(
        f"#{t.number} {t.state.name} {t.user_attrs.get('kind')} node={(t.user_attrs.get('node') or {}).get('node_id', '')[:8]} "
        f"retry_of={t.user_attrs.get('retry_of')} {t.user_attrs.get('reason') or ''}" for t in trials)
    # trials landed on both nodes, and each trained trial records where
    trained = [t for t in trials if t.user_attrs.get("kind") in ("trained", "failed")]
    nodes = {t.user_attrs["node"]["node_id"] for t in trained}
    assert nodes == {loopback_cluster["head_id"], other}, report
    assert all(t.user_attrs["node"]["node_ip"] and t.user_attrs["node"]["pid"] for t in trained), report
    # the lost trial: failed with the reason, and run again with its parameters on the node that is left
    lost = by_number[victim.number]
    assert lost.state == optuna.trial.TrialState.FAIL and lost.user_attrs["kind"] == "failed", report
    assert "worker" in lost.user_attrs["reason"], report
    retries = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and retries[0].params == victim.params, report
    assert retries[0].state == optuna.trial.TrialState.COMPLETE, report
    assert retries[0].user_attrs["node"]["node_id"] == loopback_cluster["head_id"], report
    # nothing completed was lost; the budget exactly; nothing left running; the run finished
    for number, values in before.items():
        assert by_number[number].state == optuna.trial.TrialState.COMPLETE and by_number[number].values == values
    assert len([t for t in trained if not t.user_attrs.get("requeued")]) == TRIALS, report   # the lost one: re-run
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING], report
    summary = json.loads((run / "summary.json").read_text())
    assert summary["state"] == "finished" and summary["counts"]["complete"] >= TRIALS - 1, summary
    shown = CliRunner().invoke(main, ["runs", "show", str(run)])
    assert shown.exit_code == 0 and f"retry of #{victim.number}" in shown.output, shown.output
    assert json.loads(CliRunner().invoke(main, ["runs", "show", str(run), "--json"]).output)["trials"][0]["node"]
    print(f"{report}\nwall {time.time() - started:.0f} s\n{output[-2500:]}")


# -- an address where no Ray head answers -----------------------------------------------------------------------------


def _listening(reply: bytes | None):
    """A socket listening on 127.0.0.1: it answers ``reply`` to whoever connects (None: it never answers)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(64)
                conn.sendall(reply)

    if reply is not None:
        threading.Thread(target=serve, daemon=True).start()
    return server


def test_an_address_where_nothing_listens_fails_in_seconds_and_leaves_nothing(tmp_path):
    port = _free_port()                          # bound and released: nothing listens there now
    started = time.monotonic()
    with pytest.raises(ClusterError, match=rf"--address: got '127.0.0.1:{port}': cannot connect"):
        cluster.probe_address(f"127.0.0.1:{port}")
    assert time.monotonic() - started < 5
    runs = tmp_path / "runs"
    result = CliRunner().invoke(main, ["search", str(SPACES / "mbconv.yaml"), "--runs", str(runs),
                                       "--address", f"127.0.0.1:{port}"])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert result.output.startswith(f"error: --address: got '127.0.0.1:{port}': cannot connect"), result.output
    assert "ray start --head" in result.output and not runs.exists()


def test_auto_is_resolved_as_ray_resolves_it_and_probed(monkeypatch):
    port = _free_port()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")           # what `auto` means to Ray, first of all
    with pytest.raises(ClusterError, match=rf"^--address: got 'auto', which is .*:{port} here: cannot connect"):
        cluster.probe_address("auto")


def test_an_address_where_something_else_listens_fails_in_seconds():
    web = _listening(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    silent = _listening(None)
    try:
        with pytest.raises(ClusterError, match="something listens there but it is not a Ray head"):
            cluster.probe_address(f"127.0.0.1:{web.getsockname()[1]}")
        started = time.monotonic()
        with pytest.raises(ClusterError, match=r"no answer within 0.5 s"):
            cluster.probe_address(f"127.0.0.1:{silent.getsockname()[1]}", seconds=0.5)
        assert time.monotonic() - started < 3
    finally:
        web.close()
        silent.close()


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:http", ":6379", "127.0.0.1:0", "127.0.0.1:99999"])
def test_an_address_that_is_not_host_and_port_is_named(address):
    with pytest.raises(ClusterError, match=r"^--address: got .*expected HOST:PORT"):
        cluster.probe_address(address)


# -- trial resources no node has ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -5, "soon"])
def test_a_resource_timeout_that_is_not_a_positive_number_is_named(value):
    from nascore.errors import ParamError
    from nascore.nas.config import SearchConfig

    with pytest.raises(ParamError, match=r"parameter 'resource_timeout': got .*expected"):
        SearchConfig.merge({"resource_timeout": value})
    assert SearchConfig.merge({"resource_timeout": 30}).resource_timeout == 30.0


def _nodes(monkeypatch, *nodes: dict[str, float]) -> None:
    monkeypatch.setattr(cluster, "alive_nodes", lambda: [dict(n) for n in nodes])


@pytest.mark.parametrize("cpus, gpus, option, asked", [
    (1, 1, "--gpus-per-trial", "asked 1 GPU per trial"),
    (1000, 0, "--cpus-per-trial", "asked 1000 CPUs per trial"),
    (2, 0, "--cpus-per-trial", "asked 2 CPUs per trial"),                  # 2 CPUs in all, but 1 per node
])
def test_trial_resources_no_node_has_are_refused_at_once_naming_the_option(monkeypatch, cpus, gpus, option, asked):
    _nodes(monkeypatch, {"CPU": 1.0}, {"CPU": 1.0})
    with pytest.raises(ClusterError) as err:
        cluster.check_capacity(2, cpus, gpus)
    assert str(err.value) == (f"{option}: {asked}; the cluster has 2 CPUs and 0 GPUs on 2 nodes (at most 1 CPU, "
                              f"0 GPUs on one): no node can run one")


def test_a_cluster_that_holds_fewer_workers_says_so_or_refuses_a_gang(monkeypatch):
    _nodes(monkeypatch, {"CPU": 4.0, "GPU": 1.0}, {"CPU": 8.0})
    said: list[str] = []
    assert cluster.check_capacity(4, 1, 0.5, say=said.append) == 2          # fractions: two trials share the GPU
    assert said == ["the cluster holds 2 of the 4 workers asked at once (1 CPU, 0.5 GPUs each; it has 12 CPUs and "
                    "1 GPU on 2 nodes (at most 8 CPUs, 1 GPU on one)); the others wait for resources"]
    assert cluster.check_capacity(12, 1, 0) == 12
    with pytest.raises(ClusterError, match=r"^--workers: the cluster holds 2 of the 4 .* expected room for all"):
        cluster.check_capacity(4, 1, 0.5, all_at_once=True)
    with pytest.raises(ClusterError, match=r"^--cpus-per-worker with --gpus-per-worker: asked 5 CPUs with 1 GPU "
                                           r"per worker"):
        cluster.check_capacity(1, 5, 1, options=("--cpus-per-worker", "--gpus-per-worker"), unit="worker")


@pytest.mark.slow
@pytest.mark.parametrize("resources, option", [({"gpus_per_trial": 1}, "--gpus-per-trial"),
                                               ({"cpus_per_trial": 1000}, "--cpus-per-trial")])
def test_a_search_asking_what_the_cluster_lacks_fails_before_its_header(local_ray, tmp_path, resources, option):
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(ClusterError, match=rf"^{option}: asked .* the cluster has 2 CPUs and 0 GPUs on 1 node"):
        from nascore.nas.driver import search

        search(SPACES / "mbconv.yaml", runs_root=tmp_path, trials=1, epochs=1, tensorboard=False,
               progress=lines.append, **resources)
    assert not [line for line in lines if line.startswith("search ")], lines     # refused before the header
    assert list(tmp_path.iterdir()) == []                                        # and no run left behind


# -- a cluster too busy to start a worker -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_search_waiting_for_resources_says_why_and_gives_up_after_resource_timeout(local_ray, tmp_path):
    class Holder:
        def ping(self) -> int:
            return os.getpid()

    cpus = local_ray.cluster_resources()["CPU"]
    holder = local_ray.remote(num_cpus=cpus)(Holder).remote()          # every CPU of the cluster, held
    try:
        local_ray.get(holder.ping.remote(), timeout=120)
        lines: list[str] = []
        started = time.monotonic()
        with pytest.raises(ClusterError) as err:
            from nascore.nas.driver import search

            search(SPACES / "mbconv.yaml", runs_root=tmp_path, trials=1, epochs=1, workers=1, tensorboard=False,
                   resource_timeout=3, progress=lines.append)
        waited = time.monotonic() - started
    finally:
        local_ray.kill(holder)
    text = str(err.value)
    assert text.startswith("--resource-timeout: no worker started within 3 s: 1 of 1 workers not started"), text
    assert f"free now: 0 of {cpus:g} CPUs" in text and "each asks 1 CPU, 0 GPUs" in text, text
    notes = [line for line in lines if line.startswith("waiting for the cluster: 1 of 1 workers not started")]
    assert notes and "(--resource-timeout)" in notes[0], lines
    assert waited < 60, waited
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("resources, said", [
    ({"gpus_per_worker": 1}, "--gpus-per-worker: asked 1 GPU per worker; the cluster has 2 CPUs and 0 GPUs"),
    ({"cpus_per_worker": 2}, "--workers: the cluster holds 1 of the 2 workers asked at once (2 CPUs, 0 GPUs each"),
])
def test_distributed_supernet_training_the_cluster_cannot_hold_is_refused_at_once(local_ray, tmp_path, resources,
                                                                                   said):
    from nascore.oneshot.training import train_supernet

    started = time.monotonic()
    with pytest.raises(ClusterError) as err:
        train_supernet(SPACES / "mbconv.yaml", tmp_path / "out", epochs=1, workers=2, progress=None, **resources)
    assert str(err.value).startswith(said), str(err.value)
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


# -- distributed supernet training losing a node ----------------------------------------------------------------------

SUPERNET_EPOCHS = 4
SUPERNET_SPACE = """\
name: tiny
search: {data: digits, train: {batch_size: 64, lr: 0.1, threads: 1}}
graph:
  input: [1, 8, 8]
  nodes:
    - {name: stem, block: conv_bn_act, out: 8}
    - {name: stage, block: mbconv, repeat: {int: [1, 2]}, out: {choice: [8, 16]}, expand: {choice: [1, 3]},
       kernel: {choice: [3, 5]}}
    - {name: gap, block: global_avg_pool}
    - {name: fc, block: linear, out: 10}
"""


def _holding(node_dir: Path, role: str) -> set[int]:
    """The processes of the node at ``node_dir`` whose command line names ``role`` (RayTrainWorker, TrainController)."""
    procs = _processes()
    return {pid for pid in _tree(str(node_dir)) if pid in procs and role in procs[pid][1]}


@pytest.mark.slow
def test_distributed_supernet_training_survives_a_lost_node_and_continues_from_its_last_epoch(loopback_cluster,
                                                                                             tmp_path):
    from nascore.oneshot.training import load_supernet

    cluster_root, env, port = loopback_cluster["root"], loopback_cluster["env"], loopback_cluster["port"]
    # the same layout whether or not the search test ran (it loses the fixture's second node): the head and s1
    # (one CPU each) to start the two workers on, and s2 joining meanwhile, so the group still fits once one is lost
    _kill(_tree(str(loopback_cluster["other"])))
    extra = [cluster_root / "s1", cluster_root / "s2"]
    _ray_start(["--address", f"127.0.0.1:{port}"], extra[0], env)
    spare = threading.Thread(target=_ray_start, args=(["--address", f"127.0.0.1:{port}"], extra[1], env))
    spare.start()
    space, out, log = tmp_path / "tiny.yaml", tmp_path / "supernet", tmp_path / "driver.log"
    space.write_text(SUPERNET_SPACE)
    started = time.time()
    with open(log, "ab") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "nascore.cli", "supernet", "train", str(space), "-o", str(out),
                                 "--epochs", str(SUPERNET_EPOCHS), "--workers", "2", "--cpus-per-worker", "1",
                                 "--address", f"127.0.0.1:{port}", "--max-failures", "2", "--no-resume"],
                                env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    with _reaped(proc):
        victim, deadline, history = None, time.time() + 120, out / "history.jsonl"
        while time.time() < deadline and proc.poll() is None and victim is None:
            if history.is_file() and history.read_text().strip():        # the first epoch is checkpointed
                victim = next((n for n in extra if _holding(n, "RayTrainWorker") and
                               not _holding(n, "TrainController")), None)
            if victim is None:
                time.sleep(0.2)
        assert victim is not None, f"no worker on a node that may be lost:\n{log.read_text()[-3000:]}"
        spare.join(timeout=120)
        kept, lost = history.read_text().splitlines(), _node_id(victim)
        epochs_before = len(kept)
        _kill(_tree(str(victim)))                                         # the node is lost, mid-training
        killed_at = time.time() - started
        output = _succeeded(proc, log, 180)
    assert epochs_before < SUPERNET_EPOCHS, f"the run ended before the loss ({epochs_before} epochs)"
    restarts = [json.loads(line) for line in (out / "restarts.jsonl").read_text().splitlines()]
    assert len(restarts) >= 1 and all(r["restart"] for r in restarts), restarts
    restarted = [line for line in output.splitlines() if "worker group restarted after losing node" in line]
    # the killed node is named (a loaded machine may also miss another node's heartbeats: it is named beside it)
    assert any(lost[:12] in line and "resuming from epoch" in line for line in restarted), output[-3000:]
    # every epoch once, in order: the restart continued from the last checkpoint, nothing trained twice or lost
    lines = (out / "history.jsonl").read_text().splitlines()
    assert lines[:epochs_before] == kept, (kept, lines)            # the epochs before the loss: kept, not retrained
    history = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in history] == list(range(1, SUPERNET_EPOCHS + 1)), history
    assert all(r["after_epoch"] >= epochs_before for r in restarts), restarts
    supernet, info = load_supernet(out)
    assert info["workers"] == 2 and sum(p.numel() for p in supernet.parameters()) > 0
    print(f"killed at {killed_at:.0f} s after {epochs_before} epoch(s); restarts {restarts}; wall "
          f"{time.time() - started:.0f} s\n{output[-2000:]}")


@pytest.mark.slow
def test_an_input_error_in_the_workers_ends_distributed_supernet_training_at_once_unretried(local_ray, tmp_path):
    from nascore.errors import DataError
    from nascore.oneshot.training import train_supernet

    space, out = tmp_path / "tiny.yaml", tmp_path / "out"
    space.write_text(SUPERNET_SPACE)
    lines: list[str] = []
    # the data set is looked for by the workers (it may exist only on the cluster's nodes): here it is missing
    with pytest.raises(DataError, match=r"nowhere: not found; expected the cifar-10-batches-py folder"):
        train_supernet(space, out, data="cifar10", data_root=str(tmp_path / "nowhere"), epochs=2, workers=1,
                       max_failures=3, progress=lines.append)
    assert not (out / "restarts.jsonl").exists(), (out / "restarts.jsonl").read_text()   # one attempt, no restart
    assert not (out / "checkpoint.pt").exists() and not [line for line in lines if "restarted" in line], lines


@pytest.mark.parametrize("value", [-1, 1.5, "3", True])
def test_supernet_max_failures_that_is_not_a_count_is_named(tmp_path, value):
    from nascore.errors import SupernetError
    from nascore.oneshot.training import train_supernet

    space = tmp_path / "tiny.yaml"
    space.write_text(SUPERNET_SPACE)
    with pytest.raises(SupernetError, match=rf"^max_failures: got {value!r}, expected an integer >= 0"):
        train_supernet(space, tmp_path / "out", workers=2, max_failures=value, progress=None)
    assert not (tmp_path / "out").exists()
