"""emo predict / emo.predict: the run's own extractors, checked, then its head.

One small generated dataset (drawn faces RetinaFace finds, synthetic voices, transcripts) is
extracted once with eGeMAPS audio, face crops and a tiny text encoder saved to a folder, and
three tiny heads are fitted on it. The tests then score the dataset's own files and check
what a user relies on: the same clip gets the probabilities it got at training time, a
changed extractor is refused with the field that changed, clips lacking a modality are
scored or refused according to modality dropout, and bad input fails in one line.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from emo.errors import EmoError
from emo.predictor import Predictor, group_files, predict
from emo.predictor.inputs import attach_texts
from tiny_models import save_tiny_electra

# Tiny heads: each fit takes a second or two on a CPU.
HEAD = {"hidden": 32, "face_dim": 32, "face_layers": 1, "face_heads": 2, "face_size": None}
FIT = {"epochs": 3, "lr": 1e-3, "batch_size": 8, "quiet": True, "device": "cpu", "seed": 0}



@dataclass
class Demo:
    root: Path
    cache: Path
    text_model: Path
    words: list  # the tiny text model's vocabulary
    media: dict  # clip id -> (mp4, wav, transcript)


def save_tiny_text_model(folder: Path, words: list[str], seed: int = 0) -> Path:
    vocab = folder.parent / f"{folder.name}-vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(words))]) + "\n")
    return save_tiny_electra(folder, vocab_file=vocab, seed=seed)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Demo:
    from emo.demo.synth import CARRIER, TEXT, make_demo_dataset
    from emo.extract.options import ExtractOptions
    from emo.extract import run_extraction

    root = tmp_path_factory.mktemp("predict")
    manifest = make_demo_dataset(root / "data", clips_per_speaker_emotion=1, seconds=1.0)
    sentences = [s for lines in TEXT.values() for s in lines] + CARRIER
    words = re.findall(r"\w+|[^\w\s]", " ".join(sentences))
    text_model = save_tiny_text_model(root / "tiny-text", words)
    cache = root / "demo.h5"
    options = ExtractOptions(audio_backbone="egemaps", text_backbone=str(text_model), frames=4, face_size=48, workers=1)
    run_extraction("manifest", manifest, cache, ["audio", "faces", "text"], options, progress=False)
    with open(manifest, newline="") as handle:
        media = {
            row["id"]: (str(manifest.parent / row["video"]), str(manifest.parent / row["audio"]), row["text"])
            for row in csv.DictReader(handle)
        }
    return Demo(root, cache, text_model, words, media)


def _fit(demo: Demo, name: str, head: str, modalities: list[str], **options) -> Path:
    from emo.fusion import fit
    from emo.fusion.heads import HEADS

    params = {k: v for k, v in HEAD.items() if k in HEADS[head].defaults}
    out = demo.root / "runs" / name
    fit(demo.cache, head=head, modalities=modalities, head_params=params, out=out, **{**FIT, **options})
    return out


@pytest.fixture(scope="module")
def run_avt(demo) -> Path:
    """Audio + faces + text, trained with modality dropout."""
    return _fit(demo, "avt", "concat_mlp", ["audio", "faces", "text"], modality_dropout=0.3)


@pytest.fixture(scope="module")
def run_av_nodrop(demo) -> Path:
    """Audio + faces, trained without modality dropout."""
    return _fit(demo, "av", "concat_mlp", ["audio", "faces"])


def _csv_rows(run: Path) -> list[dict]:
    with open(run / "predictions.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _video_only(source: str, out: Path) -> Path:
    """A copy of `source`'s video stream without its audio track."""
    import av

    with av.open(source) as src, av.open(str(out), "w") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    return out


def _faceless(out: Path, seconds: float = 1.0) -> Path:
    """A video of a plain wall with a voice on its audio track: no face anywhere."""
    from emo.demo.synth import FPS, SIZE, SPEAKERS, synth_voice, write_clip

    frames = np.full((int(seconds * FPS), SIZE, SIZE, 3), 120, dtype=np.uint8)
    audio = synth_voice(SPEAKERS[0], "neutral", 0.5, seconds, np.random.default_rng(0))
    write_clip(out, frames, audio)
    return out


