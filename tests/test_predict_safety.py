"""A run is data, not instructions: `emo predict` checks the backbones a run names before loading
anything, never hashes a folder that is not a model folder, and never downloads unless asked."""

from __future__ import annotations

import json
import shutil

import pytest

from emo.errors import EmoError
from emo.fusion import fit
from emo.predictor import Predictor
from synthetic_cache import make_synthetic_cache

QUICK = {"epochs": 1, "quiet": True, "head_params": {"d_model": 8, "heads": 2, "blocks": 1, "ffn": 8}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    make_synthetic_cache(root / "c.h5", shapes={"audio": (1, 8)}, speakers=3, clips_per_speaker_class=2)
    fit(root / "c.h5", head="audio", out=root / "run", **QUICK)
    return root / "run"


@pytest.fixture
def crafted(trained, tmp_path, monkeypatch):
    """A copy of the run whose audio fingerprint (and recorded options) say what the test wants;
    loading its heads is a failure: every refusal must come before."""
    import emo.fusion.run_dir

    run = tmp_path / "run"
    shutil.copytree(trained, run)

    def craft(backbone, revision="sha256:00", recorded=None):
        config = json.loads((run / "config.json").read_text())
        config["cache"]["fingerprints"]["audio"].update(backbone=backbone, revision=revision)
        config["cache"]["extract_options"] = {"audio": recorded or {"audio_backbone": backbone}}
        (run / "config.json").write_text(json.dumps(config))
        return run

    def no_heads(self):
        raise AssertionError("the run's heads were loaded before its backbones were checked")

    monkeypatch.setattr(emo.fusion.run_dir.SavedRun, "heads", no_heads)
    return craft


@pytest.fixture
def hub_calls(monkeypatch):
    """Every snapshot_download call (nothing reaches the network), with its local_files_only flag."""
    import huggingface_hub

    calls = []

    def fake(repo_id, **kwargs):
        calls.append((repo_id, kwargs.get("local_files_only")))
        raise FileNotFoundError(f"{repo_id} is not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    return calls


def test_an_uncached_hub_backbone_is_refused_without_downloading(crafted, hub_calls, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # even where the hub is reachable
    run = crafted("some-org/some-model")
    with pytest.raises(EmoError, match=r"not in the local Hugging Face cache.*--allow-download"):
        Predictor(run)
    assert hub_calls and all(local_only for _, local_only in hub_calls)


def test_a_folder_that_is_not_a_model_folder_is_never_hashed(crafted, tmp_path, monkeypatch):
    import emo.extract.encoders.hub

    def never(path):
        raise AssertionError(f"hashed {path}")

    monkeypatch.setattr(emo.extract.encoders.hub, "hash_folder", never)
    home = tmp_path / "home"
    (home / "documents").mkdir(parents=True)
    (home / "documents" / "weights.bin").write_bytes(b"private")
    with pytest.raises(EmoError, match="not a model folder \\(no config.json at its top\\); refusing to read it"):
        Predictor(crafted(str(home)))
    with pytest.raises(EmoError, match="is a file, not a model folder"):
        Predictor(crafted(str(home / "documents" / "weights.bin")))


@pytest.mark.parametrize("name", ["org/../../x", "a/b/c", "", "org--x/y"])
def test_names_that_are_no_backbone_are_refused(crafted, hub_calls, name):
    with pytest.raises(EmoError, match="neither a built-in backbone|not a backbone name"):
        Predictor(crafted(name))
    assert hub_calls == []


def test_a_moved_model_folder_is_named(crafted, hub_calls, tmp_path):
    with pytest.raises(EmoError, match="no such model folder here"):
        Predictor(crafted(str(tmp_path / "moved-model")))
    assert hub_calls == []


def test_recorded_options_must_name_the_fingerprints_backbone(crafted, hub_calls):
    run = crafted("some-org/some-model", recorded={"audio_backbone": "other-org/other-model"})
    with pytest.raises(EmoError, match="recorded options name another backbone than its fingerprint \\('some-org/some-model'\\)"):
        Predictor(run)
    assert hub_calls == []


def test_a_cached_snapshot_of_other_weights_is_refused_before_loading(crafted, monkeypatch, tmp_path):
    import emo.extract.encoders.hub

    snapshot = tmp_path / "hub" / "snapshots" / "abc123abc123"
    monkeypatch.setattr(emo.extract.encoders.hub, "cached_snapshot", lambda name: str(snapshot))
    with pytest.raises(EmoError, match="the local copy is snapshot abc123abc123, the run was trained on def456"):
        Predictor(crafted("some-org/some-model", revision="def456def456"))


def test_downloads_happen_only_when_asked(trained, tmp_path, monkeypatch, hub_calls):
    import emo.extract.encoders.hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    config = json.loads((run / "config.json").read_text())
    config["cache"]["fingerprints"]["audio"].update(backbone="some-org/some-model", revision="abc123")
    config["cache"]["extract_options"] = {"audio": {"audio_backbone": "some-org/some-model"}}
    (run / "config.json").write_text(json.dumps(config))
    # The check passes (as if cached at the trained snapshot); what the extractor build may do is the question.
    monkeypatch.setattr(emo.extract.encoders.hub, "cached_snapshot", lambda name: str(tmp_path / "abc123"))
    with pytest.raises(EmoError):
        Predictor(run)
    assert hub_calls == [("some-org/some-model", True)]
    hub_calls.clear()
    with pytest.raises(EmoError):
        Predictor(run, allow_download=True)
    assert hub_calls == [("some-org/some-model", False)]


def test_cli_predict_refusal_is_one_line(crafted, hub_calls, tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app

    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF")
    result = CliRunner().invoke(app, ["predict", str(crafted("some-org/some-model")), str(clip)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "--allow-download" in lines[0], result.output
