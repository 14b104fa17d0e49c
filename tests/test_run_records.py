"""Damaged, older or crafted run directories, and diverged fits: one-line errors, checked before
anything is built; NaN never passes as a result."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from emo.errors import EmoError
from emo.fusion import evaluate, fit, load_run
from emo.fusion.run_dir import load_weights
from synthetic_cache import make_synthetic_cache

TINY = {"d_model": 8, "heads": 2, "blocks": 1, "ffn": 8}
QUICK = {"epochs": 2, "lr": 1e-3, "batch_size": 16, "quiet": True, "head_params": TINY}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    cache = root / "c.h5"
    make_synthetic_cache(cache, shapes={"audio": (1, 8)}, speakers=4, clips_per_speaker_class=2)
    fit(cache, head="audio", out=root / "run", **QUICK)
    fit(cache, head="audio", out=root / "kfold", split="kfold:3", **QUICK)
    other = root / "other.h5"
    make_synthetic_cache(other, shapes={"audio": (1, 8)}, speakers=2, clips_per_speaker_class=2, seed=5)
    return {"cache": cache, "run": root / "run", "kfold": root / "kfold", "other": other}


@pytest.fixture
def copy(made, tmp_path):
    def _copy(name="run"):
        target = tmp_path / name
        shutil.copytree(made[name], target)
        return target

    return _copy


def edit_config(run, change):
    config = json.loads((run / "config.json").read_text())
    change(config)
    (run / "config.json").write_text(json.dumps(config))


def rewrite_weights(path, change_tensors=None, metadata=None):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    tensors = load_file(str(path))
    if change_tensors:
        change_tensors(tensors)
    save_file(tensors, str(path), metadata={**meta, **(metadata or {})})


def test_a_good_run_loads_and_scores(made):
    saved = load_run(made["kfold"])
    assert saved.n_folds == 3 and len(saved.heads()) == 3
    assert evaluate(made["run"]).metrics["uar"] >= 0


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda c: c.pop("classes"), r"missing key\(s\) classes"),
        (lambda c: c.pop("head"), r"missing key\(s\) head"),
        (lambda c: c.update(classes=c["classes"][:3]), "the head has 4 outputs but the run lists 3 classes"),
        (lambda c: c.update(classes=["a", "a", "b", "c"]), "classes must be a list of at least 2 distinct names"),
        (lambda c: c.update(modalities="audio"), "modalities must be a non-empty list"),
        (lambda c: c.update(modalities=["smell"]), "unknown modality 'smell'"),
        (lambda c: c["head"].update(n_classes="4"), "the head has '4' outputs"),
        (lambda c: c["head"].update(name="nope"), "unknown head 'nope'"),
        (lambda c: c["head"]["hparams"].update(dropout=5), r"dropout=5: expected a number in \[0, 1\)"),
        (lambda c: c["head"]["hparams"].update(d_model=8192, ffn=65536, blocks=64), "exceeds the limit of 250 M"),
        (lambda c: c["head"]["inputs"]["audio"].update(row_shape=[100000, 100000]), "exceeds the limit"),
        (lambda c: c["head"]["inputs"]["audio"].update(row_shape=["x", 8]), "row_shape must be a list of integers"),
        (lambda c: c["cache"].update(fingerprints=[]), "cache.fingerprints must hold an object"),
        (lambda c: c["cache"].pop("path"), "cache.path must be a string"),
        (lambda c: c.update(test_cache={"path": 3}), "test_cache must be an object"),
        (lambda c: c.update(normalize="speaker"), "normalize must be null or an object with a mode"),
        (lambda c: c["cache"].update(layers={"audio": "last"}), "cache.layers must map"),
        (lambda c: c.update(options={"modality_dropout": "lots"}), "options.modality_dropout"),
        (lambda c: c.update(options={"max_frames": 0}), "options.max_frames must be a positive integer"),
        (lambda c: c.update(weights=["model-fold0.safetensors"]), "weights must be model.safetensors"),
        (lambda c: c.update(weights=["../../etc/passwd"]), "weights must be model.safetensors"),
    ],
)
def test_damaged_config_is_refused_in_one_line(copy, change, message):
    run = copy()
    edit_config(run, change)
    with pytest.raises(EmoError, match=message) as info:
        evaluate(run)
    assert "\n" not in str(info.value) and str(run / "config.json") in str(info.value)


def test_config_that_is_not_a_json_object(copy):
    run = copy()
    (run / "config.json").write_text("[1, 2]")
    with pytest.raises(EmoError, match="expected a JSON object, got list"):
        load_run(run)
    (run / "config.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(EmoError, match="damaged run file"):
        load_run(run)


def test_crafted_huge_head_is_refused_without_allocating(copy):
    import resource

    run = copy()
    edit_config(run, lambda c: c["head"]["hparams"].update(d_model=8192, ffn=65536, blocks=64))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(EmoError, match=r"\d+ M parameters exceeds"):
        load_run(run)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB: far below the ~300 GB asked


@pytest.mark.parametrize(
    "change,metadata,message",
    [
        (None, {"head_config": "{not json"}, "head config in the file's metadata is not JSON"),
        (None, {"head_config": json.dumps({"name": "audio"})}, "differs from the run's config.json"),
        (lambda t: t.update({"classifier.weight": torch.zeros(5, t["classifier.weight"].shape[1])}), None,
         r"wrong shape classifier.weight \(5, \d+\) \(the head has \(4, \d+\)\)"),
        (lambda t: t.update({"extra.weight": torch.zeros(2)}), None, "unexpected extra.weight"),
        (lambda t: t.pop("classifier.bias"), None, "missing classifier.bias"),
        (lambda t: t["classifier.weight"].fill_(float("nan")), None, r"non-finite weights \(NaN/inf\) in classifier.weight"),
    ],
)
def test_damaged_weights_are_refused(copy, change, metadata, message):
    run = copy()
    rewrite_weights(run / "model.safetensors", change, metadata)
    with pytest.raises(EmoError, match=message):
        evaluate(run)
    with pytest.raises(EmoError, match=message):
        load_weights(run / "model.safetensors", json.loads((run / "config.json").read_text())["head"])


def test_run_without_splits_takes_its_folds_from_the_weights(copy, made):
    run = copy("kfold")
    (run / "splits.json").unlink()
    saved = load_run(run)
    assert saved.n_folds == 3 and saved.splits == []
    with pytest.raises(EmoError, match="no splits.json"):
        evaluate(run)  # its own test split is unknown
    scored = evaluate(run, made["other"])  # another cache: every fold model scores every clip
    assert len(scored.predictions.ids) == 3 * len(set(scored.predictions.ids))


def test_older_run_without_a_weights_list_finds_its_files(copy):
    run = copy("kfold")
    edit_config(run, lambda c: c.pop("weights"))
    assert load_run(run).weights == [f"model-fold{k}.safetensors" for k in range(3)]
    (run / "model-fold1.safetensors").unlink()
    with pytest.raises(EmoError, match="weights must be model-fold0.safetensors"):
        load_run(run)


def test_splits_that_do_not_match_the_weights(copy):
    run = copy("kfold")
    splits = json.loads((run / "splits.json").read_text())
    (run / "splits.json").write_text(json.dumps(splits[:2]))
    with pytest.raises(EmoError, match=r"one split per weights file \(3\), got 2"):
        load_run(run)
    (run / "splits.json").write_text(json.dumps([{"train": 1}] * 3))
    with pytest.raises(EmoError, match="fold 0 must hold train, val and test"):
        load_run(run)


def test_runs_table_survives_odd_metrics(copy, tmp_path):
    from emo.fusion import summarize_runs

    run = copy()
    (run / "metrics.json").write_text(json.dumps({"uar": "high", "accuracy": 0.5}))
    (row,) = summarize_runs([run])
    assert "uar" not in row and row["accuracy"] == 0.5


def test_cli_on_damaged_runs_is_one_line(copy, made):
    from typer.testing import CliRunner

    from emo.cli import app

    run = copy()
    rewrite_weights(run / "model.safetensors", lambda t: t.update({"extra.weight": torch.zeros(2)}))
    for args in (["eval", str(run)], ["predict", str(run), str(made["cache"])]):
        result = CliRunner().invoke(app, args)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output


def test_emo_runs_lists_the_sound_runs_and_names_the_damaged_one(copy, tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app
    from emo.fusion import summarize_runs

    good, bad = copy("run"), copy("kfold")
    (bad / "config.json").write_text("{not json")
    with pytest.raises(EmoError, match="kfold/config.json: damaged run file"):
        summarize_runs([tmp_path])  # the library call still refuses unless asked to collect
    damaged: list[str] = []
    assert [r["run"] for r in summarize_runs([tmp_path], damaged)] == ["run"] and len(damaged) == 1
    result = CliRunner().invoke(app, ["runs", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "audio" in result.output and "skipped:" in result.output and "kfold/config.json: damaged" in result.output
    shutil.rmtree(good)
    result = CliRunner().invoke(app, ["runs", str(tmp_path)])
    assert result.exit_code == 1 and result.output.strip().count("\n") == 0 and "damaged run file" in result.output

# -- NaN and divergence ----------------------------------------------------------------------
def test_non_finite_features_stop_the_fit_before_training(tmp_path):
    cache = tmp_path / "nan.h5"
    make_synthetic_cache(cache, shapes={"audio": (1, 8)}, speakers=3, clips_per_speaker_class=2)
    with h5py.File(cache, "r+") as f:  # as an older emo (or a diverged encoder) could have written it
        data = f["audio"]["data"]
        data[3] = np.full(data.shape[1:], np.inf, dtype=data.dtype)
    with pytest.raises(EmoError, match=r"nan.h5.*audio holds non-finite values \(NaN/inf\)"):
        fit(cache, head="audio", out=tmp_path / "run", split="kfold:2", **QUICK)
    assert not (tmp_path / "run").exists()


def test_a_loss_that_turns_nan_stops_the_fit_naming_the_epoch(made, tmp_path):
    from emo.fusion import load_data
    from emo.fusion.heads import build_head
    from emo.fusion.train import TrainSettings, train_fold

    data = load_data(made["cache"], ["audio"])
    head = build_head("audio", data.inputs(["audio"]), 4, **TINY)
    rows = np.arange(len(data))

    def poison(record):  # after epoch 1, as a too-high learning rate would do
        with torch.no_grad():
            head.classifier.weight.fill_(float("nan"))

    with pytest.raises(EmoError, match=r"training diverged: the training loss is nan at epoch 2 \(peak lr 0.001\)"):
        train_fold(head, data, ["audio"], data.labels, rows, rows[:0], TrainSettings(epochs=3, lr=1e-3), torch.device("cpu"),
                   np.random.default_rng(0), poison)


def test_stored_tensors_are_bounded_in_size_before_loading(copy, monkeypatch):
    import emo.fusion.heads.registry as registry

    run = copy()
    rewrite_weights(run / "model.safetensors", lambda t: t.update({"extra.weight": torch.zeros(100)}))
    config = json.loads((run / "config.json").read_text())["head"]
    size = sum(t.numel() for t in load_weights(copy("kfold") / "model-fold0.safetensors", config).state_dict().values())
    monkeypatch.setattr(registry, "MAX_HEAD_VALUES", size)  # the real limit needs a file of GBs to exceed
    with pytest.raises(EmoError, match=rf"{size / 1e6:.0f} M stored values exceeds the limit"):
        load_weights(run / "model.safetensors", config)


def test_the_run_record_reads_back_as_written(made, tmp_path):
    from emo.fusion.run_record import RunRecord

    written = json.loads((made["kfold"] / "config.json").read_text())
    record = RunRecord.read(made["kfold"])
    assert record.weights == [f"model-fold{k}.safetensors" for k in range(3)]
    assert record.split.spec == "kfold:3" and record.split.folds == 3 and record.modalities == ["audio"]
    assert record.cache.fingerprints == written["cache"]["fingerprints"] and "row_shapes" not in written["cache"]
    record.write(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == written
