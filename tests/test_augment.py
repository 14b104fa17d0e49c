"""Class-balanced loss and training-only augmentation (time / feature masking, mixup)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emo.errors import EmoError
from emo.fusion import evaluate, fit
from emo.fusion.augment import mask_features, mask_time, mix_batch
from emo.fusion.train import class_weights
from synthetic_cache import make_synthetic_cache

SMALL = {"d_model": 16, "heads": 2, "blocks": 1, "ffn": 32}
FAST = {"epochs": 4, "lr": 1e-3, "batch_size": 16, "quiet": True, "patience": None, "head_params": SMALL}
OFF = {"time_mask": 0.0, "feature_mask": 0.0, "mixup": 0.0}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("aug") / "synthetic.h5"
    make_synthetic_cache(path, shapes={"audio": (2, 8)}, signal=0.6)
    return path


def test_time_mask_hides_one_span_of_real_frames_and_keeps_one():
    rng = np.random.default_rng(0)
    mask = torch.arange(10) < torch.tensor([[10], [6], [1]])
    for _ in range(50):
        hidden = mask_time(mask, 0.9, rng)
        assert not (hidden & ~mask).any()  # padding never becomes real
        assert (hidden.sum(1) >= 1).all()  # every clip keeps a frame
        assert (hidden.sum(1) >= mask.sum(1) - torch.floor(0.9 * mask.sum(1))).all()
        # The hidden frames form one contiguous span per clip.
        for row in (mask & ~hidden).int():
            changes = (row[1:] != row[:-1]).sum()
            assert changes <= 2
    assert torch.equal(mask_time(mask, 0.0, rng), mask)


def test_feature_mask_sets_one_band_to_the_training_mean():
    rng = np.random.default_rng(1)
    x = torch.randn(4, 5, 2, 10)
    fill = torch.full((2, 10), 7.0)
    out = mask_features(x, fill, 0.5, rng)
    changed = (out != x).any(dim=1).any(dim=1)  # (B, D) dims changed per clip
    assert (out[~torch.isclose(out, x)] == 7.0).all()
    for row in changed.int():
        assert row.sum() <= 5 and (row[1:] != row[:-1]).sum() <= 2


def test_mixup_mixes_real_frames_and_keeps_each_clips_mask():
    rng = np.random.default_rng(2)
    x = torch.randn(6, 4, 1, 3)
    mask = torch.arange(4) < torch.tensor([[4], [2], [3], [4], [1], [4]])
    (mixed, mixed_mask), partner, lam = (lambda b, p, l: (b["audio"], p, l))(*mix_batch({"audio": (x, mask)}, 0.4, rng))
    assert 0.5 <= lam <= 1.0 and torch.equal(mixed_mask, mask)
    both = mask & mask[partner]
    torch.testing.assert_close(mixed[both], (lam * x + (1 - lam) * x[partner])[both])
    torch.testing.assert_close(mixed[~both], x[~both])


def test_balanced_class_weights():
    weights = class_weights(np.array([0, 0, 0, 1, 2, 2]), 4, "balanced", "cpu")
    # n / (K n_c) over the 3 classes present; the absent class keeps weight 1.
    torch.testing.assert_close(weights, torch.tensor([6 / 9, 6 / 3, 6 / 6, 1.0]))
    assert class_weights(np.array([0, 1]), 2, "none", "cpu") is None


def test_augmentation_runs_in_training_only_and_changes_training(cache, tmp_path, monkeypatch):
    import emo.fusion.train as train

    calls = {"augment": 0, "mix": 0}
    for name, key in (("augment_batch", "augment"), ("mix_batch", "mix")):
        original = getattr(train, name)

        def counted(*args, _original=original, _key=key, **kwargs):
            calls[_key] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(train, name, counted)
    plain = fit(cache, head="audio", seed=0, **OFF, **FAST)
    assert calls == {"augment": 0, "mix": 0}
    options = dict(time_mask=0.3, feature_mask=0.3, mixup=0.4, class_weights="balanced")
    augmented = fit(cache, head="audio", seed=0, out=tmp_path / "run", **options, **FAST)
    # One call per training step, none for validation or test batches.
    steps = FAST["epochs"] * -(-augmented.metrics["n_train"] // FAST["batch_size"])
    assert calls == {"augment": steps, "mix": steps}
    losses = [r["train_loss"] for r in augmented.histories[0]]
    assert losses != [r["train_loss"] for r in plain.histories[0]]
    assert augmented.record.options["mixup"] == 0.4
    # Scoring is deterministic: the saved run rescored twice gives the fit's own test probabilities.
    first, second = evaluate(tmp_path / "run"), evaluate(tmp_path / "run")
    assert np.array_equal(first.predictions.probs, second.predictions.probs)
    np.testing.assert_allclose(first.predictions.probs, augmented.predictions.probs, atol=1e-6)
    assert calls == {"augment": steps, "mix": steps}
    # Each option alone changes training too.
    for option in options.items():
        single = fit(cache, head="audio", seed=0, **{**OFF, **dict([option])}, **{**FAST, "epochs": 1})
        assert single.histories[0][0]["train_loss"] != plain.histories[0][0]["train_loss"], option


@pytest.mark.parametrize(
    "option,message",
    [({"class_weights": "inverse"}, "--class-weights='inverse': expected one of none, balanced"),
     ({"time_mask": 1.5}, "--time-mask=1.5: expected a number in [0, 1)"),
     ({"mixup": -1}, "--mixup=-1")],
)
def test_bad_augmentation_options_are_one_line_errors(cache, option, message):
    with pytest.raises(EmoError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        fit(cache, head="audio", **option, **FAST)


def test_unset_options_take_the_heads_own_defaults_and_are_recorded():
    from emo.fusion import FitOptions
    from emo.fusion.heads import HEADS
    from emo.fusion.options import FALLBACKS

    audio = FitOptions(head="audio")
    assert {k: getattr(audio, k) for k in FALLBACKS} == {**FALLBACKS, **HEADS["audio"].fit_defaults}
    assert audio.mixup > 0 and audio.lr == HEADS["audio"].fit_defaults["lr"]
    late = FitOptions(head="late")
    assert {k: getattr(late, k) for k in FALLBACKS} == FALLBACKS  # augmentation off, lr 1e-4, batch 32
    assert FitOptions(head="audio", mixup=0.0, lr=5e-4).mixup == 0.0  # what the user gives wins


def test_cli_takes_its_defaults_from_fit_options(cache, tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app
    from emo.fusion.options import default

    out = CliRunner().invoke(app, ["fit", "--help"], env={"COLUMNS": "250"})
    assert "--class-weights" in out.output and "--mixup" in out.output
    assert f"[default: {default('epochs')}]" in out.output
    out = CliRunner().invoke(app, ["fit", str(cache), "--head", "audio", "--out", str(tmp_path / "r"),
                                   "--class-weights", "inverse"])
    assert out.exit_code == 1 and "expected one of none, balanced" in out.output
    assert len(out.output.strip().splitlines()) == 1
