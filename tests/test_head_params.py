"""Head hyperparameters and fit options are validated once, against their declarations, before
anything is read or built: from --set, sweep --grid, the Python API and saved run configs."""

from __future__ import annotations

import pytest

from emo.errors import EmoError
from emo.fusion import fit, sweep
from emo.fusion.fit import FitOptions
from emo.fusion.heads import HEADS, Head, InputSpec, Requires, build_head
from emo.fusion.heads.registry import MAX_HEAD_VALUES, check_hparams, register_head
from emo.fusion.params import Param
from synthetic_cache import make_synthetic_cache

AUDIO = {"audio": InputSpec("audio", "features", (2, 8))}
AV = {**AUDIO, "faces": InputSpec("faces", "faces", (16, 16, 3))}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("params") / "tiny.h5"
    make_synthetic_cache(path, shapes={"audio": (1, 8)}, speakers=3, clips_per_speaker_class=2)
    return path


@pytest.mark.parametrize(
    "head,inputs,hparams,message",
    [
        ("audio", AUDIO, {"heads": 3}, r"d_model=64 is not divisible by heads=3"),
        ("audio", AUDIO, {"dropout": 5}, r"dropout=5: expected a number in \[0, 1\)"),
        ("audio", AUDIO, {"dropout": -0.1}, r"dropout=-0.1: expected a number in \[0, 1\)"),
        ("audio", AUDIO, {"d_model": "abc"}, r"d_model='abc': expected an integer in \[1, 8192\]"),
        ("audio", AUDIO, {"d_model": 2.5}, r"d_model=2.5: expected an integer"),
        ("audio", AUDIO, {"d_model": True}, r"d_model=True: expected an integer"),
        ("audio", AUDIO, {"blocks": -1}, r"blocks=-1: expected an integer in \[0, 64\]"),
        ("cross_attention", AV, {"blocks": 0}, r"blocks=0: expected an integer in \[1, 64\]"),
        ("audio", AUDIO, {"ffn": float("inf")}, r"ffn=inf"),
        ("audio", AUDIO, {"d_model": None}, r"d_model=None"),
        ("late", {**AUDIO, "text": InputSpec("text", "features", (1, 4))}, {"combine": "max"}, r"combine='max': expected one of mean, learned"),
        ("visual", {"faces": AV["faces"]}, {"face_pool": "max"}, r"face_pool='max': expected one of mean, cls"),
        ("visual", {"faces": AV["faces"]}, {"face_flip": "yes"}, r"face_flip='yes': expected true or false"),
        ("visual", {"faces": AV["faces"]}, {"face_dim": 30, "face_heads": 4}, r"face_dim=30 is not divisible"),
        ("concat_mlp", AV, {"hidden": 0}, r"hidden=0: expected an integer in \[1, 65536\]"),
        ("cross_attention", AV, {"d_model": 100}, r"d_model=100 is not divisible by heads=8"),
    ],
)
def test_bad_values_name_the_head_the_value_and_the_accepted_range(head, inputs, hparams, message):
    with pytest.raises(EmoError, match=rf"head '{head}': {message}"):
        build_head(head, inputs, 4, **hparams)
    with pytest.raises(EmoError, match=message):  # the same check without building anything
        check_hparams(head, hparams)


def test_good_values_are_coerced_to_the_declared_type():
    head = build_head("audio", AUDIO, 4, d_model=16.0, heads=2, blocks=1, ffn=32, dropout=0)
    assert head.hparams["d_model"] == 16 and isinstance(head.hparams["d_model"], int)
    assert isinstance(head.hparams["dropout"], float)
    assert build_head("visual", {"faces": AV["faces"]}, 4, face_size=None, d_model=16, heads=2).hparams["face_size"] is None


def test_every_registered_head_declares_every_hyperparameter():
    for cls in HEADS.values():
        assert set(cls.defaults) == set(cls.params), cls.name
        check_hparams(cls.name, {})  # the defaults pass their own declarations

    class Undeclared(Head):
        name = "undeclared_test_head"
        description = "x"
        requires = Requires(("audio",), 1, 1)
        defaults = {"width": 3}

    with pytest.raises(TypeError, match="declare width"):
        register_head(Undeclared)
    assert "undeclared_test_head" not in HEADS

    class BadDefault(Undeclared):
        name = "bad_default_test_head"
        params = {"width": Param(int, 4, 8)}

    with pytest.raises(EmoError, match=r"width=3: expected an integer in \[4, 8\]"):
        register_head(BadDefault)


