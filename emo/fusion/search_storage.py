"""Where an Optuna study lives, so that many workers can share it.

    journal:PATH, PATH.log, PATH.journal   Optuna's journal file (one machine, or a shared file system)
    PATH.db, PATH.sqlite, sqlite:///PATH   a SQLite file (one machine)
    postgresql://..., mysql+pymysql://...  an RDB server (many machines)

Every storage gets a heartbeat: a worker's running trial records a beat every `heartbeat`
seconds, and a trial whose last beat is older than twice that is failed by the next worker
that looks (its budget is then re-used: the trial is queued again once). RDB storages have
this built in; Optuna's journal storage does not (5.x), so `HeartbeatJournalStorage` adds it,
recording beats as a trial system attribute.
"""

from __future__ import annotations

import time
from pathlib import Path

from emo.errors import EmoError

HEARTBEAT_ATTR = "emo:heartbeat"
RETRIES = 1  # a trial lost with its worker is queued again once; lost twice, its budget goes to a new trial


# What a database says when another worker created its tables (or version row) a moment before.
_CREATION_RACES = ("already exists", "UNIQUE constraint", "duplicate key", "Duplicate entry", "database is locked")


def _retry_callback():
    import warnings

    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # marked experimental since Optuna 2.8
        return RetryHeartbeatStaleTrialCallback(max_retry=RETRIES)


def _journal_class():
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import JournalStorage
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.trial import TrialState

    class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
        """A journal storage whose running trials beat; stale ones are failed by `fail_stale_trials`."""

        def __init__(self, backend, heartbeat: int, callback):
            super().__init__(backend)
            self._heartbeat = heartbeat
            self._stale_callback = callback

        def record_heartbeat(self, trial_id: int) -> None:
            try:
                self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
            except UpdateFinishedTrialError:
                pass  # another worker already failed it as stale; the tell will say so

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now, stale = time.time(), []
            for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
                # A retried trial inherits the old beat; its (re)start time counts as a beat too.
                started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
                last = max(float(trial.system_attrs.get(HEARTBEAT_ATTR, 0.0)), started)
                if now - last > 2 * self._heartbeat:
                    stale.append(trial._trial_id)
            return stale

        def get_heartbeat_interval(self) -> int | None:
            return self._heartbeat

        def get_heartbeat_stale_trial_callback(self):
            return self._stale_callback

    return HeartbeatJournalStorage


def _shown(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def describe_storage(spec: str) -> str:
    return _shown(spec) if "://" in spec else spec


def open_storage(spec: str, heartbeat: int = 60):
    """An Optuna storage for `spec` (see the module doc); EmoError when it cannot be opened."""
    import warnings

    if heartbeat < 1:
        raise EmoError(f"--heartbeat must be >= 1 second, got {heartbeat}")
    kind, target = _classify(spec)
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        path = Path(target)
        if not path.parent.is_dir():
            raise EmoError(f"--storage {spec}: folder {path.parent} does not exist")
        try:
            backend = JournalFileBackend(str(path))
            return _journal_class()(backend, heartbeat, _retry_callback())
        except (OSError, ValueError) as exc:
            raise EmoError(f"--storage {spec}: cannot open the journal file ({str(exc).splitlines()[0]})") from None

    from optuna.storages import RDBStorage

    url = target
    engine_kwargs = {}
    if url.startswith("sqlite"):
        # Several local workers write one file: wait for the lock instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 60}}
        db = url.split("///", 1)[1] if "///" in url else ""
        if db and db != ":memory:" and not Path(db).parent.is_dir():
            raise EmoError(f"--storage {_shown(url)}: folder {Path(db).parent} does not exist")
    try:
        for attempt in range(5):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # heartbeat_interval is marked experimental
                    return RDBStorage(
                        url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                        heartbeat_stale_trial_callback=_retry_callback(),
                    )
            except Exception as exc:
                # Workers started together on a new database race to create its tables; the loser
                # finds them made on the next try.
                if not any(m in str(exc) for m in _CREATION_RACES) or attempt == 4:
                    raise
                time.sleep(0.5 * (attempt + 1))
    except Exception as exc:  # sqlalchemy's OperationalError / ArgumentError: unreachable host, bad URL, no such db
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        if isinstance(exc, ImportError) or "DB access module" in reason:
            raise EmoError(
                f"--storage {_shown(url)}: its database driver is not installed "
                "(pip install psycopg2-binary for postgresql://, pymysql for mysql+pymysql://)"
            ) from None
        raise EmoError(f"--storage {_shown(url)}: cannot open the study storage ({reason})") from None


def _classify(spec: str) -> tuple[str, str]:
    spec = spec.strip()
    if not spec:
        raise EmoError("--storage: empty")
    if spec.startswith("journal:"):
        return "journal", str(Path(spec[len("journal:"):]).expanduser().absolute())
    if "://" in spec:
        return "rdb", spec
    path = Path(spec).expanduser().absolute()
    if path.suffix.lower() in (".log", ".journal"):
        return "journal", str(path)
    if path.suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        return "rdb", f"sqlite:///{path}"
    raise EmoError(
        f"--storage {spec}: expected journal:PATH, a .log/.journal or .db/.sqlite file, or a URL such as "
        "postgresql://user@host/db"
    )
