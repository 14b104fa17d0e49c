"""emo's writer lock: a second writer is refused whatever HDF5's own locking says; stale locks are taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from emo.cache import CacheReader, CacheWriter
from emo.cache.lock import _start_time, check_unlocked, lock_path
from emo.errors import CacheError
from test_cache import make_clips, ragged

HOLDER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from test_cache import make_clips, ragged
    from emo.cache import CacheWriter
    from emo.errors import CacheError
    clips = make_clips(10)
    try:
        writer = CacheWriter({path!r}, dataset="d", clips=clips)
    except CacheError as err:
        print("refused:", err, flush=True)
        sys.exit(3)
    writer.open_modality("audio", {{"b": 1}}, (3, 8), "float16")
    pending = set(writer.pending("audio"))
    writer.write("audio", {{c: v for c, v in ragged(clips).items() if c in pending}})
    print("open", flush=True)
    time.sleep({hold})
    writer.close()
    print("closed", flush=True)
    """
)


def writer_process(path: Path, hold: float) -> subprocess.Popen:
    script = HOLDER.format(tests=str(Path(__file__).parent), path=str(path), hold=hold)
    env = dict(os.environ, HDF5_USE_FILE_LOCKING="FALSE")  # as the README advises on shared file systems
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)


def test_a_second_writer_is_refused_without_hdf5_locking_and_a_dead_writers_lock_is_taken_over(tmp_path):
    path = tmp_path / "c.h5"
    first = writer_process(path, hold=60)
    try:
        assert first.stdout.readline().strip() == "open"
        assert json.loads(lock_path(path).read_text())["pid"] == first.pid
        second = writer_process(path, hold=0)
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 3, out
        assert f"being written by another emo process (pid {first.pid} on {socket.gethostname()}" in out
    finally:
        os.kill(first.pid, signal.SIGKILL)  # dies holding the lock: it stays behind, stale
        first.wait()
    assert lock_path(path).exists()
    third = writer_process(path, hold=0)
    out, _ = third.communicate(timeout=60)
    assert third.returncode == 0 and "closed" in out, out
    assert not lock_path(path).exists()  # released on close
    assert len(CacheReader(path).load("audio")) == 10


def _fake_lock(path: Path, **holder) -> None:
    lock_path(path).write_text(json.dumps(holder))


def test_a_lock_from_another_host_is_refused_and_a_garbled_or_dead_one_is_not(tmp_path):
    path = tmp_path / "c.h5"
    clips = make_clips(4)
    _fake_lock(path, host="gpu-node-7", pid=4242, since="2026-01-01T00:00:00+00:00")
    with pytest.raises(CacheError, match="being written by pid 4242 on gpu-node-7.*delete the lock file if that process is gone"):
        CacheWriter(path, dataset="d", clips=clips)
    with pytest.raises(CacheError, match="gpu-node-7"):
        check_unlocked(path)
    assert not path.exists()

    lock_path(path).write_text("{half a record")
    old = 1_000_000_000
    os.utime(lock_path(path), (old, old))  # long since written: its writer died mid-write
    with CacheWriter(path, dataset="d", clips=clips) as writer:
        writer.open_modality("audio", {"b": 1}, (3, 8), "float16")
        writer.write("audio", ragged(clips))

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _fake_lock(path, host=socket.gethostname(), pid=dead.pid)
    with CacheWriter(path) as writer:
        assert writer.pending("audio") == []
    assert not lock_path(path).exists()


def test_extract_refuses_a_locked_cache_before_loading_anything(tmp_path):
    from test_extract_hardening import extract, make_dataset

    root, cache = tmp_path / "data", tmp_path / "c.h5"
    make_dataset(root, n=2)
    _fake_lock(cache, host=socket.gethostname(), pid=os.getpid(), start=_start_time(os.getpid()))  # a live holder
    result = extract(root, cache)
    assert result.exit_code == 1, result.output
    assert "being written by another emo process" in result.output and len(result.output.strip().splitlines()) == 1
    assert not cache.exists()
    lock_path(cache).unlink()
    assert extract(root, cache).exit_code == 0


def test_merge_refuses_a_target_another_writer_holds(tmp_path):
    from emo.cache import merge_caches

    shard = tmp_path / "s.h5"
    clips = make_clips(4)
    with CacheWriter(shard, dataset="d", clips=clips) as writer:
        writer.open_modality("audio", {"b": 1}, (3, 8), "float16")
        writer.write("audio", ragged(clips))
    target = tmp_path / "t.h5"
    _fake_lock(target, host=socket.gethostname(), pid=os.getpid(), start=_start_time(os.getpid()))
    with pytest.raises(CacheError, match="being written by another emo process"):
        merge_caches([shard], target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5", "t.h5.lock"]
    lock_path(target).unlink()
    assert merge_caches([shard], target).ok == {"audio": 4}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5", "t.h5"]


def test_an_unreadable_lock_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "c.h5"
    lock_path(path).mkdir()  # not a file at all
    with pytest.raises(CacheError, match="cannot be read; delete it if no emo is writing"):
        CacheWriter(path, dataset="d", clips=make_clips(2))