# -- the end-to-end consistency check -------------------------------------------------------------
def test_training_clips_get_their_training_probabilities(demo, run_avt):
    rows = _csv_rows(run_avt)
    classes = [c[2:] for c in rows[0] if c.startswith("p_")]
    files, texts = [], []
    for row in rows:
        mp4, wav, text = demo.media[row["id"]]
        files += [mp4, wav]  # same stem: one clip, faces from the video and audio from the wav, as extracted
        texts.append(text)
    predictions = predict(run_avt, files, text=texts, device="cpu")
    assert len(predictions) == len(rows)
    for row, p in zip(rows, predictions):
        assert p.files == list(demo.media[row["id"]][:2])
        assert list(p.probabilities) == classes and p.missing == [] and p.folds == 1
        expected = np.array([float(row[f"p_{c}"]) for c in classes])
        np.testing.assert_allclose([p.probabilities[c] for c in classes], expected, atol=1e-4, err_msg=row["id"])
        assert p.top == classes[int(np.argmax([p.probabilities[c] for c in classes]))]


def test_kfold_run_averages_its_fold_models_on_the_cached_features(demo):
    from emo.fusion import load_data, load_run
    from emo.fusion.train import infer_probabilities as head_predict

    run = _fit(demo, "audio-kfold", "audio", ["audio"], split="kfold:2")
    clip_id = "spk3_sad_00"
    [p] = Predictor(run, device="cpu").predict([demo.media[clip_id][1]])
    assert p.folds == 2 and p.missing == []

    saved = load_run(run)
    data = load_data(demo.cache, ["audio"], layers=saved.record.cache.layers, clip_ids=[clip_id])
    per_fold = [head_predict(h, data, np.array([0]), ["audio"], torch.device("cpu"), data.labels)[0][0] for h in saved.heads()]
    assert not np.allclose(per_fold[0], per_fold[1], atol=1e-4)  # otherwise averaging would go unnoticed
    np.testing.assert_allclose([p.probabilities[c] for c in saved.record.classes], np.mean(per_fold, axis=0), atol=1e-4)


