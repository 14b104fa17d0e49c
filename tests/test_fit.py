"""emo fit / eval / sweep / runs: heads learn a planted signal, runs save and reload, errors are clear."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from emo.cache import CacheReader
from emo.errors import EmoError
from emo.fusion import evaluate, fit, load_run, summarize_runs, sweep
from emo.fusion.heads import HEADS, list_heads
from synthetic_cache import CLASSES, make_synthetic_cache

# Tiny heads and a learning rate for ~100 clips: each fit takes a second or two on a CPU.
SMALL = {"d_model": 32, "heads": 2, "blocks": 1, "ffn": 64, "hidden": 32, "face_dim": 32, "face_layers": 1}
FAST = {"epochs": 15, "lr": 1e-3, "batch_size": 16, "quiet": True}


def small(head: str) -> dict:
    return {k: v for k, v in SMALL.items() if k in HEADS[head].defaults}



def _extras(i, clip):
    # A perceived label that disagrees with the acted one on every 7th clip, and a stored split.
    perceived = "neutral" if i % 7 == 0 else clip.label
    return {"perceived": perceived, "part": "test" if i % 5 == 0 else "train"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache") / "synthetic.h5"
    make_synthetic_cache(path, extras=_extras)
    return path


@pytest.mark.parametrize("head", [name for name, _, _ in list_heads()])
def test_every_head_learns_the_planted_signal(cache, head):
    result = fit(cache, head=head, head_params=small(head), seed=0, **FAST)
    assert result.metrics["accuracy"] > 0.7, result.metrics  # chance is 0.25
    assert result.metrics["uar"] > 0.7
    expected = {"audio": ["audio"], "text": ["text"], "visual": ["visual"]}.get(head, ["audio", "text", "visual"])
    assert result.record.modalities == expected


def test_kfold_speaker_run_directory(cache, tmp_path):
    out = tmp_path / "run"
    result = fit(cache, head="audio", head_params=small("audio"), split="kfold-speaker:3", out=out, **FAST)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "metrics.json", "predictions.csv", "confusion.png", "curves.png", "splits.json"} <= names
    assert {f"model-fold{k}.safetensors" for k in range(3)} <= names
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("accuracy", "weighted_f1", "macro_f1", "uar"):
        assert 0 <= metrics[key] <= 1 and f"{key}_std" in metrics
        assert metrics[key] == pytest.approx(np.mean([f[key] for f in metrics["folds"]]))
    assert len(metrics["folds"]) == 3 and set(metrics["per_class"]) == set(CLASSES)
    assert np.array(metrics["confusion"]).sum() == 96

    reader = CacheReader(cache)
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["id"] for r in rows) == sorted(reader.clips.ids)  # every clip tested exactly once
    assert set(rows[0]) == {"id", "true", "predicted", "fold", *(f"p_{c}" for c in CLASSES)}
    speaker = dict(zip(reader.clips.ids, reader.clips.speakers))
    for fold in json.loads((out / "splits.json").read_text()):
        train, val, test = ({speaker[c] for c in fold[p]} for p in ("train", "val", "test"))
        assert not test & (train | val) and not train & val and val

    config = json.loads((out / "config.json").read_text())
    assert config["cache"]["fingerprints"] == {"audio": reader.fingerprint("audio")}
    assert config["head"] == result.heads[0].config and config["head"]["hparams"]["d_model"] == 32
    assert config["split"] == {"spec": "kfold-speaker:3", "folds": 3, "seed": 0, "val_fraction": 0.1}
    assert config["options"]["lr"] == 1e-3 and config["emo_version"]
    assert summarize_runs([tmp_path])[0]["uar"] == metrics["uar"]


def test_same_seed_same_metrics_and_saved_run_reloads_identically(cache, tmp_path):
    kwargs = dict(head="early", head_params=small("early"), seed=7, modality_dropout=0.2, **FAST)
    first = fit(cache, out=tmp_path / "a", **kwargs)
    second = fit(cache, **kwargs)
    assert first.metrics == {**second.metrics}
    np.testing.assert_array_equal(first.predictions.probs, second.predictions.probs)

    # Weights come back from safetensors (rebuilt from the stored head config) and score the
    # stored test split to the same predictions.
    rescored = evaluate(tmp_path / "a")
    assert rescored.same_cache and rescored.predictions.ids == first.predictions.ids
    np.testing.assert_allclose(rescored.predictions.probs, first.predictions.probs, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(rescored.predictions.predicted, first.predictions.predicted)
    assert rescored.metrics["accuracy"] == first.metrics["accuracy"]
    assert [type(h) for h in load_run(tmp_path / "a").heads()] == [type(first.heads[0])]


def test_eval_refuses_a_cache_with_other_fingerprints(cache, tmp_path):
    fit(cache, head="audio", head_params=small("audio"), out=tmp_path / "run", epochs=1, quiet=True)
    other = tmp_path / "other.h5"
    make_synthetic_cache(other, fingerprints={"audio": {"backbone": "another-model", "layers": [0, 1]}})
    with pytest.raises(EmoError, match="audio fingerprint differs from training: backbone: 'synthetic-audio' -> 'another-model'"):
        evaluate(tmp_path / "run", other)
    same = tmp_path / "same.h5"
    make_synthetic_cache(same, speakers=2, id_prefix="o")  # same fingerprints, other clips: scored on all of them
    result = evaluate(tmp_path / "run", same)
    assert not result.same_cache and result.metrics["n"] == 2 * 4 * 4


def test_drop_scores_with_a_modality_absent(tmp_path):
    cache = tmp_path / "audio_signal.h5"
    make_synthetic_cache(cache, signal={"audio": 1.5, "text": 0.0}, shapes={"audio": (1, 16), "text": (1, 8)})
    fit(cache, head="late", head_params=small("late"), out=tmp_path / "run", **FAST)
    full = evaluate(tmp_path / "run")
    without_text = evaluate(tmp_path / "run", drop=["text"])
    without_audio = evaluate(tmp_path / "run", drop=["audio"])
    assert without_text.metrics["dropped"] == ["text"]
    assert without_text.metrics["accuracy"] > 0.7  # the signal is in the audio
    assert without_audio.metrics["accuracy"] < full.metrics["accuracy"] - 0.2
    fit(cache, head="audio", head_params=small("audio"), out=tmp_path / "uni", epochs=1, quiet=True)
    with pytest.raises(EmoError, match="would remove every modality"):
        evaluate(tmp_path / "uni", drop=["audio"])
    with pytest.raises(EmoError, match="--drop visual: the run uses audio"):
        evaluate(tmp_path / "uni", drop=["visual"])


def test_clear_errors(cache, tmp_path):
    audio_only = tmp_path / "audio.h5"
    make_synthetic_cache(audio_only, shapes={"audio": (1, 8)})
    with pytest.raises(EmoError, match="head 'text' needs text; the cache .* holds audio"):
        fit(audio_only, head="text", **FAST)
    with pytest.raises(EmoError, match="no visual modality in this cache \\(it holds: audio\\)"):
        fit(audio_only, head="cross_attention", modalities=["audio", "visual"], **FAST)
    with pytest.raises(EmoError, match="no label column 'emotion' .*perceived"):
        fit(cache, head="audio", label_column="emotion", **FAST)
    with pytest.raises(EmoError, match="unknown class\\(es\\) \\['joy'\\]"):
        fit(cache, head="audio", classes=["angry", "joy"], **FAST)
    with pytest.raises(EmoError, match="needs at least 8 speakers"):
        fit(cache, head="audio", split="kfold-speaker:7", **FAST)
    with pytest.raises(EmoError, match="unknown hyperparameter"):
        fit(cache, head="audio", head_params={"width": 3}, **FAST)
    fit(cache, head="audio", out=tmp_path / "run", epochs=1, quiet=True)
    with pytest.raises(EmoError, match="already holds a run"):
        fit(cache, head="audio", out=tmp_path / "run", epochs=1, quiet=True)


def test_labels_classes_and_column_split(cache):
    result = fit(cache, head="audio", head_params=small("audio"), label_column="perceived",
                 classes=["sad", "neutral", "angry"], split="column:part", **FAST)
    reader = CacheReader(cache)
    perceived = dict(zip(reader.clips.ids, reader.clips.extras["perceived"]))
    part = dict(zip(reader.clips.ids, reader.clips.extras["part"]))
    assert result.record.classes == ["sad", "neutral", "angry"] and result.record.label_column == "perceived"
    kept = {c for c, label in perceived.items() if label in ("sad", "neutral", "angry")}
    assert sorted(result.predictions.ids) == sorted(c for c in kept if part[c] == "test")
    assert [result.record.classes[t] for t in result.predictions.true] == [perceived[c] for c in result.predictions.ids]


def test_dedup_text_and_per_class_sampling(tmp_path):
    cache = tmp_path / "texts.h5"
    clips = make_synthetic_cache(cache, distinct_texts=40, shapes={"audio": (1, 8)})
    result = fit(cache, head="audio", head_params=small("audio"), dedup_text=True, per_class=3, order="short",
                 split="speaker", **FAST)
    assert result.record.clips["dedup_dropped"] == len(clips) - 40
    texts = [c.text for c in clips]
    first_of_text = {c.id for i, c in enumerate(clips) if texts.index(c.text) == i}
    (split,) = result.splits
    used = set(split["train"]) | set(split["val"]) | set(split["test"])
    assert used <= first_of_text
    # The training part keeps the 3 shortest clips of each class among the clips left for training.
    duration = {c.id: c.duration for c in clips}
    label = {c.id: c.label for c in clips}
    pool = first_of_text - set(split["val"]) - set(split["test"])
    for name in CLASSES:
        chosen = [duration[c] for c in split["train"] if label[c] == name]
        rest = [duration[c] for c in pool - set(split["train"]) if label[c] == name]
        assert len(chosen) == 3 and (not rest or max(chosen) <= min(rest))


def test_modality_dropout_keeps_clips_missing_a_modality(tmp_path):
    cache = tmp_path / "missing.h5"
    make_synthetic_cache(cache, missing={"text": 8}, shapes={"audio": (1, 8), "text": (1, 8)})
    strict = fit(cache, head="cross_attention", head_params=small("cross_attention"), **FAST)
    assert strict.record.clips["used"] == 96 - 8 and strict.record.clips["left_out_missing"] == 8
    loose = fit(cache, head="cross_attention", head_params=small("cross_attention"), modality_dropout=0.3, **FAST)
    assert loose.record.clips["used"] == 96
    assert loose.metrics["accuracy"] > 0.7


def test_sweep_reads_the_cache_once(cache, tmp_path, monkeypatch):
    calls = []
    original = CacheReader.load

    def counting(self, modality, *args, **kwargs):
        calls.append(modality)
        return original(self, modality, *args, **kwargs)

    monkeypatch.setattr(CacheReader, "load", counting)
    result = sweep(cache, heads=["audio", "concat_mlp"], out=tmp_path / "sweep", grid={"lr": [1e-3, 3e-3], "d_model": [16]},
                   seeds=[0, 1], random=None, epochs=2, batch_size=16, head_params={"hidden": 16})
    assert sorted(calls) == ["audio", "text", "visual"]
    assert len(result.rows) == 2 * 2 * 2
    with open(result.csv_path, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["run"] for r in table] == [r["run"] for r in result.rows]
    assert {r["head"] for r in table} == {"audio", "concat_mlp"}
    assert len(summarize_runs([tmp_path / "sweep"])) == 8
    config = json.loads((tmp_path / "sweep" / result.rows[0]["run"] / "config.json").read_text())
    assert config["head"]["hparams"]["d_model"] == 16 and config["options"]["lr"] == 1e-3


def test_cli_fit_eval_runs_sweep_heads(cache, tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app

    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["fit", str(cache), "--head", "concat_mlp", "--out", str(run), "--epochs", "3",
                                 "--lr", "1e-3", "--set", "hidden=16", "--split", "speaker", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "UAR" in result.output and json.loads((run / "config.json").read_text())["head"]["hparams"]["hidden"] == 16
    result = runner.invoke(app, ["eval", str(run), "--drop", "text", "--json", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m.json").read_text())["dropped"] == ["text"]
    result = runner.invoke(app, ["fit", str(cache), "--head", "text", "--out", str(tmp_path / "x"), "--modalities", "faces"])
    assert result.exit_code == 1 and "no faces modality in this cache" in result.output
    result = runner.invoke(app, ["sweep", str(cache), "--head", "audio", "--grid", "lr=1e-3,2e-3", "--seeds", "0",
                                 "--epochs", "1", "--set", "d_model=16", "--out", str(tmp_path / "sweep")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sweep" / "results.csv").is_file()
    result = runner.invoke(app, ["runs", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "concat_mlp" in result.output and result.output.count("audio-lr=") == 2
    result = runner.invoke(app, ["heads"])
    assert all(name in result.output for name, _, _ in list_heads())


# -- real data: Korean emotional speech, log-mel computed here, speaker-grouped 5-fold ---------
KOR_LABELS = {0: "neutral", 1: "happy", 2: "sad", 3: "angry"}  # clip number 1xx..4xx; see shared/data/README.md


def _mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = hz(np.linspace(mel(0), mel(sample_rate / 2), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    rise = (freqs[None] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    fall = (edges[2:, None] - freqs[None]) / (edges[2:] - edges[1:-1])[:, None]
    return np.maximum(0, np.minimum(rise, fall))


def _log_mel(path, bank, n_fft=512, hop=320, pool=8) -> tuple[np.ndarray, float]:
    """16 kHz log-mel, 20 ms hop, averaged over `pool` frames (160 ms) to keep the test quick."""
    import soundfile as sf
    import soxr

    wave, rate = sf.read(path, dtype="float32")
    wave = soxr.resample(wave if wave.ndim == 1 else wave.mean(axis=1), rate, 16000)
    frames = np.lib.stride_tricks.sliding_window_view(wave, n_fft)[::hop] * np.hanning(n_fft)
    logmel = np.log(np.abs(np.fft.rfft(frames, axis=1)) ** 2 @ bank.T + 1e-6)
    usable = len(logmel) // pool * pool
    return logmel[:usable].reshape(-1, pool, bank.shape[0]).mean(axis=1), len(wave) / 16000


@pytest.mark.slow
def test_real_korean_speech_speaker_kfold_audio_head(shared_data, tmp_path):
    from emo.cache import CacheWriter
    from emo.clip import Clip

    bank = _mel_filterbank(16000, 512, 40)
    clips, features = [], {}
    for wav in sorted((shared_data / "kor_emotiontts").glob("*/*/wav/*.wav")):
        logmel, seconds = _log_mel(wav, bank)
        clip = Clip(id=wav.stem, label=KOR_LABELS[(int(wav.stem[3:]) - 1) // 100], speaker=wav.stem[:3],
                    audio=str(wav), duration=seconds)
        clips.append(clip)
        features[clip.id] = logmel
    assert len(clips) == 300 and len({c.speaker for c in clips}) == 15
    # Global per-bin standardisation (label-free): loudness differences between emotions stay.
    stacked = np.concatenate(list(features.values()))
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    cache = tmp_path / "kor.h5"
    with CacheWriter(cache, dataset="kor-emotion", clips=clips) as writer:
        writer.open_modality("audio", {"backbone": "test-logmel", "n_mels": 40, "hop_ms": 160}, (1, 40), "float16")
        writer.write("audio", {cid: ((x - mean) / std)[:, None, :].astype(np.float16) for cid, x in features.items()})

    result = fit(cache, head="audio", split="kfold-speaker:5", epochs=20, lr=1e-3, seed=0, quiet=True,
                 head_params={"d_model": 64, "heads": 4, "blocks": 1, "ffn": 128})
    print(f"Korean log-mel, audio head, kfold-speaker:5: UAR {result.metrics['uar']:.3f} ± {result.metrics['uar_std']:.3f}, "
          f"folds {[round(f['uar'], 3) for f in result.metrics['folds']]}")
    assert sorted(result.predictions.ids) == sorted(c.id for c in clips)
    assert result.metrics["uar"] > 0.5  # chance 0.25; measured ~0.57-0.60 over seeds 0-2


def test_visual_head_learns_from_face_crops(tmp_path):
    cache = tmp_path / "faces.h5"
    make_synthetic_cache(cache, shapes={"faces": (16, 16, 3), "audio": (1, 8)}, signal={"faces": 1.0, "audio": 0.0},
                         frames=(2, 4))
    hparams = {"d_model": 32, "heads": 2, "blocks": 1, "ffn": 64, "face_size": 16, "face_patch": 8, "face_dim": 32,
               "face_layers": 1, "face_heads": 2}
    result = fit(cache, head="visual", head_params=hparams, **FAST)
    assert result.record.modalities == ["faces"] and result.record.head["inputs"]["faces"]["kind"] == "faces"
    assert result.metrics["accuracy"] > 0.7


def test_layers_pick_cached_layers(tmp_path):
    cache = tmp_path / "layers.h5"
    make_synthetic_cache(cache, shapes={"audio": (3, 8)}, fingerprints={"audio": {"backbone": "b", "layers": [6, 12, 24]}})
    last = fit(cache, head="audio", head_params=small("audio"), layers=["last"], epochs=1, quiet=True)
    assert last.record.cache.layers == {"audio": [24]}
    assert last.record.head["inputs"]["audio"]["row_shape"] == [1, 8]
    two = fit(cache, head="audio", head_params=small("audio"), layers=["audio=6,24"], epochs=1, quiet=True,
              out=tmp_path / "run")
    assert two.record.head["inputs"]["audio"]["row_shape"] == [2, 8]
    assert evaluate(tmp_path / "run").metrics["n"] == len(two.predictions.ids)  # eval reuses the same layers
    with pytest.raises(EmoError, match="audio layer 7 is not cached \\(cached layers: \\[6, 12, 24\\]\\)"):
        fit(cache, head="audio", layers=["7"], epochs=1, quiet=True)


def test_reduction_rate_comes_from_the_fingerprint_and_a_too_long_window_is_refused(tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app

    cache = tmp_path / "rated.h5"
    # Clips of 4..16 frames at a recorded 100 Hz: the default 25 Hz averages windows of 4.
    make_synthetic_cache(cache, shapes={"audio": (1, 8)},
                         fingerprints={"audio": {"backbone": "b", "layers": [0], "frame_rate": 100.0}})
    result = fit(cache, head="audio", head_params=small("audio"), seed=0, **FAST)
    assert result.record.head["inputs"]["audio"]["rate"] == 100.0
    assert result.heads[0].reduction_windows() == {"audio": 4}
    assert result.metrics["uar"] > 0.7
    with pytest.raises(EmoError, match=r"averages 20 audio frames .* longer than the shortest clip .*4 frames"):
        fit(cache, head="audio", head_params={"target_rate": 5}, **FAST)
    runner = CliRunner()
    for args, message in (
        (["--set", "target_rate=5"], "longer than the shortest clip"),
        (["--set", "widht=3"], "unknown hyperparameter(s) widht"),
        (["--set", "pooling=max"], "pooling='max': expected one of mean, stats, attentive"),
    ):
        out = runner.invoke(app, ["fit", str(cache), "--head", "audio", "--out", str(tmp_path / "r"), "--epochs", "1", *args])
        assert out.exit_code == 1, out.output
        assert message in out.output and "Traceback" not in out.output
        assert len(out.output.strip().splitlines()) == 1, out.output


def test_training_batches_group_clips_of_similar_length():
    from emo.fusion.train import length_batches

    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 1000, 500)
    rows = np.arange(3, 500)
    batches = length_batches(rows, lengths, 16, rng)
    assert sorted(np.concatenate(batches).tolist()) == rows.tolist()  # every clip once per epoch
    assert max(len(b) for b in batches) == 16 and len(batches) == -(-len(rows) // 16)
    padded = sum(len(b) * lengths[b].max() for b in batches)
    shuffled = rows[rng.permutation(len(rows))]
    random_padded = sum(len(b) * lengths[b].max() for b in np.array_split(shuffled, len(batches)))
    assert padded < 0.7 * random_padded
    # Batches differ between epochs.
    assert [b.tolist() for b in length_batches(rows, lengths, 16, rng)] != [b.tolist() for b in batches]
