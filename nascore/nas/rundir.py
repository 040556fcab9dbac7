"""A run directory holds everything of one search, so it can be watched, resumed, exported and never lost.

    RUN/config.yaml          settings (SearchConfig), written once at creation
    RUN/run.json             the run's identity: the name of its Optuna study, chosen at creation. A run directory
                             copied or renamed keeps it, so it finds its study by it, never by its folder's name
    RUN/space.yaml           the search space, self-contained (base graph inlined)
    RUN/study.db             the Optuna study (SQLite; optuna-dashboard sqlite:///RUN/study.db opens it)
    RUN/trials/N/graph.yaml  each trained trial's architecture; model.safetensors once it completes
    RUN/best/                the best graph and weights (single objective) -- RUN/pareto/ for several objectives
    RUN/summary.json         counts, best, Pareto set: rewritten atomically after every finished trial

The driver holds an exclusive lock on RUN/.lock while it runs, so two searches never write one study.

Reading a run (``runs show``, ``runs plot``) never writes to it: the study is read through a read-only connection
(from a copy, when the folder itself is read-only) into an in-memory snapshot, so a read-only, copied or damaged run
is shown or refused in one line. Any failure of a storage (a bad URL, a truncated study.db, a missing database
driver) is a RunError naming it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nascore.io.atomic import atomic_dir, atomic_write_bytes, atomic_write_text
from nascore.nas.config import SearchConfig
from nascore.errors import RunError, raised
from nascore.nas.space import SearchSpace
from nascore.io.yamlio import dump_yaml, read_bytes, read_yaml

RUN_FILE = "run.json"
RUN_FORMAT = 1


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        self._lock_fd: int | None = None
        self.fresh = False          # made by this process (create): its study must not exist yet

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
            (tmp / RUN_FILE).write_text(_identity(final.name))
            (tmp / "trials").mkdir()
        run = cls(final)
        run.fresh = True
        return run

    @staticmethod
    def check_settings(config: SearchConfig) -> None:
        """What can be refused before a run directory is made: an unknown strategy, a storage URL no storage
        takes (an unknown scheme, a database driver not installed)."""
        from nascore.nas.strategies import get_strategy

        get_strategy(config.strategy)
        if config.storage and not config.storage.startswith("journal:"):
            from sqlalchemy.engine import make_url

            with storage_errors(config.storage):
                make_url(config.storage).get_dialect().import_dbapi()

    def discard_if_unused(self, config: SearchConfig, store: Any = None) -> None:
        """Remove a run directory this process made, and its study, when no trial was ever asked: a search refused
        at its start leaves nothing behind. ``store``: the RunStudy, once opened. Best effort: the error that
        brought us here matters more."""
        import optuna

        if not self.fresh:
            return
        try:
            storage = store.storage if store is not None else self.storage(config) if config.storage else None
            name = self.stored_study_name()
            if storage is not None and name in optuna.get_all_study_names(storage):
                if optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False):
                    return
                optuna.delete_study(study_name=name, storage=storage)
            shutil.rmtree(self.path)
        except Exception:  # noqa: BLE001 - cleaning up after another error; a leftover folder is harmless
            pass

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
        """The Optuna storage object: SQLite by default; ``journal:PATH`` for a journal file; any RDB URL. A URL
        that cannot be opened is a RunError naming it."""
        import optuna

        url = self.storage_url(config)
        with storage_errors(url):
            if url.startswith("journal:"):
                from optuna.storages.journal import JournalFileBackend

                path = url[len("journal:"):] or str(self.path / "study.journal")
                return optuna.storages.JournalStorage(JournalFileBackend(path))
            if not url.startswith("sqlite"):
                return optuna.storages.RDBStorage(url)
            storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
            _sqlite_wal(storage.engine)
            return storage

    # identity ------------------------------------------------------------------------------------------------------

    def stored_study_name(self) -> str | None:
        """The study name run.json records (None: a run of an older nascore, without run.json)."""
        path = self.path / RUN_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(read_bytes(path, RunError, 1 << 20, "run.json").decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("study"), str) or not data["study"]:
            raise RunError(f"{RUN_FILE} is corrupt: expected an object with the run's study name ('study')",
                           where=str(self.path))
        return data["study"]

    def study_name(self, storage: Any, config: SearchConfig) -> str:
        """The name of this run's study in ``storage``: the one run.json records. A run of an older nascore
        (no run.json) takes the storage's only study when the storage is its own study.db, else the study named like
        its folder. Anything else (the recorded study missing, several candidates) is a RunError: a run never
        guesses, and never makes a second study beside its own."""
        import optuna

        with storage_errors(self.storage_url(config)):
            names = sorted(optuna.get_all_study_names(storage))
        shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "") or "none"
        stored = self.stored_study_name()
        if stored is not None:
            if stored in names:
                return stored
            raise RunError(f"its storage holds no study named {stored!r} (the study this run was created with, "
                           f"recorded in {RUN_FILE}; it holds {shown}); expected this run's own study: is "
                           f"--storage / the study.db the run's own?", where=str(self.path))
        own = not config.storage
        if own and len(names) == 1:
            return names[0]
        if not own and self.name in names:
            return self.name
        raise RunError(f"has no {RUN_FILE} (an older nascore's run) and its storage holds {len(names)} studies "
                       f"({shown}): which one is this run's is ambiguous; expected exactly one", where=str(self.path))

    def remember_study(self, name: str) -> None:
        """Record the study's name in run.json (an older run's, once resolved): later moves and copies keep it."""
        if self.stored_study_name() is None:
            atomic_write_text(self.path / RUN_FILE, _identity(name))

    # reading -------------------------------------------------------------------------------------------------------

    def load_study(self, config: SearchConfig | None = None):
        """A snapshot of the run's study, in memory: read through a read-only connection (from a copy when the run
        directory is read-only), never written, whole or a RunError naming what cannot be read."""
        import optuna

        config = config or self.config()
        if not (self.path / "study.db").exists() and not config.storage:
            raise RunError("has no study yet (study.db missing): the search never started", where=str(self.path))
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        url = self.storage_url(config)
        with self._readable(config) as source, storage_errors(url, "cannot be read"):
            name = self.study_name(source, config)
            snapshot = optuna.storages.InMemoryStorage()
            optuna.copy_study(from_study_name=name, from_storage=source, to_storage=snapshot)
            return optuna.load_study(study_name=name, storage=snapshot)

    @contextmanager
    def _readable(self, config: SearchConfig) -> Iterator[Any]:
        """The storage opened for reading only. The run's own study.db: a read-only SQLite connection, or (its
        folder read-only, where SQLite cannot open a WAL database) a read-only connection to a temporary copy."""
        import optuna

        if config.storage:
            yield self.storage(config)
            return
        db = self.path / "study.db"
        with tempfile.TemporaryDirectory(prefix="nascore-read-") as scratch:
            if not os.access(self.path, os.W_OK):
                for suffix in ("", "-wal"):
                    if Path(f"{db}{suffix}").exists():
                        shutil.copyfile(f"{db}{suffix}", Path(scratch) / f"study.db{suffix}")
                db = Path(scratch) / "study.db"
            url = f"sqlite:///file:{db}?mode=ro&uri=true"
            with storage_errors(f"sqlite:///{self.path / 'study.db'}", "cannot be read"):
                storage = optuna.storages.RDBStorage(url)
            try:
                yield storage
            finally:
                storage.engine.dispose()

    # locking -------------------------------------------------------------------------------------------------------

    def lock(self) -> None:
        """Exclusive while a driver runs; the OS drops it when the process dies, even by SIGKILL."""
        try:
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunError(f"cannot be written ({exc.strerror}): a search needs a writable run directory; `nascore "
                           "runs show` reads it as it is", where=str(self.path)) from None
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


def _identity(study: str) -> str:
    return json.dumps({"format": RUN_FORMAT, "study": study,
                       "created": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2) + "\n"


@contextmanager
def storage_errors(url: str, what: str = "cannot be opened") -> Iterator[None]:
    """Whatever a storage raises (a bad URL, a missing database driver, a corrupt or truncated file, a refused
    connection) as one RunError naming the storage; ``what`` is "cannot be opened" (the URL's fault, probably) or
    "cannot be read" (the data's)."""
    from optuna.exceptions import OptunaError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (SQLAlchemyError, sqlite3.Error, OptunaError, OSError, ValueError, ImportError) as exc:
        advice = ("expected an Optuna storage URL: sqlite:///PATH, journal:PATH, postgresql://... or mysql://..."
                  if what == "cannot be opened" else "it is damaged (truncated, or not an Optuna study): restore it "
                                                     "from a copy")
        raise RunError(f"{what}: {raised(None, exc)}; {advice}", where=f"storage {url}") from None


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
