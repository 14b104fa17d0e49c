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


def failures(cache: Path, modality: str = "audio") -> dict[str, tuple[str, str]]:
    return {cid: (status, reason) for cid, status, reason in CacheReader(cache).failures(modality)}


# -- 3. truncated media ------------------------------------------------------------------------
def _promise_more(path: Path, factor: int) -> None:
    """Rewrite a WAV's data-chunk size as `factor` times what the file holds (a cut copy's header)."""
    import struct

    raw = bytearray(path.read_bytes())
    at = raw.find(b"data")
    size = struct.unpack("<I", raw[at + 4 : at + 8])[0]
    raw[at + 4 : at + 8] = struct.pack("<I", size * factor)
    path.write_bytes(bytes(raw))


def test_a_wav_shorter_than_its_header_says_is_a_failed_clip_with_that_reason(tmp_path):
    root, cache = tmp_path / "data", tmp_path / "c.h5"
    make_dataset(root, n=3)
    _promise_more(root / "a1.wav", 2)  # the header promises twice the audio it holds
    whole = (root / "a2.wav").read_bytes()
    (root / "a2.wav").write_bytes(whole[: len(whole) // 2])  # a copy cut in half
    result = extract(root, cache)
    assert result.exit_code == 0, result.output
    found = failures(cache)
    assert set(found) == {"a1", "a2"}
    assert found["a1"][0] == "failed" and "truncated WAV: its header promises 25600 bytes of audio (0.80 s), the file holds 12800 (0.40 s)" in found["a1"][1]
    assert "truncated WAV" in found["a2"][1]
    assert CacheReader(cache).ok_ids("audio") == ["a0"]


# -- 6. reasons that say what is wrong ----------------------------------------------------------
def test_random_bytes_in_a_flac_are_undecodable_not_zero_length(tmp_path):
    root, cache = tmp_path / "data", tmp_path / "c.h5"
    rows = make_dataset(root, n=2)
    (root / "noise.flac").write_bytes(np.random.default_rng(0).bytes(6000))
    (root / "empty.wav").write_bytes(b"")
    rows.append({"id": "n0", "label": "sad", "speaker": "s0", "audio": "noise.flac"})
    rows.append({"id": "e0", "label": "sad", "speaker": "s0", "audio": "empty.wav"})
    write_manifest(root, rows)
    assert extract(root, cache).exit_code == 0
    status, reason = failures(cache)["n0"]
    assert status == "failed" and reason.startswith("cannot decode audio") and "zero-length" not in reason
    assert failures(cache)["e0"] == ("failed", "empty file (0 bytes)")


def test_a_non_utf8_transcript_is_failed_with_that_reason_not_an_empty_transcript(tmp_path):
    from test_extract_run import FakeExtractor

    from emo.extract.datasets import load_clips
    from emo.extract.run.local import available_modalities, extract_into_cache

    speaker = tmp_path / "kor" / "emotional-to-emotional" / "nea"
    (speaker / "wav").mkdir(parents=True)
    (speaker / "transcript").mkdir()
    for name in ("nea00001", "nea00002"):
        write_wav(speaker / "wav" / f"{name}.wav")
    (speaker / "transcript" / "nea00001.txt").write_text("안녕하세요", encoding="utf-8")
    (speaker / "transcript" / "nea00002.txt").write_bytes("안녕".encode("euc-kr"))  # not UTF-8
    scan = load_clips("kor-emotion", tmp_path / "kor")
    assert available_modalities(scan.clips) == ["audio", "text"]
    text = FakeExtractor("text", row_shape=(1, 4))
    extract_into_cache(scan.clips, tmp_path / "c.h5", {"text": text}, dataset="kor-emotion", workers=1, progress=False)
    [(cid, status, reason)] = CacheReader(tmp_path / "c.h5").failures("text")
    assert (cid, status) == ("nea00002", "failed")
    assert "nea00002.txt is not UTF-8 text" in reason and "empty" not in reason
    assert text.prepared == ["nea00001"]  # the unreadable one never reached the extractor


@pytest.mark.parametrize("option, flag", [("text", "--text-backbone"), ("visual", "--visual-backbone")])
def test_a_missing_backbone_names_the_option_that_chose_it(tmp_path, option, flag, monkeypatch):
    from emo.errors import BackboneError
    from emo.extract.options import ExtractOptions
    from emo.extract.run.local import build_extractor

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    options = ExtractOptions(text_backbone="no-such-org/no-such-model", visual_backbone="no-such-org/no-such-model")
    with pytest.raises(BackboneError) as caught:
        build_extractor(option, options, "cpu")
    assert f"e.g. {flag} /models/no-such-model" in str(caught.value)
    assert "--audio-backbone" not in str(caught.value)


def test_output_paths_that_are_folders_fail_before_any_work(tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app

    root = tmp_path / "data"
    make_dataset(root, n=2)
    folder = tmp_path / "out"
    folder.mkdir()
    result = extract(root, folder)
    assert result.exit_code == 1 and "is a folder, not a cache file" in result.output
    assert "not an HDF5 file" not in result.output and list(folder.iterdir()) == []

    assert extract(root, tmp_path / "c.h5").exit_code == 0
    result = CliRunner().invoke(app, ["cache", "merge", str(tmp_path / "c.h5"), "-o", str(folder)], env={"COLUMNS": "400"})
    assert result.exit_code == 1 and "is a folder, not a cache file" in result.output, result.output
    assert list(tmp_path.glob("*.merging")) == [] and list(folder.iterdir()) == []


def test_a_merge_that_fails_half_way_leaves_no_partial_file(tmp_path, monkeypatch):
    from emo.cache import merge as merge_module
    from emo.errors import CacheError

    root = tmp_path / "data"
    make_dataset(root, n=4)
    assert extract(root, tmp_path / "s0.h5", "--shard", "0/2").exit_code == 0
    assert extract(root, tmp_path / "s1.h5", "--shard", "1/2").exit_code == 0

    def broken_write(*args, **kwargs):
        raise CacheError("disk full (simulated)")

    monkeypatch.setattr(merge_module.CacheWriter, "write", broken_write)
    with pytest.raises(CacheError, match="disk full"):
        merge_module.merge_caches([tmp_path / "s0.h5", tmp_path / "s1.h5"], tmp_path / "m.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "s0.h5", "s1.h5"]


# -- 7. file-system oddities ------------------------------------------------------------------
def test_symlink_loops_and_dangling_links_are_skipped_files_with_reasons(tmp_path):
    from emo.extract.datasets import load_clips

    root = tmp_path / "ravdess" / "Actor_01"
    root.mkdir(parents=True)
    write_wav(root / "03-01-01-01-01-01-01.wav")
    (root / "03-01-05-01-01-01-01.wav").symlink_to(root / "03-01-05-01-01-01-01.wav")  # a file that is its own link
    (root / "03-01-04-01-01-01-01.wav").symlink_to(root / "gone.wav")  # dangling
    (root / "back").symlink_to(tmp_path / "ravdess")  # a folder loop
    scan = load_clips("ravdess", tmp_path / "ravdess")
    assert [c.id for c in scan.clips] == ["01-01-01-01-01-01"]  # ravdess ids drop the modality field
    reasons = {Path(path).name: reason for path, reason in scan.skipped}
    assert reasons["03-01-05-01-01-01-01.wav"] == "symlink loop (the link resolves to itself)"
    assert reasons["03-01-04-01-01-01-01.wav"].startswith("dangling symlink (its target")
    assert reasons["back"].startswith("symlink loop: folder already scanned")


def test_manifest_media_that_loop_or_dangle_are_skipped_rows(tmp_path):
    root, cache = tmp_path / "data", tmp_path / "c.h5"
    rows = make_dataset(root, n=2)
    (root / "loop.wav").symlink_to(root / "loop.wav")
    (root / "dangling.wav").symlink_to(root / "nowhere.wav")
    rows += [{"id": "l", "label": "sad", "speaker": "s0", "audio": "loop.wav"},
             {"id": "d", "label": "sad", "speaker": "s0", "audio": "dangling.wav"}]
    write_manifest(root, rows)
    result = extract(root, cache)
    assert result.exit_code == 0, result.output
    assert "2 files skipped" in result.output
    assert "audio file is a symlink loop" in result.output and "audio file is a dangling symlink" in result.output
    assert CacheReader(cache).clips.ids == ["a0", "a1"]


# -- 8. numbers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--fps", "nan"], "--fps must be a positive finite number, not nan"),
    (["--fps", "inf"], "--fps must be a positive finite number, not inf"),
    (["--batch-seconds", "nan"], "--batch-seconds must be a positive finite number, not nan"),
    (["--batch-seconds", "-1"], "--batch-seconds must be a positive finite number"),
])
def test_non_finite_or_negative_extract_options_are_usage_errors(tmp_path, args, message):
    root = tmp_path / "data"
    make_dataset(root, n=1)
    result = extract(root, tmp_path / "c.h5", *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "c.h5").exists()


def test_manifest_durations_must_be_positive_finite_seconds(tmp_path):
    from emo.extract.datasets import load_clips

    root = tmp_path / "data"
    rows = make_dataset(root, n=5)
    for row, value in zip(rows, ["nan", "-5", "inf", "0", "1.5"]):
        row["duration"] = value
    write_manifest(root, rows)
    scan = load_clips("manifest", root)
    assert [(c.id, c.duration) for c in scan.clips] == [("a4", 1.5)]
    reasons = [reason for _, reason in scan.skipped]
    assert reasons == [f"duration {v!r} is not a positive finite number of seconds" for v in ["nan", "-5", "inf", "0"]]


# -- 9. manifest paths stay in the manifest's folder ---------------------------------------------
def test_manifest_paths_outside_its_folder_are_refused_unless_allowed(tmp_path):
    from emo.extract.datasets import load_clips

    root = tmp_path / "data"
    rows = make_dataset(root, n=1)
    outside = write_wav(tmp_path / "outside.wav")
    (root / "sub").mkdir()
    write_wav(root / "sub" / "inside.wav")
    rows += [
        {"id": "abs", "label": "sad", "speaker": "s0", "audio": str(outside)},
        {"id": "up", "label": "sad", "speaker": "s0", "audio": "../outside.wav"},
        {"id": "sys", "label": "sad", "speaker": "s0", "audio": "../../../../../../../etc/passwd"},
        {"id": "ok", "label": "sad", "speaker": "s0", "audio": "sub/../sub/inside.wav"},  # `..` that stays inside
    ]
    write_manifest(root, rows)
    scan = load_clips("manifest", root)
    assert [c.id for c in scan.clips] == ["a0", "ok"]
    assert len(scan.skipped) == 3
    assert all("is outside the manifest's folder" in reason and "--allow-outside-paths" in reason for _, reason in scan.skipped)

    result = extract(root, tmp_path / "c.h5")
    assert result.exit_code == 0 and "3 files skipped" in result.output
    result = extract(root, tmp_path / "all.h5", "--allow-outside-paths")
    assert result.exit_code == 0, result.output
    reader = CacheReader(tmp_path / "all.h5")
    assert sorted(reader.clips.ids) == ["a0", "abs", "ok", "sys", "up"]
    assert failures(tmp_path / "all.h5")["sys"][0] == "failed"  # allowed, opened, and not audio
    assert str(outside) in reader.clips.audio_paths


# -- 10. user strings are printed, never parsed as rich markup ------------------------------------
def test_markup_in_paths_ids_and_reasons_prints_verbatim_in_extract_and_cache_commands(tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app

    root = tmp_path / "odd[/]data"
    rows = make_dataset(root, n=2)
    rows[0]["id"] = "clip[/]one"
    rows[1]["id"] = "[bold]two"
    (root / "bad[red].wav").write_bytes(b"RIFF not audio at all")
    rows.append({"id": "[/]", "label": "sad", "speaker": "[i]s", "audio": "bad[red].wav"})
    rows.append({"id": "gone", "label": "sad", "speaker": "s0", "audio": "missing[/].wav"})
    write_manifest(root, rows)
    cache = tmp_path / "c[/]ache.h5"
    result = extract(root, cache)
    assert result.exit_code == 0, result.output
    assert "missing[/].wav" in result.output  # the skipped row
    assert "c[/]ache.h5" in result.output and "[/] (failed)" in result.output

    runner = CliRunner()
    wide = {"COLUMNS": "400"}
    result = runner.invoke(app, ["cache", "info", str(cache)], env=wide)
    assert result.exit_code == 0, result.output
    assert "c[/]ache.h5" in result.output and "failed [/]: " in result.output
    result = runner.invoke(app, ["cache", "verify", str(cache)], env=wide)
    assert result.exit_code == 0 and "c[/]ache.h5" in result.output, result.output
    merged = tmp_path / "m[bold].h5"
    result = runner.invoke(app, ["cache", "merge", str(cache), "-o", str(merged)], env=wide)
    assert result.exit_code == 0 and "m[bold].h5" in result.output, result.output


@pytest.mark.parametrize("options, message", [
    ({"fps": "abc"}, "--fps must be a number, not 'abc'"),
    ({"fps": True}, "--fps must be a number, not True"),
    ({"frames": 2.5}, "--frames must be an integer, not 2.5"),
    ({"audio_backbone": 5}, "--audio-backbone must be text, not 5"),
    ({"batch_seconds": float("inf")}, "--batch-seconds must be a positive finite number, not inf"),
])
def test_extract_options_read_back_from_json_are_type_checked(options, message):
    from emo.extract.options import ExtractOptions

    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        ExtractOptions(**options)


# -- every class at once: a gallery of broken media ends as reasons, never as a crash -------------
def _gallery(root: Path) -> dict[str, bytes | None]:
    rng = np.random.default_rng(3)
    good = write_wav(root / "good.wav").read_bytes()
    nan_wav = root / "nan.wav"
    soundfile.write(nan_wav, np.full(4000, np.nan, np.float32), 16000, subtype="FLOAT")
    streaming = bytearray(good)
    at = streaming.find(b"data")
    streaming[at + 4 : at + 8] = b"\xff\xff\xff\xff"  # a streaming writer's "unknown length": still whole
    return {
        "good.wav": None,
        "nan.wav": None,
        "streaming.wav": bytes(streaming),
        "empty.wav": b"",
        "header_only.wav": good[:40] + b"\x00\x00\x00\x00",
        "half.wav": good[: len(good) // 2],
        "id3_junk.wav": b"ID3" + bytes(300),
        "noise.wav": rng.bytes(4000),
        "noise.flac": rng.bytes(4000),
        "noise.ogg": rng.bytes(4000),
        "noise.mp4": rng.bytes(4000),
        "text.mp3": b"this is not audio\n" * 50,
    }


def test_a_gallery_of_broken_media_gives_a_reason_per_clip_and_no_crash(tmp_path):
    import re

    root, cache = tmp_path / "data", tmp_path / "c.h5"
    root.mkdir()
    rows = []
    for name, content in _gallery(root).items():
        if content is not None:
            (root / name).write_bytes(content)
        column = "video" if name.endswith(".mp4") else "audio"
        rows.append({"id": name, "label": "sad", "speaker": "s0", column: name})
    write_manifest(root, rows)
    result = extract(root, cache, "--modalities", "audio")
    assert result.exit_code == 0, result.output
    assert "unexpected" not in result.output and "Traceback" not in result.output
    reader = CacheReader(cache)
    assert sorted(reader.ok_ids("audio")) == ["good.wav", "streaming.wav"]
    found = failures(cache)
    assert set(found) | {"good.wav", "streaming.wav"} == {row["id"] for row in rows}
    for clip, (status, reason) in found.items():
        # Every failure is one emo understood (a ClipError's reason), not a stray exception's text.
        assert reason and not re.match(r"^[A-Z]\w*(Error|Exception)\b", reason), (clip, reason)
    assert found["empty.wav"][1] == "empty file (0 bytes)"
    assert found["header_only.wav"][1] == "zero-length audio (no samples)"
    assert found["half.wav"][1].startswith("truncated WAV")
    assert found["nan.wav"][1] == "audio holds NaN or infinite samples"
    # libsndfile calls an unparsable file "does not exist or is not a regular file"; it exists.
    assert found["text.mp3"][1] == ("cannot decode audio: not a valid mp3 file "
                                    "(libsndfile: Format not recognised.; ffmpeg: Invalid data found when processing input)")