# -- the command line ----------------------------------------------------------------------------
def test_cli_json_and_table(demo, run_avt):
    from typer.testing import CliRunner

    from emo.cli import app

    mp4, wav, text = demo.media["spk2_happy_00"]
    result = CliRunner().invoke(app, ["predict", str(run_avt), mp4, wav, "--text", text, "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    classes = json.loads((run_avt / "config.json").read_text())["classes"]
    assert row["files"] == [mp4, wav] and list(row["probabilities"]) == classes
    assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert row["top"] == max(row["probabilities"], key=row["probabilities"].get)
    assert row["missing_modalities"] == []

    table = CliRunner().invoke(app, ["predict", str(run_avt), wav, "--text", text, "--top", "2"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "#2" in table.stdout and "#3" not in table.stdout
    assert "faces (no video file for this clip)" in table.stdout


def test_missing_file_is_one_line_naming_it(demo, run_avt, tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app

    absent = tmp_path / "nope.wav"
    with pytest.raises(EmoError, match=re.escape(f"{absent}: no such file")):
        predict(run_avt, [absent])
    result = CliRunner().invoke(app, ["predict", str(run_avt), demo.media["spk1_sad_00"][0], str(absent)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: {absent}: no such file"]


# -- extractors that changed since training ---------------------------------------------------------
def test_changed_recorded_fingerprint_is_refused(demo, run_avt, tmp_path):
    run = Path(shutil.copytree(run_avt, tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    config["cache"]["fingerprints"]["faces"]["detector_sha256"] = "0" * 64  # trained with another detector
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(EmoError, match=r"faces: detector_sha256 '0000.*' -> '.*': the face detector's weights changed"):
        Predictor(run, device="cpu")


def test_recorded_extract_options_are_honoured(demo, run_avt, tmp_path):
    run = Path(shutil.copytree(run_avt, tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    absent = tmp_path / "moved-text-model"
    config["cache"]["extract_options"]["text"] = {"text_backbone": str(absent), "text_layers": None}
    (run / "config.json").write_text(json.dumps(config))
    # Recorded options that name another backbone than the run's fingerprint are refused before loading.
    with pytest.raises(EmoError, match=rf"text backbone .*{re.escape(absent.name)}.*recorded options name another backbone"):
        Predictor(run, device="cpu")
    config["cache"]["fingerprints"]["text"]["backbone"] = str(absent)  # the record agrees: the folder has moved
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(EmoError, match=rf"text backbone .*{re.escape(absent.name)}'?: no such model folder here"):
        Predictor(run, device="cpu")


def test_text_backbone_with_new_weights_is_refused(demo, run_avt, tmp_path):
    model = Path(shutil.copytree(demo.text_model, tmp_path / "text-model"))
    run = Path(shutil.copytree(run_avt, tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    # As if the run had been trained with the copy (the same files, so the same revision) ...
    config["cache"]["fingerprints"]["text"]["backbone"] = str(model)
    config["cache"]["extract_options"]["text"] = {"text_backbone": str(model), "text_layers": None}
    (run / "config.json").write_text(json.dumps(config))
    mp4, wav, text = demo.media["spk1_angry_00"]
    assert Predictor(run, device="cpu").predict([mp4, wav], text)[0].top is not None
    # ... whose weights then changed.
    save_tiny_text_model(model, demo.words, seed=1)
    with pytest.raises(EmoError, match=r"text: revision 'sha256:.*' -> 'sha256:.*': the backbone's weights changed since training"):
        Predictor(run, device="cpu")


# -- clips that lack a modality --------------------------------------------------------------------
def test_video_without_audio_track(demo, run_avt, run_av_nodrop, tmp_path):
    mp4, _, text = demo.media["spk4_angry_00"]
    silent = _video_only(mp4, tmp_path / "silent.mp4")

    [p] = predict(run_avt, [silent], text=text, device="cpu")
    assert p.missing == ["audio"] and "no audio track" in p.reasons["audio"]
    assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)

    refusal = f"{silent}: the run was trained without --modality-dropout; this clip has no audio: no audio track"
    with pytest.raises(EmoError, match=re.escape(refusal)):
        predict(run_av_nodrop, [silent], device="cpu")


def test_video_without_a_face(demo, run_avt, run_av_nodrop, tmp_path):
    wall = _faceless(tmp_path / "wall.mp4")
    [p] = predict(run_avt, [wall], text="The meeting starts at ten.", device="cpu")
    assert p.missing == ["faces"] and p.top in p.probabilities
    with pytest.raises(EmoError, match="this clip has no faces: no face detected in 4 sampled frames"):
        predict(run_av_nodrop, [wall], device="cpu")


def test_keep_going_scores_the_others(demo, run_av_nodrop, tmp_path):
    wall = _faceless(tmp_path / "wall.mp4")
    good = demo.media["spk5_happy_00"][0]
    predictions = Predictor(run_av_nodrop, device="cpu").predict([wall, good], keep_going=True)
    assert "no face detected" in predictions[0].error and predictions[0].probabilities == {}
    assert predictions[1].error is None and predictions[1].top is not None


def test_a_broken_backbone_stops_predict_even_with_keep_going(demo, run_av_nodrop, monkeypatch):
    """As in `emo extract`: a BackboneError is the model's failure, not the clip's; it is raised, never
    turned into a per-clip error (which keep_going would hide behind a table of failed clips)."""
    from emo.errors import BackboneError

    predictor = Predictor(run_av_nodrop, device="cpu")

    def broken(clip):
        raise BackboneError("egemaps: the built-in extractor stopped working")

    monkeypatch.setattr(predictor.extractors["audio"], "prepare", broken)
    with pytest.raises(BackboneError, match="stopped working"):
        predictor.predict([demo.media["spk5_happy_00"][1]], keep_going=True)


# -- baselines and speaker normalisation -----------------------------------------------------------
@pytest.fixture(scope="module")
def run_logreg(demo) -> Path:
    return _fit(demo, "logreg", "logreg", ["audio"], split="speaker")


@pytest.fixture(scope="module")
def run_svm_speaker(demo) -> Path:
    """An SVM baseline on speaker-normalised audio, split by speaker: a test speaker's clips are all test clips."""
    return _fit(demo, "svm-speaker", "svm", ["audio"], split="speaker", normalize="speaker")


def _test_speaker(run: Path) -> tuple[str, list[dict]]:
    by_speaker: dict[str, list[dict]] = {}
    for row in _csv_rows(run):
        by_speaker.setdefault(row["id"].split("_")[0], []).append(row)
    return max(by_speaker.items(), key=lambda item: len(item[1]))


def _assert_training_probabilities(rows: list[dict], predictions) -> None:
    classes = [c[2:] for c in rows[0] if c.startswith("p_")]
    for row, p in zip(rows, predictions):
        expected = [float(row[f"p_{c}"]) for c in classes]
        np.testing.assert_allclose([p.probabilities[c] for c in classes], expected, atol=1e-4, err_msg=row["id"])


def test_baseline_run_predicts_its_training_probabilities(demo, run_logreg):
    _, rows = _test_speaker(run_logreg)
    predictions = predict(run_logreg, [demo.media[r["id"]][1] for r in rows], device="cpu")
    _assert_training_probabilities(rows, predictions)


def test_speaker_normalised_run_needs_several_clips_of_one_named_speaker(demo, run_svm_speaker, run_logreg):
    from typer.testing import CliRunner

    from emo.cli import app

    speaker, rows = _test_speaker(run_svm_speaker)
    assert len(rows) == 4  # every clip of the speaker: its statistics at training time came from these
    files = [demo.media[r["id"]][1] for r in rows]
    predictions = predict(run_svm_speaker, files, device="cpu", speaker=speaker)
    _assert_training_probabilities(rows, predictions)
    assert all(p.speaker == speaker for p in predictions)

    with pytest.raises(EmoError, match="fitted with --normalize speaker.*pass --speaker NAME"):
        predict(run_svm_speaker, files, device="cpu")
    with pytest.raises(EmoError, match=r"1 clip\(s\) given; the speaker's statistics need >= 2 clips"):
        predict(run_svm_speaker, files[:1], device="cpu", speaker=speaker)
    with pytest.raises(EmoError, match="fitted without --normalize speaker"):
        predict(run_logreg, files, device="cpu", speaker=speaker)

    runner = CliRunner()
    refused = runner.invoke(app, ["predict", str(run_svm_speaker), files[0], "--speaker", speaker])
    assert refused.exit_code == 1 and len(refused.output.strip().splitlines()) == 1, refused.output
    done = runner.invoke(app, ["predict", str(run_svm_speaker), *files, "--speaker", speaker, "--json", "--device", "cpu"])
    assert done.exit_code == 0, done.output
    assert [row["speaker"] for row in json.loads(done.stdout)] == [speaker] * 4


# -- files -> clips -------------------------------------------------------------------------------
def test_files_become_clips(tmp_path):
    names = ["a.mp4", "a.wav", "b.wav", "c.mp4", "sub/b.mp4", "d.wav", "e.mp4", "x.txt", "dup/a.mp4"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    f = {name: str(tmp_path / name) for name in names}

    clips = group_files([f["a.mp4"], f["b.wav"], f["a.wav"], f["c.mp4"], f["sub/b.mp4"]])
    assert [(c.video, c.audio) for c in clips] == [(f["a.mp4"], f["a.wav"]), (f["sub/b.mp4"], f["b.wav"]), (f["c.mp4"], None)]
    paired = group_files([f["d.wav"], f["e.mp4"], f["c.mp4"], f["a.wav"]], pair=True)
    assert [(c.video, c.audio) for c in paired] == [(f["e.mp4"], f["d.wav"]), (f["c.mp4"], f["a.wav"])]
    assert [(c.video, c.audio) for c in group_files([(f["e.mp4"], f["d.wav"])])] == [(f["e.mp4"], f["d.wav"])]

    with pytest.raises(EmoError, match="two video files named 'a'"):
        group_files([f["a.mp4"], f["dup/a.mp4"]])
    with pytest.raises(EmoError, match=r"x\.txt: unknown media type '\.txt'"):
        group_files([f["x.txt"]])
    with pytest.raises(EmoError, match="two by two"):
        group_files([f["a.mp4"], f["a.wav"], f["c.mp4"]], pair=True)
    with pytest.raises(EmoError, match="two video files"):
        group_files([f["a.mp4"], f["c.mp4"]], pair=True)
    with pytest.raises(EmoError, match=r"1 transcript\(s\) for 2 clip\(s\)"):
        attach_texts(group_files([f["a.mp4"], f["c.mp4"]]), "one text")


def test_import_emo_stays_light_and_exposes_predict():
    code = (
        "import sys, emo\n"
        "from emo import predict\n"
        "import emo.predictor\n"
        "assert emo.predict is emo.predictor.predict and callable(emo.predict)\n"
        "assert 'torch' not in sys.modules and 'h5py' not in sys.modules, 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
