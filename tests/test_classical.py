"""The logreg / svm baseline heads: scikit-learn fits, arrays saved, the same runs as the neural heads.

What a user relies on: a saved baseline scores exactly as scikit-learn's own fitted model would
(probabilities and SVM decision values), loading a run never unpickles anything, and the heads go
through fit / eval / sweep / runs like any other.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from emo.cache import CacheReader
from emo.errors import EmoError
from emo.fusion import evaluate, fit, load_data, load_run, summarize_runs, sweep
from emo.fusion.train import infer_probabilities as head_predict
from synthetic_cache import make_synthetic_cache

SHAPES = {"audio": (2, 6), "text": (1, 4)}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    # A weak signal: probabilities stay away from 0 and 1, so a wrong formula shows.
    path = tmp_path_factory.mktemp("classical") / "weak.h5"
    make_synthetic_cache(path, shapes=SHAPES, signal=0.15, speakers=6, clips_per_speaker_class=4)
    return path


@pytest.fixture(scope="module")
def binary_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("classical") / "binary.h5"
    make_synthetic_cache(path, classes=("calm", "upset"), shapes={"audio": (1, 5)}, signal=0.2, seed=3)
    return path


def _numpy_statistics(path, ids, modalities, layers=None) -> np.ndarray:
    """mean and std (ddof 0) over each clip's frames, per input, computed straight from the cache file."""
    reader = CacheReader(path)
    columns = []
    for m in modalities:
        seqs = reader.load(m, clips=list(ids), layers=layers)
        rows = []
        for k in range(len(ids)):
            frames = seqs.data[seqs.bounds[k] : seqs.bounds[k + 1]].astype(np.float64).reshape(seqs.bounds[k + 1] - seqs.bounds[k], -1)
            rows.append(np.concatenate([frames.mean(0), frames.std(0)]))
        columns.append(np.stack(rows))
    return np.concatenate(columns, axis=1)


