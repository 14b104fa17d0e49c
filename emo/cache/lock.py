"""emo's own writer lock: `<cache>.lock` beside the cache, naming the holder's host and pid.

HDF5's file locking is often switched off on shared file systems (HDF5_USE_FILE_LOCKING=FALSE),
and then two writers silently corrupt one cache. This lock does not depend on it: the lock
file is created with O_EXCL (atomic on local disks and NFSv3+), holds the writer's host, pid
and process start time, and is removed when the writer closes. A lock left by a writer that
died (same host, pid gone or reused by another process) is stale and taken over; a lock held
from another host cannot be checked from here, so it is refused with what to do.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import time
from pathlib import Path

from emo.errors import CacheError

SUFFIX = ".lock"
UNWRITTEN_GRACE_S = 10.0  # an empty lock younger than this is being written by its holder right now


def lock_path(cache: str | Path) -> Path:
    cache = Path(cache)
    return cache.with_name(cache.name + SUFFIX)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), to tell a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        pass
    except OSError:
        return False
    now = _start_time(pid)
    return not (start and now and now != start)  # the pid was reused by a younger process


def _holder_text(holder: dict) -> str:
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since', '?')}"


class WriterLock:
    """Held from `acquire` to `release`; one per cache file, across processes and hosts."""

    def __init__(self, cache: str | Path):
        self.cache = Path(cache)
        self.path = lock_path(cache)
        self.held = False
        self._mine: dict = {}

    def acquire(self) -> "WriterLock":
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is None or not self._stale(holder):
                    raise self._refusal(holder) from None
                self._break(holder)
                continue
            except OSError as exc:
                raise CacheError(f"{self.cache}: cannot create the writer lock {self.path} ({exc.strerror})") from None
            self._mine = {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "start": _start_time(os.getpid()),
                "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            }
            with os.fdopen(fd, "w") as handle:
                json.dump(self._mine, handle)
                handle.flush()
                os.fsync(handle.fileno())
            self.held = True
            return self
        raise CacheError(f"{self.cache}: could not take the writer lock {self.path} (it keeps changing hands)")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self._read() == self._mine:  # never remove a lock someone else took over
            self.path.unlink(missing_ok=True)

    def _read(self) -> dict | None:
        """The holder record; {} when the file is unreadable or not ours to parse; None when young and empty."""
        try:
            text = self.path.read_text(encoding="utf-8")
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return {"vanished": True}
        except OSError:
            return {}
        try:
            holder = json.loads(text)
        except ValueError:
            return None if age < UNWRITTEN_GRACE_S else {"garbled": text[:80]}
        return holder if isinstance(holder, dict) else {"garbled": text[:80]}

    def _stale(self, holder: dict) -> bool:
        if holder.get("vanished"):
            return True  # released between our create and our read: just try again
        if "garbled" in holder:
            return True  # a holder that died between creating and writing the file
        if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
            return False
        return not _alive(holder["pid"], holder.get("start"))

    def _break(self, holder: dict) -> None:
        if holder.get("vanished"):
            return
        # Rename first (atomic: one breaker wins), then check that what we moved is the stale lock.
        moved = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
        try:
            os.rename(self.path, moved)
        except FileNotFoundError:
            return
        try:
            taken = json.loads(moved.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            taken = {"garbled": True}
        if "garbled" not in holder and taken != holder:
            try:  # a live writer's fresh lock: put it back unless a newer one is already there
                os.link(moved, self.path)
            except OSError:
                pass
        moved.unlink(missing_ok=True)

    def _refusal(self, holder: dict | None) -> CacheError:
        if holder is None:
            return CacheError(f"{self.cache}: another writer is taking the lock {self.path} right now; try again shortly")
        if not holder:
            return CacheError(f"{self.cache}: the writer lock {self.path} cannot be read; delete it if no emo is writing this cache")
        if holder.get("host") != socket.gethostname():
            return CacheError(
                f"{self.cache}: being written by {_holder_text(holder)} (lock {self.path}); "
                "wait for it, or delete the lock file if that process is gone"
            )
        return CacheError(
            f"{self.cache}: being written by another emo process ({_holder_text(holder)}); "
            f"wait for it to finish (lock {self.path})"
        )


def check_unlocked(cache: str | Path) -> None:
    """CacheError when a live writer holds the cache, checked before a long job starts."""
    lock = WriterLock(cache)
    if not lock.path.exists():
        return
    holder = lock._read()
    if holder is None or not lock._stale(holder):
        raise lock._refusal(holder)