def test_oversized_head_is_refused_before_allocating():
    with pytest.raises(EmoError, match=r"M parameters exceeds the limit of 250 M"):
        build_head("audio", AUDIO, 4, d_model=8192, heads=8, blocks=64, ffn=65536)
    # Huge inputs (a crafted row_shape) are counted too: the per-dimension feature statistics alone.
    with pytest.raises(EmoError, match="exceeds the limit"):
        build_head("audio", {"audio": InputSpec("audio", "features", (1000, 1_000_000))}, 4)
    assert MAX_HEAD_VALUES > sum(p.numel() for p in build_head("cross_attention", AV, 4).parameters())


@pytest.mark.parametrize("n_classes", [1, "4", 4.0, True, 10**9])
def test_n_classes_must_be_a_sane_integer(n_classes):
    with pytest.raises(EmoError, match="n_classes must be an integer"):
        build_head("audio", AUDIO, n_classes)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"lr": float("inf")}, r"--lr=inf: expected a number in \(0, 10\]"),
        ({"lr": float("nan")}, r"--lr=nan"),
        ({"lr": 0}, r"--lr=0"),
        ({"val_fraction": float("nan")}, r"--val-fraction=nan"),
        ({"weight_decay": -1.0}, r"--weight-decay=-1.0"),
        ({"grad_clip": float("inf")}, r"--grad-clip=inf"),
        ({"warmup": 2.0}, r"--warmup=2.0: expected a number in \[0, 1\]"),
        ({"modality_dropout": 1.0}, r"--modality-dropout=1.0"),
        ({"epochs": 0}, r"--epochs=0"),
        ({"seed": -1}, r"--seed=-1"),
        ({"order": "tall"}, r"--order='tall': expected one of random, short, long"),
        ({"head_params": {"d_model": "abc"}}, r"head 'audio': d_model='abc'"),
        ({"head_params": {"width": 3}}, r"unknown hyperparameter\(s\) width"),
    ],
)
def test_fit_options_are_checked_for_type_finiteness_and_range(options, message):
    with pytest.raises(EmoError, match=message):
        FitOptions(head="audio", **options)


def test_fit_refuses_bad_values_before_reading_the_cache(tmp_path):
    # The cache does not exist: the option error must come first.
    with pytest.raises(EmoError, match="dropout=5"):
        fit(tmp_path / "absent.h5", head="audio", head_params={"dropout": 5}, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_sweep_checks_every_grid_point_before_the_first_run(cache, tmp_path):
    out = tmp_path / "sweep"
    with pytest.raises(EmoError, match=r"sweep point audio heads=3: head 'audio': d_model=16 is not divisible by heads=3"):
        sweep(cache, heads=["audio"], out=out, grid={"heads": [2, 3]}, head_params={"d_model": 16}, epochs=1)
    with pytest.raises(EmoError, match=r"sweep point audio lr=inf: --lr=inf"):
        sweep(cache, heads=["audio"], out=out, grid={"lr": [1e-3, float("inf")]}, epochs=1)
    with pytest.raises(EmoError, match=r"--set widht: not a hyperparameter of audio"):
        sweep(cache, heads=["audio"], out=out, head_params={"widht": 3}, epochs=1)
    assert not out.exists()  # nothing was started


@pytest.mark.parametrize(
    "args,message",
    [
        (["--set", "heads=3"], "d_model=64 is not divisible by heads=3"),
        (["--set", "dropout=5"], r"dropout=5: expected a number in [0, 1)"),
        (["--set", "d_model=abc"], "d_model='abc': expected an integer in [1, 8192]"),
        (["--set", "widht=3"], "unknown hyperparameter(s) widht"),
        (["--set", "novalue"], "--set 'novalue': expected KEY=VALUE"),
        (["--lr", "inf"], "--lr=inf: expected a number in (0, 10]"),
    ],
)
def test_cli_fit_bad_values_are_one_line(cache, tmp_path, args, message):
    from typer.testing import CliRunner

    from emo.cli import app

    result = CliRunner().invoke(app, ["fit", str(cache), "--head", "audio", "--out", str(tmp_path / "r"), *args])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output, result.output
    assert not (tmp_path / "r").exists()


def test_cli_sweep_grid_bad_value_is_one_line(cache, tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app

    result = CliRunner().invoke(
        app, ["sweep", str(cache), "--head", "audio", "--grid", "dropout=0.1,5", "--out", str(tmp_path / "s")]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: sweep point audio dropout=5: head 'audio': dropout=5: expected a number in [0, 1)"
    ]
