"""The HDF5 cache: round trips, atomic resumable writes, and the errors a user meets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from emo.cache import STATUS_OK, CacheReader, CacheWriter
from emo.clip import Clip
from emo.errors import CacheError

LABELS = ["angry", "happy", "neutral"]


def make_clips(n: int) -> list[Clip]:
    return [
        Clip(id=f"clip{i:04d}", label=LABELS[i % 3], speaker=f"spk{i % 4}", text=f"text {i}", duration=1.0 + i,
             audio=f"/data/clip{i:04d}.wav", extras={"level": "HI" if i % 2 else "LO"})
        for i in range(n)
    ]


def ragged(clips, layers=3, dim=8, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {c.id: rng.standard_normal((int(rng.integers(1, 40)), layers, dim)).astype(np.float16) for c in clips}


def test_round_trip_ragged_layers_and_clip_table(tmp_path):
    clips = make_clips(25)
    audio = ragged(clips)
    faces = {c.id: np.random.default_rng(1).integers(0, 255, (5, 16, 16, 3), dtype=np.uint8) for c in clips[:20]}
    path = tmp_path / "c.h5"
    with CacheWriter(path, dataset="synthetic", clips=clips, label_names=LABELS) as writer:
        assert writer.open_modality("audio", {"backbone": "b", "layers": [6, 12, 24]}, (3, 8), "float16") == "new"
        assert writer.open_modality("faces", {"detector": "r"}, (16, 16, 3), "uint8") == "new"
        ids = list(audio)
        writer.write("audio", {c: audio[c] for c in ids[10:]})  # out of clip order on purpose
        writer.write("audio", {c: audio[c] for c in ids[:10]})
        writer.write("faces", faces)
        for c in clips[20:]:
            writer.fail("faces", c.id, "no face detected in 16 sampled frames", status="missing")

    reader = CacheReader(path)
    assert reader.dataset == "synthetic" and reader.modalities == ["audio", "faces"]
    assert reader.clips.ids == [c.id for c in clips]
    assert [reader.clips.label_names[i] for i in reader.clips.labels] == [c.label for c in clips]
    assert reader.clips.speakers[5] == "spk1" and reader.clips.texts[7] == "text 7"
    assert reader.clips.extras["level"][:2] == ["LO", "HI"]
    assert reader.clips.durations[3] == pytest.approx(4.0)
    seqs = reader.load("audio")
    assert seqs.ids == [c.id for c in clips]
    for i, cid in enumerate(seqs.ids):
        np.testing.assert_array_equal(seqs[i], audio[cid])
    sub = reader.load("audio", clips=["clip0007", "clip0002"], layers=[24, 6])
    np.testing.assert_array_equal(sub[0], audio["clip0007"][:, [2, 0]])
    x, lengths, mask = seqs.padded()
    assert x.shape == (25, max(a.shape[0] for a in audio.values()), 3, 8)
    for i, cid in enumerate(seqs.ids):
        np.testing.assert_array_equal(x[i, : lengths[i]], audio[cid])
        assert mask[i].sum() == lengths[i] and not x[i, lengths[i]:].any()
    assert reader.load("faces").data.dtype == np.uint8
    assert reader.failures("faces") == [(c.id, "missing", "no face detected in 16 sampled frames") for c in clips[20:]]
    with pytest.raises(CacheError, match="clip0021.*missing"):
        reader.load("faces", clips=["clip0021"])
    with pytest.raises(CacheError, match=r"no 'text' modality.*present: audio, faces"):
        reader.load("text")
    with pytest.raises(CacheError, match="layers \\[7\\] not cached"):
        reader.load("audio", layers=[7])


def test_fingerprint_keeps_or_rebuilds_one_modality(tmp_path):
    clips = make_clips(6)
    path = tmp_path / "c.h5"
    feats = ragged(clips, layers=1)
    with CacheWriter(path, dataset="d", clips=clips) as writer:
        writer.open_modality("audio", {"backbone": "a", "revision": "1"}, (1, 8), "float16")
        writer.open_modality("text", {"backbone": "t"}, (1, 8), "float16")
        writer.write("audio", feats)
        writer.write("text", feats)
    with CacheWriter(path) as writer:
        assert writer.open_modality("audio", {"revision": "1", "backbone": "a"}, (1, 8), "float16") == "kept"
        assert writer.pending("audio") == []
        assert writer.open_modality("audio", {"backbone": "a", "revision": "2"}, (1, 8), "float16") == "rebuilt"
        assert writer.pending("audio") == [c.id for c in clips]
        assert writer.pending("text") == []
        assert writer.open_modality("text", {"backbone": "t"}, (1, 8), "float16", force=True) == "rebuilt"


def test_reopening_with_new_clips_appends_them_pending(tmp_path):
    path = tmp_path / "c.h5"
    clips = make_clips(8)
    with CacheWriter(path, dataset="d", clips=clips[:5]) as writer:
        writer.open_modality("audio", {"b": 1}, (1, 8), "float16")
        writer.write("audio", ragged(clips[:5], layers=1))
    with CacheWriter(path, clips=clips) as writer:
        assert writer.open_modality("audio", {"b": 1}, (1, 8), "float16") == "kept"
        assert writer.pending("audio") == [c.id for c in clips[5:]]
    assert CacheReader(path).clips.extras["level"][-1] == "HI"


WRITER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_cache import make_clips, ragged
    from emo.cache import CacheWriter
    clips = make_clips(60)
    values = ragged(clips, seed=3)
    with CacheWriter({path!r}, dataset="d", clips=clips) as writer:
        writer.open_modality("audio", {{"backbone": "b"}}, (3, 8), "float16")
        pending = writer.pending("audio")
        print("resuming with", len(pending), flush=True)
        for start in range(0, len(pending), 4):
            batch = pending[start:start + 4]
            time.sleep({delay})  # the encoder's work; the kill lands here or inside a write
            writer.write("audio", {{c: values[c] for c in batch}})
            print("wrote", start + len(batch), flush=True)
    """
)


