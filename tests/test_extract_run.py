"""The extraction runner: full runs, per-clip failures, resume after SIGKILL, fingerprints, shards, CLI."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from emo.cache import STATUS_FAILED, STATUS_MISSING, STATUS_OK, CacheReader
from emo.clip import Clip
from emo.errors import ClipError, ClipMissing
from emo.extract.run.local import available_modalities, extract_into_cache, shard_clips

TESTS_DIR = Path(__file__).resolve().parent
KCBERT_VOCAB = "korean_tokenizers/kcbert-base/vocab.txt"


# -- fakes: deterministic sequences from the clip id ----------------------------------
def fake_clips(n: int = 30) -> list[Clip]:
    rng = random.Random(7)
    return [
        Clip(
            id=f"c{i:03d}",
            label=("angry", "happy", "sad")[i % 3],
            speaker=f"s{i % 4}",
            audio=f"/data/c{i:03d}.wav",
            text=f"sentence {i}",
            duration=round(rng.uniform(0.5, 3.0), 1),
        )
        for i in range(n)
    ]


def expected_sequence(clip_id: str, frames: int, row_shape: tuple[int, ...], version: int) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(f"{clip_id}/{version}".encode()))
    return rng.normal(size=(frames, *row_shape)).astype(np.float32)


def frames_of(clip: Clip) -> int:
    return int(round(clip.duration * 10))


class FakeExtractor:
    """Implements the Extractor protocol; records every call so tests can count recomputation."""

    dtype = "float16"

    def __init__(self, modality="audio", version=1, row_shape=(2, 4), fail=(), missing=(), poison=(), bad_shape=(),
                 overflow=(), sleep=0.0, log=None):
        self.modality, self.version, self.row_shape = modality, version, row_shape
        self.fail, self.missing, self.poison = set(fail), set(missing), set(poison)
        self.bad_shape, self.overflow = set(bad_shape), set(overflow)
        self.sleep, self.log = sleep, log
        self.prepared: list[str] = []  # list.append is atomic across prepare threads
        self.batches: list[list[tuple[str, float]]] = []  # (clip id, cost) per encode call

    def fingerprint(self):
        return {"backbone": f"fake-{self.modality}", "version": self.version}

    def prepare(self, clip):
        self.prepared.append(clip.id)
        if clip.id in self.fail:
            raise ClipError(clip.audio, "corrupt header")
        if clip.id in self.missing:
            raise ClipMissing(clip.audio, f"no {self.modality}")
        return clip.id, frames_of(clip)

    def cost(self, prepared):
        return prepared[1] / 10  # seconds

    def encode(self, batch):
        self.batches.append([(cid, frames / 10) for cid, frames in batch])
        if self.log:
            with open(self.log, "a") as handle:
                handle.write(" ".join(cid for cid, _ in batch) + "\n")
        if self.sleep:
            time.sleep(self.sleep)
        if any(cid in self.poison for cid, _ in batch):
            raise RuntimeError("CUDA out of memory")
        out = []
        for cid, frames in batch:
            array = expected_sequence(cid, frames, self.row_shape, self.version)
            if cid in self.bad_shape:
                array = array[:, :1]
            if cid in self.overflow:
                array[0] = 1e6  # beyond float16
            out.append(array)
        return out

    @property
    def encoded(self) -> list[str]:
        return [cid for batch in self.batches for cid, _ in batch]


def run(clips, path, extractors, **kwargs):
    kwargs.setdefault("workers", 2)
    kwargs.setdefault("budgets", {"audio": 4.0, "text": 4.0})
    return {s.modality: s for s in extract_into_cache(clips, path, extractors, dataset="fake", progress=False, **kwargs)}


def stored(path, modality):
    reader = CacheReader(path)
    seqs = reader.load(modality)
    return {cid: seqs[i] for i, cid in enumerate(seqs.ids)}


def raw_group(path, modality):
    with h5py.File(path, "r") as h5:
        group = h5[modality]
        return {name: group[name][:] for name in ("data", "offsets", "status", "reason")}, dict(group.attrs)


# -- full run ---------------------------------------------------------------------------
def test_full_run_stores_every_clip_in_duration_sorted_budgeted_batches(tmp_path):
    clips = fake_clips(30)
    audio, text = FakeExtractor("audio"), FakeExtractor("text", row_shape=(1, 3))
    summary = run(clips, tmp_path / "c.h5", {"audio": audio, "text": text})

    for modality, extractor in (("audio", audio), ("text", text)):
        assert summary[modality].action == "new"
        assert (summary[modality].extracted, summary[modality].kept, summary[modality].failed) == (30, 0, 0)
        values = stored(tmp_path / "c.h5", modality)
        assert sorted(values) == [c.id for c in clips]
        for clip in clips:
            want = expected_sequence(clip.id, frames_of(clip), extractor.row_shape, 1).astype(np.float16)
            np.testing.assert_array_equal(values[clip.id], want)
        # Batches stay within the budget (a multi-clip batch never exceeds it) ...
        assert all(sum(cost for _, cost in b) <= 4.0 + 1e-9 for b in extractor.batches if len(b) > 1)
        assert len(extractor.batches) > 5
        # ... and arrive longest first, so batch-mates have similar lengths.
        costs = [cost for batch in extractor.batches for _, cost in batch]
        assert costs == sorted(costs, reverse=True)
    reader = CacheReader(tmp_path / "c.h5")
    assert reader.dataset == "fake" and reader.clips.ids == [c.id for c in clips]


# -- per-clip failures ------------------------------------------------------------------
def test_clip_failures_are_recorded_with_reasons_and_the_run_carries_on(tmp_path):
    clips = fake_clips(30)
    audio = FakeExtractor(fail={"c003"}, missing={"c005"}, poison={"c010"}, bad_shape={"c012"}, overflow={"c014"})
    summary = run(clips, tmp_path / "c.h5", {"audio": audio})["audio"]

    reader = CacheReader(tmp_path / "c.h5")
    codes, reasons = reader.status("audio")
    by_id = dict(zip(reader.clips.ids, zip(codes.tolist(), reasons)))
    assert by_id["c003"] == (STATUS_FAILED, "corrupt header")
    assert by_id["c005"] == (STATUS_MISSING, "no audio")
    assert by_id["c010"][0] == STATUS_FAILED and "CUDA out of memory" in by_id["c010"][1]
    assert by_id["c012"][0] == STATUS_FAILED and "shape" in by_id["c012"][1]
    assert by_id["c014"][0] == STATUS_FAILED and "non-finite" in by_id["c014"][1]
    bad = {"c003", "c005", "c010", "c012", "c014"}
    assert set(reader.ok_ids("audio")) == {c.id for c in clips} - bad
    # The poisoned clip's batch-mates were retried one by one and kept.
    poisoned_batch = next(b for b in audio.batches if any(cid == "c010" for cid, _ in b) and len(b) > 1)
    assert all(by_id[cid][0] == STATUS_OK for cid, _ in poisoned_batch if cid not in bad)
    assert (summary.extracted, summary.missing, summary.failed) == (25, 1, 4)
    assert any("c003" in r and "corrupt header" in r for r in summary.reasons)


def test_a_broken_backbone_stops_the_run_instead_of_failing_each_clip(tmp_path):
    """BackboneError (from prepare here) means the model is broken: the run stops, and neither the
    clip it came from nor the ones after it are recorded as failed (a fixed rerun extracts them)."""
    from emo.errors import BackboneError

    class Broken(FakeExtractor):
        def prepare(self, clip):
            if clip.id == "c007":
                raise BackboneError("fake-audio: the weights stopped loading")
            return super().prepare(clip)

    with pytest.raises(BackboneError, match="weights stopped loading"):
        run(fake_clips(30), tmp_path / "c.h5", {"audio": Broken()})
    codes, _ = CacheReader(tmp_path / "c.h5").status("audio")
    assert not (codes == STATUS_FAILED).any()
    summary = run(fake_clips(30), tmp_path / "c.h5", {"audio": FakeExtractor()})["audio"]
    assert summary.extracted + summary.kept == 30 and summary.failed == 0


def test_retry_failed_extracts_only_the_failed_clips_again(tmp_path):
    clips, path = fake_clips(20), tmp_path / "c.h5"
    run(clips, path, {"audio": FakeExtractor(fail={"c003", "c007"}, missing={"c005"})})

    # A plain rerun leaves recorded failures alone (the file may still be broken) ...
    again = FakeExtractor()
    summary = run(clips, path, {"audio": again})["audio"]
    assert again.prepared == [] and (summary.failed, summary.retried) == (2, 0)

    # ... --retry-failed tries them again (missing is a fact about the clip, not a failure), and nothing else.
    fixed = FakeExtractor()
    summary = run(clips, path, {"audio": fixed}, retry_failed=True)["audio"]
    assert sorted(fixed.prepared) == ["c003", "c007"]
    assert (summary.action, summary.retried, summary.extracted, summary.failed, summary.missing) == ("kept", 2, 2, 0, 1)
    np.testing.assert_array_equal(stored(path, "audio")["c003"], expected_sequence("c003", frames_of(clips[3]), (2, 4), 1).astype(np.float16))


def test_default_modalities_take_audio_from_video_too():
    video_only = [Clip(id="v", label="happy", speaker="s", video="/data/v.mp4")]
    assert available_modalities(video_only) == ["audio", "faces"]
    assert available_modalities(fake_clips(3)) == ["audio", "text"]
    assert available_modalities([Clip(id="t", label="sad", speaker="s", text="hello")]) == ["text"]


def test_recorded_options_rebuild_the_same_extractor_options():
    from emo.extract.options import ExtractOptions, extract_options_for, options_from_recorded

    options = ExtractOptions(
        audio_backbone="/models/w2v", audio_layers="6,12", text_backbone="minilm", text_layers="all",
        visual_backbone="/models/vit", frames=8, face_size=112, device="cuda:1", batch_seconds=30, workers=3,
    )
    for modality, expected in {
        "audio": {"audio_backbone": "/models/w2v", "audio_layers": "6,12"},
        "text": {"text_backbone": "minilm", "text_layers": "all"},
        "faces": {"fps": None, "frames": 8, "face_size": 112},
        "visual": {"visual_backbone": "/models/vit", "fps": None, "frames": 8, "face_size": 112},
    }.items():
        recorded = extract_options_for(modality, options)
        assert recorded == expected  # what the extractor is; not device, batch size or workers
        rebuilt = options_from_recorded(json.loads(json.dumps(recorded)) | {"from_a_newer_emo": 1}, device="cpu")
        assert {k: getattr(rebuilt, k) for k in expected} == expected and rebuilt.device == "cpu"
    with pytest.raises(ValueError, match="unknown modality"):
        extract_options_for("smell", options)


# -- fingerprints -----------------------------------------------------------------------
def test_unchanged_modality_is_kept_changed_one_rebuilt_alone_and_force_rebuilds(tmp_path):
    clips, path = fake_clips(20), tmp_path / "c.h5"
    run(clips, path, {"audio": FakeExtractor("audio"), "text": FakeExtractor("text")})
    text_before = raw_group(path, "text")

    # Same fingerprints: nothing is prepared or encoded again.
    audio, text = FakeExtractor("audio"), FakeExtractor("text")
    summary = run(clips, path, {"audio": audio, "text": text})
    assert summary["audio"].action == summary["text"].action == "kept"
    assert (summary["audio"].kept, summary["audio"].extracted) == (20, 0)
    assert audio.prepared == audio.encoded == text.prepared == text.encoded == []

    # A new audio backbone version: audio alone is rebuilt; text keeps the very same bytes.
    audio, text = FakeExtractor("audio", version=2), FakeExtractor("text")
    summary = run(clips, path, {"audio": audio, "text": text})
    assert (summary["audio"].action, summary["text"].action) == ("rebuilt", "kept")
    assert sorted(audio.encoded) == [c.id for c in clips] and text.encoded == []
    values = stored(path, "audio")
    np.testing.assert_array_equal(values["c004"], expected_sequence("c004", frames_of(clips[4]), (2, 4), 2).astype(np.float16))
    text_after = raw_group(path, "text")
    for name in text_before[0]:
        np.testing.assert_array_equal(text_before[0][name], text_after[0][name])
    assert {k: str(v) for k, v in text_before[1].items()} == {k: str(v) for k, v in text_after[1].items()}

    # A run over part of the cache's clips counts only those.
    assert run(clips[:5], path, {"text": FakeExtractor("text")})["text"].kept == 5

    # --force rebuilds even an unchanged modality.
    text = FakeExtractor("text")
    summary = run(clips, path, {"text": text}, force=True)
    assert summary["text"].action == "rebuilt" and sorted(text.encoded) == [c.id for c in clips]


# -- shards -----------------------------------------------------------------------------
def test_shards_are_disjoint_cover_the_dataset_and_ignore_input_order(tmp_path):
    clips = fake_clips(31)
    shuffled = clips[:]
    random.Random(1).shuffle(shuffled)
    shards = [shard_clips(clips, (i, 3)) for i in range(3)]
    assert [[c.id for c in s] for s in shards] == [[c.id for c in shard_clips(shuffled, (i, 3))] for i in range(3)]
    ids = [c.id for s in shards for c in s]
    assert sorted(ids) == sorted(c.id for c in clips) and len(set(ids)) == len(ids)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1

    for i, shard in enumerate(shards):
        run(shard, tmp_path / f"s{i}.h5", {"audio": FakeExtractor()}, label_names=["angry", "happy", "sad"])
        reader = CacheReader(tmp_path / f"s{i}.h5")
        assert sorted(reader.ok_ids("audio")) == sorted(c.id for c in shard)
        assert reader.clips.label_names == ["angry", "happy", "sad"]  # same label indices in every shard


# -- resume after SIGKILL -----------------------------------------------------------------
RESUME_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_extract_run import FakeExtractor, fake_clips
from emo.extract.run.local import extract_into_cache
extractor = FakeExtractor("audio", sleep=float(sys.argv[3]), log=sys.argv[2])
extract_into_cache(fake_clips(60), sys.argv[1], {{"audio": extractor}}, dataset="fake", workers=2,
                   budgets={{"audio": 4.0}}, progress=False)
"""


