"""--normalize speaker: each speaker's features standardised with that speaker's own statistics.

What a user relies on: the statistics are the speaker's own (or global ones for a speaker with a
single clip, as documented), the run says it is transductive (config.json, metrics.json, printed),
evaluation reapplies it, it helps when voices differ, and bad input is a one-line error.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from emo.errors import EmoError
from emo.fusion import evaluate, fit, load_data
from emo.fusion.normalize import MIN_CLIPS, speaker_normalized
from synthetic_cache import make_synthetic_cache


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    """Speakers with their own level and range on every feature: the case speaker normalisation is for."""
    path = tmp_path_factory.mktemp("normalize") / "voices.h5"
    make_synthetic_cache(path, shapes={"audio": (1, 6)}, signal=0.25, speaker_shift=3.0, speakers=8,
                         clips_per_speaker_class=3, frames=(20, 40))
    return path


def _frames(modality, row):
    start, length = int(modality.starts[row]), int(modality.lengths[row])
    return modality.data[start : start + length].double().numpy()


def test_each_speaker_gets_its_own_statistics_and_a_single_clip_the_global_ones(voices):
    everything = load_data(voices, ["audio"])
    lone = next(i for i, s in enumerate(everything.speakers) if s == "s7")
    keep = [c for c, s in zip(everything.ids, everything.speakers) if s != "s7"] + [everything.ids[lone]]
    data = load_data(voices, ["audio"], clip_ids=keep)
    normalized, info = speaker_normalized(data, ["audio"], voices)
    assert info == {"speakers": 8, "global_fallback": ["s7"]}
    before, after = data.modalities["audio"], normalized.modalities["audio"]
    for speaker in ["s0", "s3"]:
        rows = np.flatnonzero(data.speakers == speaker)
        assert len(rows) >= MIN_CLIPS
        frames = np.concatenate([_frames(after, r) for r in rows])
        np.testing.assert_allclose(frames.mean(0), 0, atol=2e-3)
        np.testing.assert_allclose(frames.std(0), 1, atol=2e-3)
    every = np.concatenate([_frames(before, r) for r in range(len(data))])
    (row,) = np.flatnonzero(data.speakers == "s7")
    expected = (_frames(before, row) - every.mean(0)) / every.std(0)
    np.testing.assert_allclose(_frames(after, row), expected, atol=5e-3, rtol=2e-3)
    assert not np.allclose(_frames(after, row).mean(0), 0, atol=0.05)  # not its own statistics
    np.testing.assert_array_equal(data.modalities["audio"].data.numpy(), before.data.numpy())  # input untouched


def test_fit_records_transductive_eval_reapplies_and_it_helps(voices, tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app

    plain = fit(voices, head="logreg", split="kfold-speaker:4", quiet=True)
    out = tmp_path / "speaker"
    normed = fit(voices, head="logreg", split="kfold-speaker:4", normalize="speaker", out=out, quiet=True)
    assert normed.metrics["uar"] > plain.metrics["uar"] + 0.1, (plain.metrics["uar"], normed.metrics["uar"])
    for name in ("config.json", "metrics.json"):
        record = json.loads((out / name).read_text())["normalize"]
        assert record["mode"] == "speaker" and record["transductive"] is True and "transductive" in record["note"]
    assert plain.record.normalize is None and "normalize" not in plain.metrics
    again = evaluate(out)
    np.testing.assert_allclose(again.predictions.probs, normed.predictions.probs, atol=1e-6)
    assert again.metrics["normalize"]["transductive"] is True

    runner = CliRunner()
    done = runner.invoke(app, ["fit", str(voices), "--head", "svm", "--split", "kfold-speaker:4", "--normalize", "speaker",
                               "--out", str(tmp_path / "cli")])
    assert done.exit_code == 0, done.output
    assert "UAR" in done.output and "transductive" in done.output
    done = runner.invoke(app, ["eval", str(tmp_path / "cli")])
    assert done.exit_code == 0 and "transductive" in done.output, done.output


def test_bad_input_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app

    anonymous = tmp_path / "anonymous.h5"
    make_synthetic_cache(anonymous, shapes={"audio": (1, 4)}, speaker_ids=False, speakers=2, clips_per_speaker_class=2)
    with pytest.raises(EmoError, match="speaker id"):
        fit(anonymous, head="logreg", normalize="speaker", quiet=True)
    with pytest.raises(EmoError, match="--normalize.*one of none, speaker"):
        fit(anonymous, head="logreg", normalize="speakers", quiet=True)
    done = CliRunner().invoke(app, ["fit", str(anonymous), "--head", "audio", "--normalize", "speaker",
                                    "--out", str(tmp_path / "x")])
    lines = done.output.strip().splitlines()
    assert done.exit_code == 1 and len(lines) == 1 and str(anonymous) in lines[0] and "speaker id" in lines[0], done.output


def test_a_test_cache_is_normalised_by_its_own_speakers(voices, tmp_path):
    other = tmp_path / "other.h5"  # another "corpus": same classes and voices' spread, other noise and clips
    make_synthetic_cache(other, shapes={"audio": (1, 6)}, signal=0.25, speaker_shift=3.0, speakers=8,
                         clips_per_speaker_class=3, frames=(20, 40), id_prefix="d", noise_seed=7)
    out = tmp_path / "cross"
    result = fit(voices, head="logreg", normalize="speaker", test_cache=str(other), out=out, quiet=True)
    assert result.metrics["normalize"]["transductive"] is True
    assert result.metrics["uar"] > 0.7, result.metrics["uar"]
    again = evaluate(out, other)
    assert again.metrics["normalize"]["mode"] == "speaker"
    np.testing.assert_allclose(again.predictions.probs, result.predictions.probs, atol=1e-6)


def test_sweep_passes_normalize_to_every_run(voices, tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app

    done = CliRunner().invoke(app, ["sweep", str(voices), "--head", "logreg,svm", "--grid", "C=0.5,2", "--normalize", "speaker",
                                    "--split", "kfold-speaker:4", "--out", str(tmp_path / "sweep")])
    assert done.exit_code == 0, done.output
    configs = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/config.json")]
    assert len(configs) == 4 and all(c["normalize"]["transductive"] for c in configs)