def run_writer(path: Path, delay: float) -> subprocess.Popen:
    script = WRITER_SCRIPT.format(tests=str(Path(__file__).parent), path=str(path), delay=delay)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


def test_writer_killed_mid_run_resumes_without_loss_or_duplicates(tmp_path):
    path = tmp_path / "c.h5"
    proc = run_writer(path, delay=0.05)
    written = 0
    for line in proc.stdout:
        if line.startswith("wrote"):
            written = int(line.split()[1])
            if written >= 20:
                break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = CacheReader(path)
    done = int((partial.status("audio")[0] == STATUS_OK).sum())
    assert 20 <= done < 60, "the kill must land mid-run"

    resumed = run_writer(path, delay=0.0)
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0
    assert f"resuming with {60 - done}" in out

    reader = CacheReader(path)
    expected = ragged(make_clips(60), seed=3)
    seqs = reader.load("audio")
    assert sorted(seqs.ids) == sorted(expected) and len(seqs.ids) == 60
    for i, cid in enumerate(seqs.ids):
        np.testing.assert_array_equal(seqs[i], expected[cid])
    # No orphan rows: the data holds exactly the committed frames, once each.
    assert reader.info("audio").rows == sum(a.shape[0] for a in expected.values())


def test_errors_for_foreign_truncated_missing_and_locked_files(tmp_path):
    with pytest.raises(CacheError, match="no such cache file"):
        CacheReader(tmp_path / "absent.h5")
    (tmp_path / "notes.h5").write_text("hello")
    with pytest.raises(CacheError, match="not an HDF5 file"):
        CacheReader(tmp_path / "notes.h5")
    with h5py.File(tmp_path / "foreign.h5", "w") as h5:
        h5["x"] = np.arange(3)
    with pytest.raises(CacheError, match="not an emo cache"):
        CacheReader(tmp_path / "foreign.h5")

    path = tmp_path / "c.h5"
    clips = make_clips(30)
    with CacheWriter(path, dataset="d", clips=clips) as writer:
        writer.open_modality("audio", {"b": 1}, (3, 8), "float16")
        writer.write("audio", ragged(clips))
    with h5py.File(path, "a") as h5:
        h5.attrs["schema_version"] = 99
    with pytest.raises(CacheError, match="schema version 99 is unknown"):
        CacheReader(path)
    with h5py.File(path, "a") as h5:
        h5.attrs["schema_version"] = 1

    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CacheError, match="truncated or corrupt"):
        CacheReader(truncated).load("audio")

    holder = subprocess.Popen(
        [sys.executable, "-c", f"import h5py, time; f = h5py.File({str(path)!r}, 'a'); print('open', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(CacheError, match="locked by a running writer"):
            CacheReader(path)
    finally:
        holder.kill()
        holder.wait()
    assert len(CacheReader(path).load("audio")) == 30  # the lock goes with the process


def test_write_rejects_wrong_shapes_and_unknown_clips(tmp_path):
    clips = make_clips(3)
    with CacheWriter(tmp_path / "c.h5", dataset="d", clips=clips) as writer:
        writer.open_modality("audio", {"b": 1}, (3, 8), "float16")
        with pytest.raises(CacheError, match="clip0000.*expected"):
            writer.write("audio", {"clip0000": np.zeros((4, 2, 8), np.float16)})
        with pytest.raises(CacheError, match="'nope' is not in the cache"):
            writer.write("audio", {"nope": np.zeros((4, 3, 8), np.float16)})
        writer.write("audio", {"clip0000": np.zeros((4, 3, 8), np.float16)})
        with pytest.raises(CacheError, match="already stored"):
            writer.write("audio", {"clip0000": np.zeros((4, 3, 8), np.float16)})


def write_shard(path, clips, values, fingerprint):
    with CacheWriter(path, dataset="d", clips=clips, label_names=LABELS) as writer:
        writer.open_modality("audio", fingerprint, (3, 8), "float16")
        writer.write("audio", {c.id: values[c.id] for c in clips[1:]})
        writer.fail("audio", clips[0].id, "corrupt wav")


def test_merge_shards_every_clip_once_and_refuses_mismatched_fingerprints(tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app

    clips = make_clips(20)
    values = ragged(clips)
    write_shard(tmp_path / "s0.h5", clips[0::2], values, {"backbone": "b"})
    write_shard(tmp_path / "s1.h5", clips[1::2], values, {"backbone": "b"})
    result = CliRunner().invoke(app, ["cache", "merge", str(tmp_path / "s0.h5"), str(tmp_path / "s1.h5"), "-o", str(tmp_path / "all.h5")])
    assert result.exit_code == 0, result.output
    merged = CacheReader(tmp_path / "all.h5")
    assert merged.clips.ids == sorted(c.id for c in clips)
    seqs = merged.load("audio")
    assert len(seqs) == 18 and len(set(seqs.ids)) == 18
    for i, cid in enumerate(seqs.ids):
        np.testing.assert_array_equal(seqs[i], values[cid])
    assert {f[0] for f in merged.failures("audio")} == {clips[0].id, clips[1].id}
    assert merged.clips.extras["level"] == [c.extras["level"] for c in sorted(clips, key=lambda c: c.id)]

    write_shard(tmp_path / "s2.h5", clips[2::3], values, {"backbone": "other"})
    result = CliRunner().invoke(app, ["cache", "merge", str(tmp_path / "s0.h5"), str(tmp_path / "s2.h5"), "-o", str(tmp_path / "bad.h5")])
    assert result.exit_code == 1
    assert "s2.h5: audio fingerprint differs" in result.output and "backbone: 'b' -> 'other'" in result.output
    assert not (tmp_path / "bad.h5").exists()


def test_reopening_with_changed_transcripts_and_videos_resets_only_what_reads_them(tmp_path):
    from dataclasses import replace

    path = tmp_path / "c.h5"
    video = tmp_path / "v.mp4"
    video.write_bytes(b"first")
    clips = [replace(c, audio=None, video=str(video)) if c.id == "clip0002" else c for c in make_clips(4)]
    with CacheWriter(path, dataset="d", clips=clips) as writer:
        for modality in ("audio", "text", "faces"):
            writer.open_modality(modality, {"b": 1}, (1, 8), "float16")
            writer.write(modality, ragged(clips, layers=1))
    changed = [replace(c, text="new words") if c.id == "clip0000" else c for c in clips]
    video.write_bytes(b"second take")  # the video's size and mtime change
    with CacheWriter(path, clips=changed, drop_absent=True) as writer:
        assert writer.table_changes.reextract == {"audio": 1, "text": 1, "faces": 1}
        assert writer.table_changes.updated == {"text": 1}
        assert writer.pending("text") == ["clip0000"]
        assert writer.pending("audio") == writer.pending("faces") == ["clip0002"]  # its audio is the video's track
    assert CacheReader(path).clips.texts[0] == "new words"


def test_an_older_cache_without_media_stamps_gets_them_without_reextracting(tmp_path):
    path = tmp_path / "c.h5"
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF....")
    clips = [Clip(id="a", label="angry", speaker="s", audio=str(wav))]
    with CacheWriter(path, dataset="d", clips=clips) as writer:
        writer.open_modality("audio", {"b": 1}, (1, 8), "float16")
        writer.write("audio", ragged(clips, layers=1))
    with h5py.File(path, "a") as h5:  # as a cache written before the stamps were recorded
        del h5["clips/audio_stamp"], h5["clips/video_stamp"]
    assert CacheReader(path).ok_ids("audio") == ["a"]
    with CacheWriter(path, clips=clips, drop_absent=True) as writer:
        assert not writer.table_changes.any and writer.pending("audio") == []
    wav.write_bytes(b"RIFF.... longer now")
    with CacheWriter(path, clips=clips, drop_absent=True) as writer:  # from now on a change is seen
        assert writer.table_changes.reextract == {"audio": 1}
