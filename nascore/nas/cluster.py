"""Joining a Ray cluster and asking it what it can hold: fail in seconds, naming the option, instead of hanging.

``ray.init`` retries a dead or foreign address for minutes and a trial that asks for more than any node has waits
forever, both silently; :func:`probe_address` and :func:`check_capacity` turn them into a ClusterError before a run
folder or a worker exists. Used by the search's actor pool and by distributed supernet training.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable

from nascore.errors import ClusterError, first_line

PROBE_SECONDS = 3.0    # how long connect_ray waits for an address to answer


def probe_address(address: str, seconds: float = PROBE_SECONDS) -> None:
    """Fail within ``seconds`` unless ``address`` (``HOST:PORT``, or ``ray://HOST:PORT``) is a listening gRPC
    server, as a Ray head's GCS is: a ClusterError naming ``--address`` otherwise. ``ray.init`` would retry a dead
    or foreign address for minutes, silently. ``auto`` is resolved as Ray resolves it (``RAY_ADDRESS``, the latest
    cluster started on this machine) and that address probed; ``local`` is left to Ray."""
    where = "--address"
    if address == "local":
        return
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address
        except ImportError:     # Ray's internals moved: let ray.init resolve it
            return
        try:
            resolved = canonicalize_bootstrap_address("auto")
        except Exception as exc:  # noqa: BLE001 - Ray's words for "no cluster found"
            raise ClusterError(f"got 'auto': {first_line(exc)}", where=where) from None
        if not resolved:
            return
        try:
            probe_address(resolved, seconds)
        except ClusterError as err:
            raise ClusterError(f"got 'auto', which is {resolved} here: {err.message.split(': ', 1)[-1]}",
                               where=where) from None
        return
    text = address.split("://", 1)[1] if "://" in address else address
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ClusterError(f"got {address!r}, expected HOST:PORT of a Ray head (`ray start --head --port PORT` "
                           "prints it), or auto", where=where)
    try:
        with socket.create_connection((host, int(port_text)), timeout=seconds) as conn:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return                                  # a TLS handshake is Ray's to make
            conn.settimeout(seconds)
            # an HTTP/2 client preface and an empty SETTINGS frame; a gRPC server answers with a SETTINGS frame
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            head = b""
            while len(head) < 9:
                chunk = conn.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except socket.timeout:
        raise ClusterError(f"got {address!r}: no answer within {seconds:g} s; expected a running Ray head there "
                           "(`ray start --head --port PORT`)", where=where) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(f"got {address!r}: cannot connect ({reason}); expected a running Ray head there "
                           "(`ray start --head --port PORT`)", where=where) from None
    if len(head) < 9 or head[3] != 0x04:
        raise ClusterError(f"got {address!r}: something listens there but it is not a Ray head (no gRPC "
                           "answer); expected the head's GCS port (`ray start --head --port PORT`, default 6379)",
                           where=where)


def connect_ray(address: str | None, cpus_needed: int = 1) -> bool:
    """Join the cluster at ``address``, or start a private Ray on this machine (at least ``cpus_needed`` logical
    CPUs), unless Ray runs already in this process. Returns whether this call started it (and should shut it down).
    An address that does not answer as a Ray head is a ClusterError within seconds (:func:`probe_address`).
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")   # a private local cluster; see RAY_OPTUNA_NOTES
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if address:
        probe_address(address)
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(f"got {address!r}: Ray could not join it: {first_line(exc)}",
                               where="--address") from None
    else:
        ray.init(num_cpus=max(os.cpu_count() or 1, cpus_needed), include_dashboard=False, log_to_driver=False,
                 object_store_memory=256 * 1024 * 1024)
    return True


def alive_nodes() -> list[dict[str, float]]:
    import ray

    return [dict(n.get("Resources") or {}) for n in ray.nodes() if n.get("Alive")]


def amount(value: float, unit: str) -> str:
    return f"{value:g} {unit}{'' if value == 1 else 's'}"


def describe_cluster(nodes: list[dict[str, float]]) -> str:
    """``2 CPUs and 0 GPUs on 2 nodes (at most 1 CPU, 0 GPUs on one)``."""
    cpus = sum(n.get("CPU", 0.0) for n in nodes)
    gpus = sum(n.get("GPU", 0.0) for n in nodes)
    text = f"{amount(cpus, 'CPU')} and {amount(gpus, 'GPU')} on {len(nodes)} node{'' if len(nodes) == 1 else 's'}"
    if len(nodes) > 1:
        text += (f" (at most {amount(max(n.get('CPU', 0.0) for n in nodes), 'CPU')}, "
                 f"{amount(max(n.get('GPU', 0.0) for n in nodes), 'GPU')} on one)")
    return text


def _fits(node: dict[str, float], cpus: float, gpus: float) -> int:
    """How many workers of ``cpus`` CPUs and ``gpus`` GPUs fit on a node of these total resources."""
    count = math.floor(node.get("CPU", 0.0) / cpus + 1e-9) if cpus > 0 else 1 << 30
    if gpus > 0:
        count = min(count, math.floor(node.get("GPU", 0.0) / gpus + 1e-9))
    return count


def check_capacity(workers: int, cpus: float, gpus: float, *, options: tuple[str, str] = ("--cpus-per-trial",
                   "--gpus-per-trial"), unit: str = "trial", all_at_once: bool = False,
                   say: Callable[[str], None] | None = None) -> int:
    """How many of ``workers`` workers of (``cpus``, ``gpus``) the cluster Ray is connected to can hold at once,
    from its nodes' total resources (a worker lives on one node). None: a ClusterError naming the option that
    asks too much (``options``: the CPU and GPU option names), what it asks and what the cluster has. Fewer than
    ``workers``: an error when ``all_at_once`` (a gang, as Ray Train's worker group), else a line to ``say``."""
    nodes = alive_nodes()
    held = sum(_fits(n, cpus, gpus) for n in nodes)
    has = describe_cluster(nodes)
    if held == 0:
        if gpus > 0 and not any(n.get("GPU", 0.0) + 1e-9 >= gpus for n in nodes):
            option, asked = options[1], amount(gpus, "GPU")
        elif not any(n.get("CPU", 0.0) + 1e-9 >= cpus for n in nodes):
            option, asked = options[0], amount(cpus, "CPU")
        else:
            option, asked = f"{options[0]} with {options[1]}", f"{amount(cpus, 'CPU')} with {amount(gpus, 'GPU')}"
        raise ClusterError(f"asked {asked} per {unit}; the cluster has {has}: no node can run one",
                           where=option)
    if held < workers:
        line = (f"the cluster holds {held} of the {workers} workers asked at once ({amount(cpus, 'CPU')}, "
                f"{amount(gpus, 'GPU')} each; it has {has})")
        if all_at_once:
            raise ClusterError(f"{line}; expected room for all of them", where="--workers")
        if say is not None:
            say(f"{line}; the others wait for resources")
    return held


__all__ = ["alive_nodes", "check_capacity", "connect_ray", "describe_cluster", "probe_address"]
