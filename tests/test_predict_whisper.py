"""emo predict on a Whisper run: the same encoder, layers and input mode rebuilt and checked, then scored."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_models import save_tiny_whisper

from emo.errors import EmoError
from emo.predictor import Predictor, predict


def voices_manifest(folder: Path) -> Path:
    """The demo's synthetic voices alone (no video to render): 1 s per speaker and emotion."""
    import soundfile as sf

    from emo.demo.synth import EMOTIONS, SAMPLE_RATE, SPEAKERS, synth_voice

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["id,label,speaker,audio"]
    for speaker in SPEAKERS:
        for emotion in EMOTIONS:
            name = f"{speaker.name}_{emotion}"
            sf.write(folder / f"{name}.wav", synth_voice(speaker, emotion, 0.8, 1.0, rng), SAMPLE_RATE)
            rows.append(f"{name},{emotion},{speaker.name},{name}.wav")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


@pytest.fixture(scope="module")
def whisper_run(tmp_path_factory):
    """Generated voices, extracted with a tiny Whisper folder in padded-30 s mode, an audio head fitted on them."""
    from emo.extract.options import ExtractOptions
    from emo.extract import run_extraction
    from emo.fusion import fit

    root = tmp_path_factory.mktemp("predict-whisper")
    manifest = voices_manifest(root / "data")
    model = save_tiny_whisper(root / "tiny-whisper")
    options = ExtractOptions(audio_backbone=str(model), audio_layers="all", whisper_input="pad30", workers=1)
    cache = root / "whisper.h5"
    run_extraction("manifest", manifest, cache, ["audio"], options, progress=False)
    out = root / "run"
    fit(cache, head="audio", modalities=["audio"], out=out, epochs=3, lr=1e-3, batch_size=8, quiet=True, device="cpu", seed=0)
    with open(manifest, newline="") as handle:
        wavs = {row["id"]: str(manifest.parent / row["audio"]) for row in csv.DictReader(handle)}
    return out, model, wavs


def _rows(run: Path) -> list[dict]:
    with open(run / "predictions.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _edited(run: Path, tmp_path: Path, edit) -> Path:
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    config = json.loads((copy / "config.json").read_text())
    edit(config)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def test_clips_get_their_training_probabilities_through_the_whisper_encoder(whisper_run, tmp_path):
    run, _, wavs = whisper_run
    config = json.loads((run / "config.json").read_text())
    assert config["cache"]["fingerprints"]["audio"]["input"] == "pad30"
    rows = _rows(run)
    classes = [c[2:] for c in rows[0] if c.startswith("p_")]
    predictions = predict(run, [wavs[row["id"]] for row in rows], device="cpu")
    for row, p in zip(rows, predictions):
        expected = [float(row[f"p_{c}"]) for c in classes]
        np.testing.assert_allclose([p.probabilities[c] for c in classes], expected, atol=1e-4, err_msg=row["id"])


def test_the_run_alone_rebuilds_its_extractors_with_the_training_cache_deleted(whisper_run, tmp_path):
    import h5py

    from emo.cache import CacheReader
    from emo.fusion import fit

    trained, _, wavs = whisper_run
    cache = Path(shutil.copy(trained.parent / "whisper.h5", tmp_path / "whisper.h5"))
    run = tmp_path / "run"
    fit(cache, head="audio", modalities=["audio"], out=run, epochs=1, batch_size=8, quiet=True, device="cpu", seed=0)
    recorded = json.loads((run / "config.json").read_text())["cache"]["extract_options"]
    assert recorded == {"audio": CacheReader(cache).info("audio").options} and recorded["audio"]["whisper_input"] == "pad30"
    files = list(wavs.values())[:4]
    before = [p.probabilities for p in predict(run, files, device="cpu")]
    # The cache re-extracted in place with another input mode says nothing about how the run was trained ...
    with h5py.File(cache, "r+") as handle:
        handle["audio"].attrs["extract_options"] = json.dumps({**recorded["audio"], "whisper_input": "cut"})
    assert [p.probabilities for p in predict(run, files, device="cpu")] == before
    # ... and with the cache gone the run still scores, the same.
    cache.unlink()
    assert [p.probabilities for p in predict(run, files, device="cpu")] == before


def test_a_run_without_recorded_extract_options_is_refused_saying_refit(whisper_run, tmp_path):
    run, _, wavs = whisper_run
    older = _edited(run, tmp_path, lambda c: c["cache"].pop("extract_options"))
    with pytest.raises(EmoError, match=r"config.json records no extract options for audio .*refit it") as info:
        Predictor(older, device="cpu")
    assert "\n" not in str(info.value)


def test_another_input_mode_or_new_weights_are_refused(whisper_run, tmp_path):
    run, model, wavs = whisper_run

    def cut(config):
        config["cache"]["extract_options"] = {"audio": {"audio_backbone": str(model), "audio_layers": "all", "whisper_input": "cut"}}

    with pytest.raises(EmoError, match=r"audio: input 'pad30' -> 'cut'"):
        Predictor(_edited(run, tmp_path / "a", cut), device="cpu")
    moved = Path(shutil.copytree(model, tmp_path / "model"))

    def elsewhere(config):
        config["cache"]["fingerprints"]["audio"]["backbone"] = str(moved)
        config["cache"]["extract_options"] = {"audio": {"audio_backbone": str(moved), "audio_layers": "all", "whisper_input": "pad30"}}

    copy = _edited(run, tmp_path / "b", elsewhere)
    assert Predictor(copy, device="cpu").predict([next(iter(wavs.values()))])[0].top is not None
    save_tiny_whisper(moved, seed=1)
    with pytest.raises(EmoError, match=r"audio: revision .*: the backbone's weights changed since training"):
        Predictor(copy, device="cpu")