def _sklearn_model(head: str, x: np.ndarray, y: np.ndarray, **hp):
    """The model scikit-learn itself fits on these features, independently of emo's head code."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if head == "logreg":
        model = LogisticRegression(C=hp.get("C", 1.0), max_iter=1000, random_state=0)
    else:
        model = CalibratedClassifierCV(SVC(kernel="rbf", C=hp.get("C", 1.0), gamma="scale", random_state=0),
                                       method="sigmoid", ensemble=False, cv=5)
    return make_pipeline(StandardScaler(), model).fit(x, y)


@pytest.mark.parametrize("head", ["logreg", "svm"])
@pytest.mark.parametrize("which", ["multiclass", "binary"])
def test_saved_baseline_reproduces_sklearn(cache, binary_cache, tmp_path, head, which):
    path, modalities = (cache, ["audio", "text"]) if which == "multiclass" else (binary_cache, ["audio"])
    out = tmp_path / "run"
    result = fit(path, head=head, out=out, split="speaker", val_fraction=0.0, seed=0, quiet=True, head_params={"C": 2.0})
    assert result.record.modalities == modalities

    saved = load_run(out)
    (split,) = saved.splits
    data = load_data(path, modalities)
    index = {cid: i for i, cid in enumerate(data.ids)}
    train = np.array([index[c] for c in split["train"]])
    test = np.array([index[c] for c in split["test"]])
    x = _numpy_statistics(path, data.ids, modalities)
    reference = _sklearn_model(head, x[train], data.labels[train], C=2.0)

    (loaded,) = saved.heads()
    everything = np.arange(len(data))
    probs, _ = head_predict(loaded, data, everything, modalities, torch.device("cpu"), data.labels)
    expected = reference.predict_proba(x)
    assert np.mean((expected > 0.05) & (expected < 0.95)) > 0.1  # not saturated: the comparison has teeth
    np.testing.assert_allclose(probs, expected, atol=2e-6)
    assert (probs.argmax(1) == reference.predict(x)).all()
    if head == "svm":  # the one-vs-one decision values themselves, from the stored support vectors
        z = torch.from_numpy(reference[0].transform(x))
        svc = reference[-1].calibrated_classifiers_[0].estimator
        ovo = svc.decision_function(reference[0].transform(x)) if which == "binary" else None
        if ovo is None:
            svc.decision_function_shape = "ovo"
            ovo = svc.decision_function(reference[0].transform(x))
        ours = loaded.decision_function(z).numpy()
        np.testing.assert_allclose(ours.reshape(ovo.shape), ovo, atol=1e-9)
    # The run's predictions.csv holds the same test probabilities.
    np.testing.assert_allclose(result.predictions.probs, expected[test], atol=2e-6)


def test_run_directory_has_no_pickle_and_loads_without_unpickling(cache, tmp_path, monkeypatch):
    out = tmp_path / "svm"
    first = fit(cache, head="svm", out=out, split="kfold-speaker:3", quiet=True)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "metrics.json", "predictions.csv", "splits.json", "confusion.png", "curves.png"} <= names
    assert {f"model-fold{k}.safetensors" for k in range(3)} <= names
    for file in out.iterdir():
        assert file.suffix in (".json", ".csv", ".png", ".safetensors"), file
        assert not file.read_bytes().startswith(b"\x80")  # a pickle stream's first byte (PROTO)

    def refuse(*args, **kwargs):
        raise AssertionError("a run was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    again = evaluate(out)
    np.testing.assert_allclose(again.predictions.probs, first.predictions.probs, atol=1e-6)
    assert again.metrics["uar"] == pytest.approx(first.metrics["uar"])


def test_baselines_learn_and_take_layers(tmp_path):
    path = tmp_path / "layers.h5"
    make_synthetic_cache(path, shapes={"audio": (3, 8)}, signal=1.0)
    for head in ("logreg", "svm"):
        whole = fit(path, head=head, split="kfold-speaker:3", quiet=True)
        assert whole.metrics["uar"] > 0.7, whole.metrics
        assert whole.heads[0].n_features == 2 * 3 * 8
        one = fit(path, head=head, split="kfold-speaker:3", quiet=True, layers=["last"])
        assert one.heads[0].n_features == 2 * 8 and one.record.cache.layers["audio"] == [2]
        assert one.histories[0][0]["val_weighted_f1"] is not None
        balanced = fit(path, head=head, split="kfold-speaker:3", quiet=True, class_weights="balanced")
        assert balanced.metrics["uar"] > 0.7 and balanced.record.options["class_weights"] == "balanced"


def test_sweep_runs_eval_and_cli(cache, tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app

    result = sweep(cache, heads=["logreg", "svm"], out=tmp_path / "sweep", grid={"C": [0.1, 10.0]},
                   split="kfold-speaker:3")
    assert len(result.rows) == 4 and {r["head"] for r in result.rows} == {"logreg", "svm"}
    chosen = {json.loads((tmp_path / "sweep" / r["run"] / "config.json").read_text())["head"]["hparams"]["C"]
              for r in result.rows}
    assert chosen == {0.1, 10.0}
    assert {r["head"] for r in summarize_runs([tmp_path / "sweep"])} == {"logreg", "svm"}

    runner = CliRunner()
    run = tmp_path / "cli-logreg"
    done = runner.invoke(app, ["fit", str(cache), "--head", "logreg", "--out", str(run), "--split", "kfold-speaker:3",
                               "--set", "C=0.5", "--modalities", "audio"])
    assert done.exit_code == 0, done.output
    assert "UAR" in done.output
    assert json.loads((run / "config.json").read_text())["head"]["hparams"]["C"] == 0.5
    done = runner.invoke(app, ["eval", str(run)])
    assert done.exit_code == 0 and "UAR" in done.output, done.output
    done = runner.invoke(app, ["runs", str(tmp_path)], env={"COLUMNS": "200"})
    assert done.exit_code == 0 and "cli-logreg" in done.output and "svm" in done.output, done.output


def test_baseline_on_face_crops_is_one_line_error(tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app

    path = tmp_path / "faces.h5"
    make_synthetic_cache(path, shapes={"faces": (8, 8, 3)}, speakers=2, clips_per_speaker_class=2)
    for head in ("logreg", "svm"):
        with pytest.raises(EmoError, match="raw face crops"):
            fit(path, head=head, quiet=True)
        done = CliRunner().invoke(app, ["fit", str(path), "--head", head, "--out", str(tmp_path / head)])
        assert done.exit_code == 1
        lines = done.output.strip().splitlines()
        assert len(lines) == 1 and "face crops" in lines[0] and str(path) in lines[0], done.output


def test_pooling_ignores_padding_and_chunks_exactly(monkeypatch):
    from emo.fusion.heads import classical

    x = torch.randn(5, 12, 2, 3).half()
    lengths = torch.tensor([12, 1, 7, 3, 9])
    mask = torch.arange(12)[None] < lengths[:, None]
    pooled = classical.pooled_statistics(x, mask)
    for i, n in enumerate(lengths.tolist()):
        frames = x[i, :n].double().reshape(n, -1).numpy()
        np.testing.assert_allclose(pooled[i].numpy(), np.concatenate([frames.mean(0), frames.std(0)]), atol=1e-12)
    padded = torch.cat([x, torch.full((5, 4, 2, 3), 1e3).half()], dim=1)  # more padding, garbage in it
    np.testing.assert_array_equal(classical.pooled_statistics(padded, torch.cat([mask, torch.zeros(5, 4, dtype=torch.bool)], 1)), pooled)
    monkeypatch.setattr(classical, "POOL_CHUNK_VALUES", 10)  # one clip at a time
    np.testing.assert_array_equal(classical.pooled_statistics(x, mask), pooled)


def test_folds_and_sweep_runs_pool_each_clip_once(cache, monkeypatch):
    from emo.fusion.heads import classical

    data = load_data(cache, ["audio", "text"])
    calls = []
    original = classical.pooled_statistics
    monkeypatch.setattr(classical, "pooled_statistics", lambda x, mask: calls.append(len(x)) or original(x, mask))
    first = fit(cache, head="logreg", data=data, split="kfold-speaker:3", quiet=True)
    pooled = sum(calls)
    assert pooled == 2 * len(data)  # every clip once per modality, for all three folds
    again = fit(cache, head="svm", data=data, split="kfold-speaker:3", quiet=True, head_params={"C": 3.0})
    assert sum(calls) == pooled and again.metrics["uar"] > 0.25 and first.metrics["uar"] > 0.25
