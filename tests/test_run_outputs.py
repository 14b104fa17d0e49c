"""Outputs are checked before the work starts, and a failed save leaves no partial run behind."""

from __future__ import annotations

import json

import pytest

from emo.errors import EmoError
from emo.fusion import fit, sweep
from synthetic_cache import make_synthetic_cache

QUICK = {"epochs": 1, "lr": 1e-3, "quiet": True, "head_params": {"d_model": 8, "heads": 2, "blocks": 1, "ffn": 8}}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("outputs") / "c.h5"
    make_synthetic_cache(path, shapes={"audio": (1, 8)}, speakers=3, clips_per_speaker_class=2)
    return path


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a folder")
    return path


def test_out_under_a_file_fails_before_the_cache_is_read(tmp_path, a_file):
    with pytest.raises(EmoError, match=r"run/deeper: cannot write the run directory: .*notes.txt is a file"):
        fit(tmp_path / "absent.h5", head="audio", out=a_file / "run" / "deeper", **QUICK)
    with pytest.raises(EmoError, match="notes.txt: run directory exists and is not a directory"):
        fit(tmp_path / "absent.h5", head="audio", out=a_file, **QUICK)


def test_sweep_checks_its_folder_and_every_run_folder_first(cache, tmp_path, a_file):
    with pytest.raises(EmoError, match="cannot write the sweep folder"):
        sweep(cache, heads=["audio"], out=a_file / "s", epochs=1)
    out = tmp_path / "sweep"
    fit(cache, head="audio", out=out / "audio-lr=0.002-seed0", **QUICK)
    with pytest.raises(EmoError, match=r"audio-lr=0.002-seed0: already holds a run"):
        sweep(cache, heads=["audio"], out=out, grid={"lr": [1e-3, 2e-3]}, epochs=1)
    assert not (out / "audio-lr=0.001-seed0").exists()  # the first point was not run either


def test_a_failed_save_leaves_nothing_behind(cache, tmp_path, monkeypatch):
    import emo.fusion.report

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(emo.fusion.report, "plot_curves", broken)
    out = tmp_path / "runs" / "new"
    with pytest.raises(EmoError, match="new: cannot write the run directory \\(No space left on device\\)"):
        fit(cache, head="audio", out=out, **QUICK)
    assert not out.exists() and list((tmp_path / "runs").iterdir()) == []  # no staging folder either


def test_a_failed_overwrite_keeps_the_old_run(cache, tmp_path, monkeypatch):
    import emo.fusion.report

    out = tmp_path / "run"
    fit(cache, head="audio", out=out, **QUICK)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(emo.fusion.report, "plot_confusion", broken)
    with pytest.raises(RuntimeError):
        fit(cache, head="audio", out=out, overwrite=True, **{**QUICK, "seed": 1})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_overwrite_replaces_the_run_and_its_old_folds(cache, tmp_path):
    out = tmp_path / "run"
    fit(cache, head="audio", out=out, split="kfold:2", **QUICK)
    fit(cache, head="audio", out=out, overwrite=True, **QUICK)
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["model.safetensors"]
    assert json.loads((out / "config.json").read_text())["weights"] == ["model.safetensors"]


def test_eval_json_path_is_checked_before_scoring(cache, tmp_path, a_file, monkeypatch):
    from typer.testing import CliRunner

    import emo.fusion
    from emo.cli import app

    def never(*args, **kwargs):
        raise AssertionError("scored before checking --json")

    monkeypatch.setattr(emo.fusion, "evaluate", never)
    for target, message in ((a_file / "m.json", "is a file, not a directory"), (tmp_path, "exists and is a directory")):
        result = CliRunner().invoke(app, ["eval", str(tmp_path / "run"), "--json", str(target)])
        assert result.exit_code == 1 and message in result.output and len(result.output.strip().splitlines()) == 1
