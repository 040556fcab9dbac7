"""Check an export folder against its manifest, and load the model it holds.

:func:`load_model` checks the checksums before it reads anything, and reads weights with safetensors only (no
pickle). :func:`read_weights` and :func:`load_state` are the one way nascore reads exported or trained weights.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nascore.errors import ChecksumError, ExportError, NascoreError
from nascore.exporting.spec import (
    GRAPH_FILE,
    MANIFEST,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    PLAIN_NAME,
    WEIGHTS_FILE,
    sha256_file,
)
from nascore.graph.core import Graph
from nascore.io.yamlio import read_bytes

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class _Problem:
    kind: str        # "manifest" | "missing" | "checksum" | "extra" | "graph"
    file: str | None
    message: str

    def __str__(self) -> str:
        return self.message


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The export's manifest (structure checked; files not)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ExportError("no such export folder", where=str(folder))
    if not path.exists():
        raise ExportError("file not found: not a nascore export (or an unfinished one)", where=str(path))
    raw = read_bytes(path, ExportError, 16 << 20, "manifest")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ExportError(f"is corrupt: not valid JSON ({exc})", where=str(path)) from None
    if not isinstance(data, dict):
        raise ExportError(f"is corrupt: expected a JSON object, got {type(data).__name__}", where=str(path))
    if data.get("format") != MANIFEST_FORMAT:
        raise ExportError(f"is not a nascore export manifest (format {data.get('format')!r}, expected "
                          f"{MANIFEST_FORMAT!r})", where=str(path))
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ExportError(f"is corrupt: format_version {version!r}, expected an int >= 1", where=str(path))
    if version > MANIFEST_VERSION:
        raise ExportError(f"has format_version {version}; this nascore reads up to {MANIFEST_VERSION}: upgrade "
                          f"nascore", where=str(path))
    files = data.get("files")
    if not isinstance(files, dict):
        raise ExportError("is corrupt: 'files' is missing or not an object", where=str(path))
    for name, entry in files.items():
        if (not isinstance(name, str) or name.startswith("/") or ".." in Path(name).parts
                or not all(PLAIN_NAME.match(part) for part in Path(name).parts) or name == MANIFEST):
            raise ExportError(f"is corrupt: file name {name!r} is not a plain name inside the folder", where=str(path))
        if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or not _HEX64.match(entry["sha256"]) or not isinstance(entry.get("bytes"), int)):
            raise ExportError(f"is corrupt: entry of {name!r} needs a sha256 (64 hex digits) and bytes (an int)",
                              where=str(path))
    for required in (GRAPH_FILE, WEIGHTS_FILE):
        if required not in files:
            raise ExportError(f"is corrupt: it lists no {required}", where=str(path))
    graph = data.get("graph")
    if not isinstance(graph, dict) or not isinstance(graph.get("hash"), str):
        raise ExportError("is corrupt: 'graph' needs a 'hash'", where=str(path))
    return data


def _check_files(folder: Path, manifest: Mapping[str, Any], hashed: Iterable[str] | None) -> list[_Problem]:
    """Every listed file exists with its recorded size; those in ``hashed`` (None: all) match their sha256."""
    problems = []
    hashed = None if hashed is None else set(hashed)
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            problems.append(_Problem("missing", name, f"{path}: listed in {MANIFEST} but missing"))
            continue
        size = path.stat().st_size
        if size != entry["bytes"]:
            problems.append(_Problem("checksum", name, f"{path}: {size} bytes, {MANIFEST} records {entry['bytes']} "
                                                       f"(truncated or modified)"))
            continue
        if hashed is None or name in hashed:
            digest = sha256_file(path)
            if digest != entry["sha256"]:
                problems.append(_Problem("checksum", name, f"{path}: sha256 {digest[:16]}... does not match "
                                                           f"{entry['sha256'][:16]}... recorded in {MANIFEST} "
                                                           f"(modified or corrupt)"))
    return problems


def unlisted_entries(folder: str | Path, manifest: Mapping[str, Any] | None) -> list[str]:
    """What ``folder`` holds beyond its manifest and the files the manifest lists, as sorted relative names: a file
    not listed, a link (even to a listed name), anything that is not a plain file or folder, a folder holding no
    listed file. ``manifest`` None (none readable): everything but the manifest file itself."""
    folder = Path(folder)
    listed = set(manifest["files"]) if manifest is not None else set()
    parents = {p.as_posix() for name in listed for p in Path(name).parents if p != Path(".")}
    extra = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        here = Path(root)
        for name in dirs + files:
            path = here / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                extra.append(rel)
            elif path.is_dir():
                if rel not in parents:
                    extra.append(rel)
            elif not path.is_file() or (rel not in listed and rel != MANIFEST):
                extra.append(rel)
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
    return sorted(extra)


def check_written_by_nascore(folder: str | Path, where: str | Path) -> None:
    """Refuse (ExportError at ``where``, naming the first foreign entry) unless ``folder`` is empty or provably an
    export nascore wrote: a valid manifest, exactly the files it lists besides it, each with its recorded sha256.
    An edited, added, missing or linked file makes the folder someone else's work, never to be deleted."""
    folder = Path(folder)
    if not any(folder.iterdir()):
        return
    try:
        manifest = read_manifest(folder)
    except ExportError as err:
        entries = unlisted_entries(folder, None) or [MANIFEST]
        raise ExportError(f"holds {entries[0]!r} and no valid {MANIFEST} ({err.message}): not a nascore export; "
                          "not replacing it", where=str(where)) from None
    extra = unlisted_entries(folder, manifest)
    if extra:
        raise ExportError(f"holds {extra[0]!r}, which its {MANIFEST} does not list: nascore did not write it; not "
                          "replacing the folder (move that away first)", where=str(where))
    problems = _check_files(folder, manifest, hashed=None)
    if problems:
        first = problems[0]
        raise ExportError(f"holds {first.file!r}, which differs from what its {MANIFEST} records ({first.kind}): "
                          "not as nascore wrote it; not replacing the folder", where=str(where))


