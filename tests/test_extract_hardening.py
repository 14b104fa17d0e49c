"""Extract on hostile or changed input: the cache follows the dataset, bad input is a clear reason.

Every case builds its own small manifest dataset of generated WAV files and extracts with
the built-in log-mel backbone (no weights), so the whole file runs offline in seconds.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from emo.cache import CacheReader


def write_wav(path: Path, seconds: float = 0.4, freq: float = 220.0, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)
    return path


def write_manifest(folder: Path, rows: list[dict], name: str = "manifest.csv") -> Path:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    path = folder / name
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def make_dataset(folder: Path, n: int = 4) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        write_wav(folder / f"a{i}.wav", freq=200.0 + 40 * i)
        rows.append({"id": f"a{i}", "label": ("sad", "angry")[i % 2], "speaker": f"s{i % 2}", "audio": f"a{i}.wav"})
    write_manifest(folder, rows)
    return rows


def extract(root: Path, cache: Path, *extra: str):
    from typer.testing import CliRunner

    from emo.cli import app

    args = ["extract", "manifest", str(root), "-o", str(cache), "--audio-backbone", "logmel", "--workers", "1", "-q"]
    return CliRunner().invoke(app, [*args, *extra], env={"COLUMNS": "400"})


def labels_of(reader: CacheReader) -> dict[str, str]:
    return {cid: reader.clips.label_names[int(i)] for cid, i in zip(reader.clips.ids, reader.clips.labels)}


# -- 1. the clip table follows the dataset ------------------------------------------------
def test_a_rerun_updates_changed_labels_and_speakers_and_drops_removed_clips(tmp_path):
    root, cache = tmp_path / "data", tmp_path / "c.h5"
    rows = make_dataset(root)
    assert extract(root, cache).exit_code == 0
    before = CacheReader(cache).load("audio")

    rows[1]["label"] = "happy"  # a new label, not in the first run's set
    rows[2]["speaker"] = "s9"
    del rows[3]
    write_manifest(root, rows)
    result = extract(root, cache)
    assert result.exit_code == 0, result.output
    assert "1 no longer in the dataset, dropped" in result.output
    assert "label 1" in result.output and "speaker 1" in result.output
    assert "a1: label 'angry' -> 'happy'" in result.output

    reader = CacheReader(cache)
    assert labels_of(reader) == {"a0": "sad", "a1": "happy", "a2": "sad"}
    assert reader.clips.speakers == ["s0", "s1", "s9"]
    assert sorted(reader.ok_ids("audio")) == ["a0", "a1", "a2"]
    after = reader.load("audio")
    for cid in after.ids:  # metadata changes keep the features: nothing was recomputed
        np.testing.assert_array_equal(after[after.ids.index(cid)], before[before.ids.index(cid)])
    assert extract(root, cache).output.count("clip table") == 0  # an unchanged dataset reports nothing


def test_a_clip_whose_media_changed_is_extracted_again(tmp_path):
    root, cache = tmp_path / "data", tmp_path / "c.h5"
    rows = make_dataset(root, n=3)
    assert extract(root, cache).exit_code == 0
    old = CacheReader(cache).load("audio", clips=["a0", "a1"])

    write_wav(root / "a0.wav", seconds=0.8, freq=900.0)  # same path, new content (size and mtime change)
    write_wav(root / "b1.wav", freq=1200.0)
    rows[1]["audio"] = "b1.wav"  # another file for the same clip
    write_manifest(root, rows)
    result = extract(root, cache)
    assert result.exit_code == 0, result.output
    assert "extracted again: audio 2" in result.output

    reader = CacheReader(cache)
    new = reader.load("audio", clips=["a0", "a1"])
    assert new[0].shape[0] > old[0].shape[0]  # twice the audio: more frames
    assert not np.array_equal(new[1], old[1])
    assert reader.clips.audio_paths[1].endswith("b1.wav")
    assert CacheReader(cache).info("audio").status.tolist() == [1, 1, 1]


def test_a_shard_run_keeps_the_other_shards_clips(tmp_path):
    root, cache = tmp_path / "data", tmp_path / "c.h5"
    make_dataset(root, n=4)
    assert extract(root, cache, "--shard", "0/2").exit_code == 0
    assert extract(root, cache, "--shard", "1/2").exit_code == 0
    assert sorted(CacheReader(cache).ok_ids("audio")) == ["a0", "a1", "a2", "a3"]