def _logged(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def test_a_run_killed_by_sigkill_resumes_without_recomputing_or_duplicating(tmp_path):
    script = tmp_path / "extract.py"
    script.write_text(RESUME_SCRIPT.format(tests=str(TESTS_DIR)))
    path, first_log, second_log = tmp_path / "c.h5", tmp_path / "first.log", tmp_path / "second.log"

    proc = subprocess.Popen([sys.executable, str(script), str(path), str(first_log), "0.1"])
    try:
        deadline = time.monotonic() + 120
        while len(_logged(first_log)) < 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # lands inside an encode call (it sleeps 0.1 s per batch)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"

    done_before = set(CacheReader(path).ok_ids("audio"))
    assert 0 < len(done_before) < 60

    subprocess.run([sys.executable, str(script), str(path), str(second_log), "0"], check=True)
    recomputed = {cid for batch in _logged(second_log) for cid in batch}
    assert not recomputed & done_before
    assert recomputed | done_before == {c.id for c in fake_clips(60)}

    reference = tmp_path / "reference.h5"
    run(fake_clips(60), reference, {"audio": FakeExtractor()})
    resumed, uninterrupted = stored(path, "audio"), stored(reference, "audio")
    assert sorted(resumed) == sorted(uninterrupted)
    for cid in uninterrupted:
        np.testing.assert_array_equal(resumed[cid], uninterrupted[cid])
    # Exactly once: the stored rows are the clips' rows and nothing more (no leftover of the killed batch).
    with h5py.File(path, "r") as h5:
        offsets, rows = h5["audio/offsets"][:], h5["audio/data"].shape[0]
    spans = sorted(map(tuple, offsets.tolist()))
    assert sum(end - start for start, end in spans) == rows == sum(v.shape[0] for v in uninterrupted.values())
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_prepare_runs_ahead_on_worker_threads(tmp_path):
    """Decoding overlaps encoding: prepare happens on other threads than encode."""
    threads: dict[str, set[int]] = {"prepare": set(), "encode": set()}

    class Recording(FakeExtractor):
        def prepare(self, clip):
            threads["prepare"].add(threading.get_ident())
            return super().prepare(clip)

        def encode(self, batch):
            threads["encode"].add(threading.get_ident())
            return super().encode(batch)

    run(fake_clips(12), tmp_path / "c.h5", {"audio": Recording()})
    assert threads["encode"] == {threading.get_ident()}
    assert threads["prepare"] and not threads["prepare"] & threads["encode"]


# -- the command, end to end on the real Korean set ------------------------------------------
@pytest.fixture(scope="module")
def tiny_electra(tmp_path_factory, shared_data) -> Path:
    from tiny_models import save_tiny_electra

    return save_tiny_electra(tmp_path_factory.mktemp("tiny-electra"), vocab_file=shared_data / KCBERT_VOCAB)


def invoke(*args: str):
    from typer.testing import CliRunner

    from emo.cli import app

    return CliRunner().invoke(app, ["extract", *args])


def test_cli_extracts_audio_and_text_of_the_korean_set_and_a_rerun_keeps_them(shared_data, tmp_path, tiny_electra):
    from emo.extract.datasets import load_clips
    from emo.extract.options import ExtractOptions, options_from_recorded
    from emo.extract.run.local import build_extractor

    root, cache = shared_data / "kor_emotiontts", tmp_path / "kor.h5"
    args = [
        "kor-emotion", str(root), "-o", str(cache), "--audio-backbone", "logmel", "--text-backbone", str(tiny_electra),
        "--device", "cpu", "--workers", "2", "--batch-seconds", "60",
    ]
    result = invoke(*args)
    assert result.exit_code == 0, result.output

    reader = CacheReader(cache)
    assert reader.dataset == "kor-emotion" and len(reader.clips) == 300
    assert reader.modalities == ["audio", "text"]  # the default: what the dataset has
    assert len(reader.ok_ids("audio")) == len(reader.ok_ids("text")) == 300
    assert reader.row_shape("text") == (1, 32) and reader.row_shape("audio") == (1, 80)
    # How each extractor was asked for is recorded, and rebuilds an extractor with the same fingerprint.
    assert reader.info("audio").options == {"audio_backbone": "logmel", "audio_layers": None}
    assert reader.info("text").options == {"text_backbone": str(tiny_electra), "text_layers": None}
    for modality in ("audio", "text"):
        rebuilt = build_extractor(modality, options_from_recorded(reader.info(modality).options, device="cpu"), "cpu")
        assert rebuilt.fingerprint() == reader.fingerprint(modality)
    # Every clip holds its own sequence: the same values as extracting it alone (no batch mix-up).
    options = ExtractOptions(audio_backbone="logmel", text_backbone=str(tiny_electra), device="cpu")
    by_id = {c.id: c for c in load_clips("kor-emotion", root).clips}
    for modality in ("audio", "text"):
        extractor = build_extractor(modality, options, "cpu")
        picked = ["ema00001", "nea00201", "neo00305"]
        alone = {cid: extractor.encode([extractor.prepare(by_id[cid])])[0] for cid in picked}
        seqs = reader.load(modality, clips=picked)
        for i, cid in enumerate(seqs.ids):
            np.testing.assert_allclose(seqs[i].astype(np.float32), alone[cid].astype(np.float32), atol=2e-3, rtol=2e-3)
    # The clip table got each file's duration (read from its header), and the audio frames follow it (10 ms hop).
    audio = reader.load("audio")
    seconds = reader.clips.durations[reader.clips.index(audio.ids)]
    assert np.all(np.isfinite(seconds)) and len(set(seconds.round(2))) > 50
    assert np.all(np.abs(audio.lengths / 100.0 - seconds) < 0.03)
    assert "300" in result.output and "new" in result.output

    rerun = invoke(*args)
    assert rerun.exit_code == 0, rerun.output
    assert rerun.output.count("kept") >= 2 and "300" in rerun.output
    assert CacheReader(cache).ok_ids("audio") == reader.ok_ids("audio")


def test_cli_runs_a_hugging_face_audio_encoder_on_a_shard_with_batched_values_equal_to_single_clips(shared_data, tmp_path):
    from tiny_models import save_tiny_wav2vec2

    from emo.extract.datasets import load_clips
    from emo.extract.options import ExtractOptions
    from emo.extract.run.local import build_extractor

    model = save_tiny_wav2vec2(tmp_path / "w2v")
    root, cache = shared_data / "kor_emotiontts", tmp_path / "shard.h5"
    result = invoke(
        "kor-emotion", str(root), "-o", str(cache), "--modalities", "audio", "--audio-backbone", str(model),
        "--audio-layers", "all", "--shard", "2/10", "--batch-seconds", "20", "--device", "cpu", "--quiet",
    )
    assert result.exit_code == 0, result.output
    all_clips = load_clips("kor-emotion", root).clips
    shard = sorted(c.id for c in all_clips)[2::10]
    reader = CacheReader(cache)
    assert reader.clips.ids == shard and sorted(reader.ok_ids("audio")) == shard
    assert reader.row_shape("audio") == (3, 32)  # all hidden states of a 2-layer model: embeddings + 2
    extractor = build_extractor("audio", ExtractOptions(audio_backbone=str(model), audio_layers="all"), "cpu")
    by_id = {c.id: c for c in all_clips}
    seqs = reader.load("audio")
    for i, cid in enumerate(seqs.ids[:4]):
        alone = extractor.encode([extractor.prepare(by_id[cid])])[0]
        np.testing.assert_allclose(seqs[i].astype(np.float32), alone.astype(np.float32), atol=5e-3, rtol=5e-3)


def test_cli_reports_skipped_files_and_per_clip_failures_and_exits_zero(shared_data, tmp_path):
    import shutil

    root = tmp_path / "kor"
    speaker = shared_data / "kor_emotiontts" / "emotional-to-emotional" / "nea"
    wav = root / "emotional-to-emotional" / "nea" / "wav"
    wav.mkdir(parents=True)
    for name in ("nea00001", "nea00101", "nea00201"):
        shutil.copy(speaker / "wav" / f"{name}.wav", wav)
    (wav / "nea00301.wav").write_bytes(b"RIFF not really a wave file")  # decodes badly: a per-clip failure
    (wav / "notes.txt").write_text("not audio")  # skipped by the adapter

    result = invoke("kor-emotion", str(root), "-o", str(tmp_path / "c.h5"), "--audio-backbone", "logmel", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "1 file skipped" in result.output and "notes.txt" in result.output
    reader = CacheReader(tmp_path / "c.h5")
    assert reader.modalities == ["audio"]  # no transcripts copied: no text modality by default
    assert sorted(reader.ok_ids("audio")) == ["nea00001", "nea00101", "nea00201"]
    [(cid, status, reason)] = reader.failures("audio")
    assert (cid, status) == ("nea00301", "failed") and reason
    assert "nea00301" in result.output


def test_cli_retry_failed_and_a_fixed_file_are_extracted_again_without_force(shared_data, tmp_path):
    import shutil

    source = shared_data / "kor_emotiontts" / "emotional-to-emotional" / "nea" / "wav"
    wav = tmp_path / "kor" / "emotional-to-emotional" / "nea" / "wav"
    wav.mkdir(parents=True)
    shutil.copy(source / "nea00001.wav", wav)
    (wav / "nea00101.wav").write_bytes(b"RIFF truncated by a bad copy")
    args = ["kor-emotion", str(tmp_path / "kor"), "-o", str(tmp_path / "c.h5"), "--audio-backbone", "logmel", "--workers", "1"]
    assert invoke(*args).exit_code == 0
    assert [cid for cid, _, _ in CacheReader(tmp_path / "c.h5").failures("audio")] == ["nea00101"]
    assert invoke(*args).exit_code == 0
    assert [cid for cid, _, _ in CacheReader(tmp_path / "c.h5").failures("audio")] == ["nea00101"]  # a rerun skips it
    result = invoke(*args, "--retry-failed")  # the same file again: still failed, but tried
    assert result.exit_code == 0, result.output
    assert "retried 1 previously failed clip" in result.output
    assert [cid for cid, _, _ in CacheReader(tmp_path / "c.h5").failures("audio")] == ["nea00101"]

    shutil.copy(source / "nea00101.wav", wav)  # the user fixes the file: its media stamp changes
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    reader = CacheReader(tmp_path / "c.h5")
    assert reader.failures("audio") == [] and sorted(reader.ok_ids("audio")) == ["nea00001", "nea00101"]


def test_building_a_hugging_face_extractor_draws_no_loading_bar(tmp_path, capfd):
    from tiny_models import save_tiny_wav2vec2
    from transformers.utils import logging as hf_logging

    from emo.extract.options import ExtractOptions
    from emo.extract.run.local import build_extractor

    model = save_tiny_wav2vec2(tmp_path / "w2v")
    hf_logging.enable_progress_bar()
    capfd.readouterr()
    build_extractor("audio", ExtractOptions(audio_backbone=str(model)), "cpu")
    captured = capfd.readouterr()
    assert "Loading weights" not in captured.err + captured.out


def test_cli_a_backbone_that_cannot_load_is_one_error_line_and_a_non_zero_exit(shared_data, tmp_path):
    result = invoke(
        "kor-emotion", str(shared_data / "kor_emotiontts"), "-o", str(tmp_path / "c.h5"),
        "--modalities", "audio", "--audio-backbone", "no-such-org/no-such-model",
    )
    assert result.exit_code == 1
    assert "no-such-org/no-such-model" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "c.h5").exists()  # nothing was started


def test_cli_exits_non_zero_when_nothing_could_be_extracted(shared_data, tmp_path):
    result = invoke(
        "kor-emotion", str(shared_data / "kor_emotiontts"), "-o", str(tmp_path / "c.h5"), "--modalities", "faces",
        "--shard", "0/30", "--workers", "1",
    )
    assert result.exit_code == 1
    assert "nothing could be extracted" in result.output
    reader = CacheReader(tmp_path / "c.h5")
    assert len(reader.clips) == 10 and all(status == "missing" for _, status, _ in reader.failures("faces"))


@pytest.mark.parametrize(
    "args, message",
    [(["--fps", "5", "--frames", "3"], "not both"), (["--shard", "3/2"], "0 <= I < N"), (["--modalities", "smell"], "choose from")],
)
def test_cli_bad_arguments_are_usage_errors(tmp_path, args, message):
    result = invoke("kor-emotion", str(tmp_path), "-o", str(tmp_path / "c.h5"), *args)
    assert result.exit_code == 2 and message in result.output
