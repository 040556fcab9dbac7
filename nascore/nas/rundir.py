"""A run directory holds everything of one search, so it can be watched, resumed, exported and never lost.

    RUN/config.yaml          settings (SearchConfig), written once at creation
    RUN/space.yaml           the search space, self-contained (base graph inlined)
    RUN/study.db             the Optuna study (SQLite; optuna-dashboard sqlite:///RUN/study.db opens it)
    RUN/trials/N/graph.yaml  each trained trial's architecture; model.safetensors once it completes
    RUN/best/                the best graph and weights (single objective) -- RUN/pareto/ for several objectives
    RUN/summary.json         counts, best, Pareto set: rewritten atomically after every finished trial

The driver holds an exclusive lock on RUN/.lock while it runs, so two searches never write one study.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from nascore.io.atomic import atomic_dir, atomic_write_bytes, atomic_write_text
from nascore.nas.config import SearchConfig
from nascore.errors import RunError
from nascore.nas.space import SearchSpace
from nascore.io.yamlio import dump_yaml, read_yaml


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        self._lock_fd: int | None = None

    # creation and opening ------------------------------------------------------------------------------------------

    @classmethod
    def create(cls, root: str | Path, name: str, space: SearchSpace, config: SearchConfig) -> "RunDir":
        """Make ``root/name-YYYYmmdd-HHMMSS`` atomically: it appears complete or not at all."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        final = root / f"{name}-{stamp}"
        n = 1
        while final.exists():
            n += 1
            final = root / f"{name}-{stamp}-{n}"
        with atomic_dir(final) as tmp:
            (tmp / "config.yaml").write_text(dump_yaml(config.to_dict()))
            (tmp / "space.yaml").write_text(dump_yaml(space.document))
            (tmp / "trials").mkdir()
        return cls(final)

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        run = cls(path)
        if not run.path.is_dir():
            raise RunError("no such run directory", where=str(path))
        if not (run.path / "config.yaml").is_file() or not (run.path / "space.yaml").is_file():
            raise RunError("is not a nascore run directory (no config.yaml / space.yaml)", where=str(path))
        return run

    @property
    def name(self) -> str:
        return self.path.name

    def config(self) -> SearchConfig:
        data = read_yaml(self.path / "config.yaml", RunError)
        if not isinstance(data, dict):
            raise RunError("config.yaml is corrupt: expected a mapping", where=str(self.path))
        return SearchConfig.merge(data, where=str(self.path / "config.yaml"))

    def space(self) -> SearchSpace:
        return SearchSpace(read_yaml(self.path / "space.yaml", RunError), str(self.path / "space.yaml"))

    def storage_url(self, config: SearchConfig) -> str:
        return config.storage or f"sqlite:///{self.path / 'study.db'}"

    def storage(self, config: SearchConfig):
        """The Optuna storage object: SQLite by default; ``journal:PATH`` for a journal file; any RDB URL."""
        import optuna

        url = self.storage_url(config)
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            path = url[len("journal:"):] or str(self.path / "study.journal")
            return optuna.storages.JournalStorage(JournalFileBackend(path))
        if not url.startswith("sqlite"):
            return optuna.storages.RDBStorage(url)
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
        _sqlite_wal(storage.engine)
        return storage

    def load_study(self, config: SearchConfig | None = None):
        import optuna

        config = config or self.config()
        if not (self.path / "study.db").exists() and not config.storage:
            raise RunError("has no study yet (study.db missing): the search never started", where=str(self.path))
        try:
            return optuna.load_study(study_name=self.name, storage=self.storage(config))
        except KeyError:
            raise RunError(f"its storage holds no study named {self.name!r}", where=str(self.path)) from None

    # locking -------------------------------------------------------------------------------------------------------

    def lock(self) -> None:
        """Exclusive while a driver runs; the OS drops it when the process dies, even by SIGKILL."""
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunError("another search is running in this directory", where=str(self.path)) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def remove_leftovers(self) -> None:
        """Hidden temporaries a killed process left (``.name.*.tmp`` files, ``.best.*`` folders); call with the
        lock held, when nobody else can be writing them."""
        for path in list(self.path.glob(".*")) + list(self.path.glob("trials/*/.*.tmp")):
            if path.name == ".lock":
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif ".tmp" in path.name:
                path.unlink(missing_ok=True)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # files ---------------------------------------------------------------------------------------------------------

    def trial_dir(self, number: int) -> Path:
        return self.path / "trials" / f"{number:05d}"

    def write_atomic_bytes(self, path: Path, data: bytes) -> None:
        atomic_write_bytes(path, data)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.path / "summary.json", json.dumps(summary, indent=2, default=str))

    def summary(self) -> dict[str, Any]:
        path = self.path / "summary.json"
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            raise RunError("summary.json is corrupt", where=str(self.path)) from None

    def publish(self, target: str, trials: list[int]) -> None:
        """Copy the chosen trials' graph and weights to ``best/`` or ``pareto/`` (replaced atomically)."""
        with atomic_dir(self.path / target, replace=True) as tmp:
            for number in trials:
                src = self.trial_dir(number)
                dst = tmp if target == "best" else tmp / f"trial_{number:05d}"
                dst.mkdir(exist_ok=True)
                for name in ("graph.yaml", "model.safetensors"):
                    if (src / name).exists():
                        shutil.copy2(src / name, dst / name)


def _sqlite_wal(engine) -> None:
    """Write-ahead logging with NORMAL sync: a commit costs a write, not an fsync, and a killed process (even by
    SIGKILL) loses nothing committed; only an OS crash can lose the last commits. Readers (``runs show``,
    optuna-dashboard) never block the driver."""
    from sqlalchemy import event

    def on_connect(dbapi_connection, record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections made while Optuna set up the schema reconnect with the pragmas