def _check_graph(folder: Path, manifest: Mapping[str, Any]) -> tuple[Graph | None, list[_Problem]]:
    path = folder / GRAPH_FILE
    try:
        graph = Graph.load(path)
        digest = graph.structural_hash()
    except NascoreError as err:
        return None, [_Problem("graph", GRAPH_FILE, f"{path}: cannot be loaded: {err}")]
    if digest != manifest["graph"]["hash"]:
        return graph, [_Problem("graph", GRAPH_FILE, f"{path}: structural hash {digest} differs from "
                                                     f"{manifest['graph']['hash']} recorded in {MANIFEST}")]
    return graph, []


PROVES = ("every file manifest.json lists is present with its recorded size and sha256, nothing else is in the "
          "folder, and graph.yaml loads with the recorded structural hash. Not covered: manifest.json itself (its "
          "metrics, versions and origin are not checksummed, so an edit there goes unseen), and who made the "
          "export (checksums show integrity, not authorship)")


def verify_export(folder: str | Path) -> list[str]:
    """Every problem of an export folder, as sentences naming the file (empty: it is intact, meaning exactly
    :data:`PROVES`).

    Checks the manifest's structure, that every listed file exists with its recorded size and sha256, that nothing
    else is in the folder, and that ``graph.yaml`` loads (its blocks' plugins installed) and has the recorded
    structural hash.
    """
    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
    except ExportError as err:
        return [str(err)]
    problems = _check_files(folder, manifest, hashed=None)
    problems += [_Problem("extra", name, f"{folder / name}: not listed in {MANIFEST} (an extra file, covered by no "
                                         "checksum)") for name in unlisted_entries(folder, manifest)]
    if not any(p.file == GRAPH_FILE for p in problems):
        problems += _check_graph(folder, manifest)[1]
    return [str(p) for p in problems]


def load_model(folder: str | Path, verify: bool = True) -> nn.Module:
    """The exported model, rebuilt from ``graph.yaml`` with the weights of ``model.safetensors``, in eval mode.

    With ``verify`` (the default), the size and sha256 of the two files it reads, graph.yaml and model.safetensors,
    are checked before anything is parsed: a mismatch is a :class:`ChecksumError` naming the file. The other
    formats' files (model.onnx, ...) are not needed, so one missing does not stop it (``nascore verify`` reports it).
    Weights are read with safetensors (never pickle) and loaded strictly (an ExportError names mismatched keys).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if verify:
        needed = {name: manifest["files"][name] for name in (GRAPH_FILE, WEIGHTS_FILE)}
        _raise_first(_check_files(folder, {**manifest, "files": needed}, hashed=None))
        graph, problems = _check_graph(folder, manifest)
        if problems:
            raise ExportError(problems[0].message)
    else:
        graph = Graph.load(folder / GRAPH_FILE)
    weights = read_weights(folder / WEIGHTS_FILE)
    model = graph.build()
    load_state(model, weights, where=str(folder / WEIGHTS_FILE))
    return model.eval()


def verified_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights of an export folder (model.safetensors, its size and sha256 checked against the manifest) or of a
    .safetensors file; ExportError / ChecksumError naming the file otherwise."""
    folder = Path(path)
    if not folder.is_dir():
        return read_weights(folder)
    manifest = read_manifest(folder)
    if WEIGHTS_FILE not in manifest["files"]:
        raise ExportError(f"its manifest lists no {WEIGHTS_FILE}", where=str(folder))
    _raise_first(_check_files(folder, {**manifest, "files": {WEIGHTS_FILE: manifest["files"][WEIGHTS_FILE]}},
                              hashed=None))
    return read_weights(folder / WEIGHTS_FILE)


def _raise_first(problems: list[_Problem]) -> None:
    """The first problem of a file check as its error (ChecksumError for a checksum), counting the others."""
    if problems:
        first = problems[0]
        error = ChecksumError if first.kind == "checksum" else ExportError
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise error(f"{first.message}{more}")


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors on the CPU (no pickle); ExportError naming the file otherwise."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except FileNotFoundError:
        raise ExportError("file not found", where=str(path)) from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ExportError(f"is not a readable safetensors file: {exc}", where=str(path)) from None


def load_state(model: nn.Module, weights: Mapping[str, torch.Tensor], where: str) -> None:
    """Strict state-dict load; ExportError naming missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [f"{k} {list(weights[k].shape)} (expected {list(own[k].shape)})" for k in own
              if k in weights and tuple(weights[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if keys:
                shown = ", ".join(keys[:6]) + (f", ... ({len(keys)} in all)" if len(keys) > 6 else "")
                parts.append(f"{label}: {shown}")
        raise ExportError(f"do not fit the graph: {'; '.join(parts)}", where=where)
    try:
        model.load_state_dict(dict(weights), strict=True)
    except RuntimeError as exc:
        raise ExportError(f"do not fit the graph: {str(exc).splitlines()[0]}", where=where) from None


__all__ = ["PROVES", "check_written_by_nascore", "load_model", "load_state", "read_manifest", "read_weights",
           "unlisted_entries", "verify_export"]
