"""Cross-corpus scoring on generated caches and on the two real Korean speaker groups: `emo eval RUN OTHER`,
`emo fit --test-cache`, label maps, overlap with training.

The generated "corpora" share the class directions of one seed and draw their own noise (noise_seed), so
a head trained on one transfers to the other; label names and clip ids differ per corpus.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from emo.cache import CacheReader
from emo.errors import EmoError
from emo.fusion import evaluate, fit
from synthetic_cache import make_synthetic_cache

SHAPES = {"audio": (1, 16)}
HEAD = {"d_model": 32, "heads": 2, "blocks": 1, "ffn": 64}
FAST = {"epochs": 12, "lr": 1e-3, "batch_size": 16, "quiet": True, "head_params": HEAD}


def corpus(path, classes=("angry", "happy", "neutral", "sad"), prefix="c", noise_seed=None, **kwargs):
    make_synthetic_cache(path, shapes=SHAPES, classes=classes, id_prefix=prefix, noise_seed=noise_seed, **kwargs)
    return path


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    source = lambda i: f"/corpus/a/{i:04d}.wav"  # noqa: E731
    caches = {
        "a": corpus(root / "a.h5", audio_paths=source),
        # other label names: ANG has no counterpart, joy is happy by --label-map
        "b": corpus(root / "b.h5", ("ANG", "joy", "neutral", "sad"), "b", noise_seed=5),
        # "angry" here sounds like the run's sad; the run's sad has no counterpart
        "e": corpus(root / "e.h5", ("xyz", "happy", "neutral", "angry"), "e", noise_seed=6),
        # other ids, the same source files as a's clips
        "renamed": corpus(root / "renamed.h5", prefix="r", audio_paths=source),
    }
    run = root / "run"
    result = fit(caches["a"], head="audio", out=run, **FAST)
    return {**caches, "root": root, "run": run, "result": result}


def test_classes_match_by_name_and_map_and_the_rest_is_counted(corpora):
    result = evaluate(corpora["run"], corpora["b"], label_map=["joy=happy"])
    metrics = result.metrics
    assert metrics["classes"] == ["happy", "neutral", "sad"]  # run order, shared classes only
    assert metrics["n"] == 72 and np.array(metrics["confusion"]).shape == (3, 3)
    assert np.array(metrics["confusion"]).sum() == 72 and set(metrics["per_class"]) == {"happy", "neutral", "sad"}
    assert metrics["uar"] > 0.7  # the planted signal transfers (chance 1/3)
    cross = metrics["cross_corpus"]
    assert cross["left_out"]["by_class"] == {"ANG": 24} and cross["scored"] == 72
    assert cross["label_map"]["to_run"] == {"joy": "happy", "neutral": "neutral", "sad": "sad"}
    assert cross["label_map"]["unshared_run_classes"] == ["angry"]
    assert cross["overlap"] == {"policy": "refuse", "clips": 0, "by_id": 0, "by_source": 0, "sources_checked": True}
    assert any("ANG 24" in line for line in result.notes) and any("joy -> happy" in line for line in result.notes)
    assert set(result.predictions.ids) == {c for c in CacheReader(corpora["b"]).clips.ids} - {
        cid for cid, lab in zip(CacheReader(corpora["b"]).clips.ids, CacheReader(corpora["b"]).clips.labels) if lab == 0}


def test_predictions_are_restricted_to_the_shared_classes(corpora):
    # e's "angry" clips carry the run's sad signal: the unrestricted top class would be sad.
    result = evaluate(corpora["run"], corpora["e"])
    assert result.metrics["classes"] == ["angry", "happy", "neutral"]
    names = result.predictions.class_names
    assert "sad" not in {names[p] for p in result.predictions.predicted}
    assert result.metrics["predicted_unshared"] >= 20  # of the 24 angry clips
    assert result.metrics["per_class"]["happy"]["recall"] > 0.7


@pytest.mark.parametrize(
    "label_map, message",
    [
        (["fury=angry"], "'fury' is not a class of .*b.h5 \\(its classes: ANG, joy, neutral, sad\\)"),
        (["ANG=furious"], "'furious' is not a class of the run \\(its classes: angry, happy, neutral, sad\\)"),
        (["ANG=angry,ANG=sad"], "'ANG' is mapped twice \\(angry and sad\\)"),
        (["ANG=neutral"], "'ANG' and 'neutral' of .*b.h5 would both be scored as the run's 'neutral'"),
        (["joy"], "expected SRC=DST"),
        (["neutral=-,sad=-"], "none of its classes .* matches the run's"),
        (["neutral=-,joy=-"], "only 'sad' is shared with the run's classes"),
    ],
)
def test_bad_label_maps_are_one_line_errors(corpora, label_map, message):
    with pytest.raises(EmoError, match=message) as caught:
        evaluate(corpora["run"], corpora["b"], label_map=label_map)
    assert "\n" not in str(caught.value)


def test_nothing_shared_is_an_error(corpora):
    other = corpus(corpora["root"] / "letters.h5", ("w", "x", "y", "z"), "l", noise_seed=3)
    with pytest.raises(EmoError, match="none of its classes \\(w, x, y, z\\) matches .* map them with --label-map"):
        evaluate(corpora["run"], other)
    mapped = evaluate(corpora["run"], other, label_map=["w=angry,x=happy"])
    assert mapped.metrics["classes"] == ["angry", "happy"] and mapped.metrics["n"] == 48


def test_overlap_with_training_is_refused_excluded_or_included(corpora, tmp_path):
    splits = json.loads((corpora["run"] / "splits.json").read_text())[0]
    seen, test = len(splits["train"]) + len(splits["val"]), len(splits["test"])
    copy = tmp_path / "copy.h5"
    shutil.copy(corpora["a"], copy)
    with pytest.raises(EmoError, match=f"{seen} of its 96 clips to score were in the run's training or validation "
                                       f"data \\({seen} by clip id, 0 by source file; .*--overlap exclude"):
        evaluate(corpora["run"], copy)
    excluded = evaluate(corpora["run"], copy, overlap="exclude")
    assert sorted(excluded.predictions.ids) == sorted(splits["test"]) and excluded.metrics["n"] == test
    assert excluded.metrics["cross_corpus"]["left_out"]["overlap"] == seen
    assert excluded.metrics["accuracy"] == corpora["result"].metrics["accuracy"]  # = its own test split
    included = evaluate(corpora["run"], copy, overlap="include")
    assert included.metrics["n"] == 96 and included.metrics["cross_corpus"]["overlap"]["clips"] == seen
    assert any(f"{seen} clips the run trained or validated on scored anyway" in n for n in included.notes)
    # Other clip ids, same source files: caught by the source path (read from the training cache).
    with pytest.raises(EmoError, match=f"\\(0 by clip id, {seen} by source file"):
        evaluate(corpora["run"], corpora["renamed"])
    with pytest.raises(EmoError, match="--overlap 'maybe': use one of refuse, exclude, include"):
        evaluate(corpora["run"], corpora["b"], overlap="maybe")


def test_overlap_by_id_only_when_the_training_cache_is_gone(tmp_path):
    cache = corpus(tmp_path / "gone.h5")
    fit(cache, head="audio", out=tmp_path / "run", **{**FAST, "epochs": 1})
    copy = tmp_path / "copy.h5"
    shutil.copy(cache, copy)
    cache.unlink()
    with pytest.raises(EmoError, match="by clip id; source files unchecked, the training cache is gone"):
        evaluate(tmp_path / "run", copy)
    other = corpus(tmp_path / "other.h5", prefix="o", noise_seed=1)
    assert any("clip id only" in line for line in evaluate(tmp_path / "run", other).notes)


def test_kfold_run_scores_every_fold_model_on_the_other_corpus(corpora, tmp_path):
    fit(corpora["a"], head="audio", split="kfold-speaker:3", out=tmp_path / "k", **{**FAST, "epochs": 4})
    result = evaluate(tmp_path / "k", corpora["b"], label_map=["joy=happy"])
    assert len(result.metrics["folds"]) == 3 and "uar_std" in result.metrics
    assert result.metrics["n"] == 3 * 72 and len(result.predictions.ids) == 3 * 72


def test_fit_with_a_test_cache_trains_on_all_of_one_corpus(corpora, tmp_path):
    out = tmp_path / "cross"
    result = fit(corpora["a"], head="audio", out=out, test_cache=corpora["b"], label_map=["joy=happy"], **FAST)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "metrics.json", "predictions.csv", "confusion.png", "curves.png", "splits.json",
            "model.safetensors"} <= names
    splits = json.loads((out / "splits.json").read_text())
    assert len(splits) == 1 and len(splits[0]["train"]) + len(splits[0]["val"]) == 96 and splits[0]["val"]
    assert splits[0]["test_cache"] == str(corpora["b"].resolve()) and len(splits[0]["test"]) == 72
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["happy", "neutral", "sad"] and metrics["n"] == 72 and metrics["uar"] > 0.7
    assert metrics["n_train"] + metrics["n_val"] == 96 and metrics["best_epoch"] >= 1
    config = json.loads((out / "config.json").read_text())
    assert config["classes"] == ["angry", "happy", "neutral", "sad"]  # the head's outputs
    assert config["test_cache"]["label_map"]["given"] == {"joy": "happy"}
    assert config["options"]["test_cache"] == str(corpora["b"])
    from emo.fusion import summarize_runs

    assert summarize_runs([out])[0]["split"] == "stratified · test b.h5"
    # `emo eval RUN` rescores on the recorded test cache with the recorded map
    rescored = evaluate(out)
    np.testing.assert_allclose(rescored.predictions.probs, result.predictions.probs, rtol=0, atol=1e-6)
    assert rescored.metrics["uar"] == result.metrics["uar"]
    with pytest.raises(EmoError, match="trained on all of it and tested on .*b.h5; it has no test split here"):
        evaluate(out, corpora["a"])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"split": "kfold:3"}, "--split kfold:3 with a test cache: .* only stratified or speaker"),
        ({"overlap": "never"}, "--overlap 'never'"),
        ({"label_map": ["joy=elated"]}, "'elated' is not a class of the run"),
        ({"test_cache": "SELF"}, "96 of its 96 clips to score were in the run's training or validation data"),
        ({"test_cache": "SELF", "overlap": "exclude"}, "no clip left to score"),
    ],
)
def test_fit_test_cache_refusals_come_before_training(corpora, tmp_path, options, message):
    options = {"test_cache": corpora["b"], **options}
    if options["test_cache"] == "SELF":
        options["test_cache"] = corpora["a"]
    seen = []
    with pytest.raises(EmoError, match=message):
        fit(corpora["a"], head="audio", out=tmp_path / "r", display=_Recorder(seen), **{**FAST, "quiet": False},
            **options)
    assert not any(kind == "epoch" for kind, _ in seen) and not (tmp_path / "r").exists()


def test_label_map_without_test_cache_is_refused(corpora):
    with pytest.raises(EmoError, match="--label-map needs --test-cache"):
        fit(corpora["a"], head="audio", label_map=["joy=happy"], **FAST)


def test_cli_eval_other_cache_saves_scores_and_notes(corpora, tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app

    runner = CliRunner()
    run = tmp_path / "run"
    shutil.copytree(corpora["run"], run)
    result = runner.invoke(app, ["eval", str(run), str(corpora["b"]), "--label-map", "joy=happy"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "ANG 24" in result.output and "joy -> happy" in result.output and "UAR" in result.output
    saved = run / "eval" / "b"
    assert {"metrics.json", "predictions.csv", "confusion.png"} <= {p.name for p in saved.iterdir()}
    assert json.loads((saved / "metrics.json").read_text())["cross_corpus"]["left_out"]["by_class"] == {"ANG": 24}
    result = runner.invoke(app, ["eval", str(run), str(corpora["b"]), "--label-map", "ANG=neutral"])
    assert result.exit_code == 1 and result.output.count("\n") <= 2 and "would both be scored" in result.output
    copy = tmp_path / "copy.h5"
    shutil.copy(corpora["a"], copy)
    result = runner.invoke(app, ["eval", str(run), str(copy)])
    assert result.exit_code == 1 and "--overlap exclude" in result.output
    result = runner.invoke(app, ["eval", str(run), str(copy), "--overlap", "exclude", "-o", str(tmp_path / "x")])
    assert result.exit_code == 0 and "left out (--overlap exclude)" in result.output
    assert (tmp_path / "x" / "metrics.json").is_file()
    out = tmp_path / "fitted"
    result = runner.invoke(app, ["fit", str(corpora["a"]), "--head", "audio", "--out", str(out), "--epochs", "2",
                                 "--set", "d_model=16", "--test-cache", str(corpora["b"]), "--label-map", "joy=happy",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["cross_corpus"]["scored"] == 72


class _Recorder:
    """A fit display that records what it was shown."""

    def __init__(self, seen):
        self.seen = seen

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def note(self, text):
        self.seen.append(("note", text))

    def fold(self, *args):
        self.seen.append(("fold", args))

    def epoch(self, record):
        self.seen.append(("epoch", record))


def test_test_elsewhere_fold_trains_on_everything_less_validation():
    from emo.fusion.splits import make_folds

    labels = np.repeat(np.arange(4), 12)
    speakers = np.tile([f"s{i}" for i in range(6)], 8)
    (fold,) = make_folds("speaker", labels, speakers, class_names=list("abcd"), test_elsewhere=True)
    assert fold.test.size == 0 and sorted(np.concatenate([fold.train, fold.val]).tolist()) == list(range(48))
    assert not set(speakers[fold.train]) & set(speakers[fold.val]) and fold.val.size
    (plain,) = make_folds("stratified", labels, speakers, class_names=list("abcd"), val_fraction=0, test_elsewhere=True)
    assert plain.train.size == 48 and plain.val.size == 0
    with pytest.raises(EmoError, match="--split kfold-speaker:3 with a test cache"):
        make_folds("kfold-speaker:3", labels, speakers, class_names=list("abcd"), test_elsewhere=True)


# -- real data: the two Korean speaker groups as two corpora, log-mel through `emo extract` ---------
KOR_NAMES = ("neutral", "happy", "sad", "angry")  # clip numbers 1xx..4xx (see shared/data/README.md)
EM_NAMES = {"neutral": "neu", "happy": "hap", "sad": "sad", "angry": "ang"}  # the em* manifest's label names
KOR_HEAD = {"d_model": 32, "heads": 2, "blocks": 1, "ffn": 64}


@pytest.fixture(scope="session")
def korean_corpora(shared_data, tmp_path_factory):
    """ne* speakers via the kor-emotion adapter (200 clips), em* speakers via a manifest with other
    label names (100 clips; its wavs hard-linked, or copied across file systems, into a temp folder)."""
    import csv
    import os

    from emo.extract.options import ExtractOptions
    from emo.extract import run_extraction

    root = tmp_path_factory.mktemp("korean")
    kor = shared_data / "kor_emotiontts"
    (root / "em" / "wav").mkdir(parents=True)
    rows = []
    for wav in sorted((kor / "plain-to-emotional").glob("*/wav/*.wav")):
        try:
            os.link(wav, root / "em" / "wav" / wav.name)
        except OSError:
            shutil.copy(wav, root / "em" / "wav" / wav.name)
        label = EM_NAMES[KOR_NAMES[(int(wav.stem[3:]) - 1) // 100]]
        rows.append({"id": wav.stem, "label": label, "speaker": wav.stem[:3], "audio": f"wav/{wav.name}"})
    with open(root / "em" / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    options = ExtractOptions(audio_backbone="logmel", workers=1)
    run_extraction("kor-emotion", kor / "emotional-to-emotional", root / "ne.h5", ["audio"], options, progress=False)
    run_extraction("manifest", root / "em", root / "em.h5", ["audio"], options, progress=False)
    return {"root": root, "ne": root / "ne.h5", "em": root / "em.h5"}


@pytest.mark.slow
def test_real_korean_groups_cross_corpus_both_ways(korean_corpora, tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app

    ne, em = korean_corpora["ne"], korean_corpora["em"]
    ne_clips, em_clips = CacheReader(ne).clips, CacheReader(em).clips
    assert len(ne_clips) == 200 and len(em_clips) == 100 and sorted(em_clips.label_names) == ["ang", "hap", "neu", "sad"]
    kor_fast = {"epochs": 8, "lr": 1e-3, "batch_size": 16, "quiet": True, "head_params": KOR_HEAD, "split": "speaker"}

    # ne* -> em*: one command trains on every ne* clip (speaker-disjoint validation) and tests on em*.
    result = fit(ne, head="audio", out=tmp_path / "ne2em", test_cache=em, label_map=["neu=neutral,hap=happy,ang=angry"],
                 **kor_fast)
    metrics = result.metrics
    assert metrics["classes"] == list(KOR_NAMES) and metrics["n"] == 100
    assert sorted(result.predictions.ids) == sorted(em_clips.ids)
    assert metrics["n_train"] + metrics["n_val"] == 200
    cross = metrics["cross_corpus"]
    assert cross["left_out"] == {"unlabelled": 0, "by_class": {}, "overlap": 0, "missing_modality": 0}
    assert cross["overlap"]["clips"] == 0 and cross["overlap"]["sources_checked"]
    # The label map is honoured: every em* "ang" clip is scored as the run's angry.
    truth = dict(zip(result.predictions.ids, (KOR_NAMES[t] for t in result.predictions.true)))
    em_label = {cid: em_clips.label_names[lab] for cid, lab in zip(em_clips.ids, em_clips.labels)}
    assert all(EM_NAMES[truth[cid]] == em_label[cid] for cid in truth)
    print(f"Korean log-mel, audio head, ne* -> em*: UAR {metrics['uar']:.3f}")

    # em* -> ne*, through the CLI: a run on em* evaluated on the ne* cache; "sad" matches by name.
    fit(em, head="audio", out=tmp_path / "em", **kor_fast)
    runner = CliRunner()
    out = runner.invoke(app, ["eval", str(tmp_path / "em"), str(ne), "--label-map", "neutral=neu,happy=hap,angry=ang"],
                        env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    scored = json.loads((tmp_path / "em" / "eval" / "ne" / "metrics.json").read_text())
    assert scored["n"] == 200 and scored["classes"] == ["ang", "hap", "neu", "sad"]
    assert scored["cross_corpus"]["label_map"]["to_run"] == {"neutral": "neu", "happy": "hap", "sad": "sad", "angry": "ang"}
    print(f"Korean log-mel, audio head, em* -> ne*: UAR {scored['uar']:.3f}")
    # Without the map only "sad" would be shared: refused, one line.
    out = runner.invoke(app, ["eval", str(tmp_path / "em"), str(ne)])
    assert out.exit_code == 1 and "only 'sad' is shared" in out.output and len(out.output.strip().splitlines()) == 1
    # The run's own training corpus (here a copy of it) is refused as a test corpus, counted.
    shutil.copy(ne, tmp_path / "ne-copy.h5")
    out = runner.invoke(app, ["eval", str(tmp_path / "ne2em"), str(tmp_path / "ne-copy.h5")])
    assert out.exit_code == 1 and "200 of its 200 clips to score were in the run's training" in out.output
    out = runner.invoke(app, ["eval", str(tmp_path / "ne2em"), str(ne)])
    assert out.exit_code == 1 and "trained on all of it and tested on" in out.output


def test_sweep_scores_every_run_on_the_test_cache(corpora, tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app
    from emo.fusion import load_run

    out = tmp_path / "sweep"
    result = CliRunner().invoke(app, [
        "sweep", str(corpora["a"]), "--head", "audio", "--grid", "lr=1e-3,2e-3", "--epochs", "3",
        "--set", "d_model=16", "--set", "heads=2", "--test-cache", str(corpora["b"]), "--label-map", "joy=happy",
        "--out", str(out),
    ], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    runs = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(runs) == 2
    for run in runs:
        record = load_run(run).record
        assert Path(record.test_cache.path).resolve() == corpora["b"].resolve()
        assert record.test_cache.label_map["given"] == {"joy": "happy"}
        assert json.loads((run / "metrics.json").read_text())["n"] == 72  # b's clips that map to the run's classes
    refused = CliRunner().invoke(app, ["sweep", str(corpora["a"]), "--head", "audio", "--epochs", "1",
                                       "--test-cache", str(corpora["a"]), "--out", str(tmp_path / "self")])
    assert refused.exit_code == 1 and "in the run's training or validation data" in refused.output
