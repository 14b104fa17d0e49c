"""emo sweep --search optuna: TPE trials as run directories, pruning, studies shared by worker processes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emo.errors import EmoError
from emo.fusion import summarize_runs
from emo.fusion.search import OVER_ATTR, search
from emo.fusion.search_space import load_space_file, normalize
from synthetic_cache import make_synthetic_cache

ROOT = Path(__file__).resolve().parents[1]
# A small space over a small head: each trial is a fraction of a second of training.
SPACE = {"lr": {"low": 1e-3, "high": 1e-2, "log": True}, "d_model": [16, 32], "heads": 2, "blocks": 1, "ffn": 32}
RUN_FILES = ("config.json", "metrics.json", "predictions.csv", "splits.json", "history.json", "model.safetensors")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("search") / "synthetic.h5"
    make_synthetic_cache(path, shapes={"audio": (2, 16), "text": (1, 8)}, clips_per_speaker_class=3)
    return path


def _trials(storage: str, study: str):
    import optuna

    from emo.fusion.search_storage import open_storage

    return optuna.load_study(study_name=study, storage=open_storage(storage)).get_trials(deepcopy=False)


def _complete_run(path: Path) -> bool:
    return all((path / name).is_file() for name in RUN_FILES) and json.loads((path / "metrics.json").read_text())["n"] > 0


def test_trials_are_run_directories_and_the_study_resumes(cache, tmp_path):
    out = tmp_path / "s"
    result = search(cache, heads=["audio"], out=out, trials=3, space=normalize(SPACE, "test"), epochs=3, batch_size=16)
    assert [r["trial"] for r in result.rows] == [0, 1, 2]
    assert {r["state"] for r in result.rows} == {"complete"}
    for row in result.rows:
        assert _complete_run(out / row["run"])
        config = json.loads((out / row["run"] / "config.json").read_text())
        assert config["options"]["lr"] == pytest.approx(row["lr"], rel=1e-3)
        assert config["head"]["hparams"]["d_model"] == row["d_model"] and config["head"]["hparams"]["ffn"] == 32
        assert 0 <= row["val_weighted_f1"] <= 1 and "uar" in row
    with open(result.csv_path, newline="") as handle:
        assert [int(r["trial"]) for r in csv.DictReader(handle)] == [0, 1, 2]
    assert sorted(r["run"] for r in summarize_runs([out])) == sorted(r["run"] for r in result.rows)

    # The same call again: the study (a journal file in --out) already spent its budget.
    again = search(cache, heads=["audio"], out=out, trials=3, space=normalize(SPACE, "test"), epochs=3, batch_size=16)
    assert len(again.rows) == 3
    # A larger budget resumes it with one more trial.
    more = search(cache, heads=["audio"], out=out, trials=4, space=normalize(SPACE, "test"), epochs=3, batch_size=16)
    assert [r["trial"] for r in more.rows] == [0, 1, 2, 3] and _complete_run(out / more.rows[3]["run"])


def test_median_pruning_stops_trials_below_the_median(cache, tmp_path):
    # lr 1e-7 cannot learn in 6 epochs. With sampler seed 30 (Optuna 5.1) trials 0-4 draw lr 5e-3
    # and trial 5 draws 1e-7: after 5 completed trials, its validation wF1 is below their median.
    space = normalize({"lr": [5e-3, 1e-7], "d_model": 16, "heads": 2, "blocks": 1, "ffn": 32}, "test")
    out = tmp_path / "p"
    result = search(cache, heads=["audio"], out=out, trials=6, space=space, epochs=6, batch_size=16, sampler_seed=30)
    assert [r["lr"] for r in result.rows] == [5e-3] * 5 + [1e-7]
    assert [r["state"] for r in result.rows] == ["complete"] * 5 + ["pruned"]
    pruned = result.rows[5]
    assert pruned["epochs"] < 6 and not pruned["run"] and "uar" not in pruned
    # Only the completed trials have run directories (nothing is left of the pruned one).
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(("t", ".t"))) == [r["run"] for r in result.rows[:5]]


def test_several_heads_and_a_yaml_space(cache, tmp_path):
    space_file = tmp_path / "space.yaml"
    space_file.write_text("lr: {low: 1.0e-3, high: 1.0e-2, log: true}\nhidden: [8, 16]\nd_model: 16\nheads: 2\nblocks: 1\nffn: 32\n")
    space = load_space_file(space_file)
    assert space["lr"] == {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}
    result = search(cache, heads=["audio", "concat_mlp"], out=tmp_path / "h", trials=4, space=space, epochs=2,
                    batch_size=16, sampler_seed=0)
    assert len(result.rows) == 4
    for row in result.rows:
        config = json.loads((tmp_path / "h" / row["run"] / "config.json").read_text())
        assert config["head"]["name"] == row["head"]
        assert ("hidden" in config["head"]["hparams"]) == (row["head"] == "concat_mlp")


def _worker(cache, out, storage, trials, *extra, space=SPACE):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    space_file = out.parent / "space.json"
    space_file.write_text(json.dumps(space))
    command = [sys.executable, "-m", "emo", "sweep", str(cache), "--head", "audio", "--search", "optuna",
               "--trials", str(trials), "--storage", storage, "--study", "shared", "--space", str(space_file),
               "--out", str(out), *(extra or ("--epochs", "3"))]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_two_workers_share_one_study_and_finish_exactly_n_trials(cache, tmp_path, kind):
    from optuna.trial import TrialState

    storage = f"journal:{tmp_path / 'study.log'}" if kind == "journal" else f"sqlite:///{tmp_path / 'study.db'}"
    out = tmp_path / "runs"
    workers = [_worker(cache, out, storage, 5) for _ in range(2)]
    for w in workers:
        output, _ = w.communicate(timeout=300)
        assert w.returncode == 0, output
    trials = _trials(storage, "shared")
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == 5
    # Any other trial was asked in a race past the budget and never ran.
    assert all(t.user_attrs.get(OVER_ATTR) for t in trials if t not in done)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    runs = [t.user_attrs["run"] for t in done if t.state == TrialState.COMPLETE]
    assert len(runs) == len(set(runs)) and all(_complete_run(out / r) for r in runs)
    with open(out / "results.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert sorted(int(r["trial"]) for r in table) == sorted(t.number for t in done)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["journal", "sqlite"])  # emo's journal heartbeat, Optuna's RDB heartbeat
def test_a_killed_worker_leaves_the_study_usable(cache, tmp_path, kind):
    from optuna.trial import TrialState

    storage = f"journal:{tmp_path / 'study.log'}" if kind == "journal" else f"sqlite:///{tmp_path / 'study.db'}"
    out = tmp_path / "runs"
    # Trials of a second or more (60 epochs, no early stopping) so the kill lands mid-trial.
    slow = {**SPACE, "patience": 0}
    first = _worker(cache, out, storage, 2, "--heartbeat", "1", "--epochs", "60", space=slow)
    deadline = time.time() + 120
    while time.time() < deadline:
        # Running with its parameters drawn: the worker is training when it dies.
        if any((tmp_path / f).exists() for f in ("study.log", "study.db")) and any(t.state == TrialState.RUNNING and t.params for t in _safe_trials(storage)):
            break
        time.sleep(0.1)
    else:
        first.kill()
        pytest.fail("the first worker never started a trial: " + first.communicate()[0])
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    killed = [t for t in _trials(storage, "shared") if t.state == TrialState.RUNNING]
    assert len(killed) == 1

    second = _worker(cache, out, storage, 2, "--heartbeat", "1", "--epochs", "60", space=slow)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output
    trials = _trials(storage, "shared")
    lost = next(t for t in trials if t.number == killed[0].number)
    assert lost.state == TrialState.FAIL
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == 2
    # The lost trial was queued again with its parameters, and its run directory is whole.
    retry = [t for t in done if t.system_attrs.get("failed_trial") == lost.number]
    assert len(retry) == 1 and retry[0].params == lost.params
    assert all(_complete_run(out / t.user_attrs["run"]) for t in done if t.state == TrialState.COMPLETE)
    assert not (out / f"t{lost.number:04d}-audio").exists()
    with open(out / "results.csv", newline="") as handle:
        notes = {int(r["trial"]): r["note"] for r in csv.DictReader(handle)}
    assert "worker lost" in notes[lost.number]


def _safe_trials(storage):
    try:
        return _trials(storage, "shared")
    except (KeyError, EmoError):  # the study (or its database) is not created yet
        return []


def test_bad_input_gets_one_line_errors(cache, tmp_path):
    from typer.testing import CliRunner

    from emo.cli import app

    runner = CliRunner()
    base = ["sweep", str(cache), "--head", "audio", "--search", "optuna", "--epochs", "1"]

    def error(*args) -> str:
        result = runner.invoke(app, [*base, *args], env={"COLUMNS": "400"})
        assert result.exit_code == 1, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.output
        return lines[0]

    assert "--trials must be >= 1" in error("--trials", "0", "--out", str(tmp_path / "a"))
    assert "needs --trials" in error("--out", str(tmp_path / "a"))
    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps({"lr": 1e-3, "d_model": [16]}))
    assert "no free parameter" in error("--trials", "2", "--space", str(fixed), "--out", str(tmp_path / "a"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"lr": {"low": 0, "high": 1e-2, "log": True}}))
    assert "a log range needs low > 0" in error("--trials", "2", "--space", str(bad), "--out", str(tmp_path / "a"))
    assert "cannot open the study storage" in error("--trials", "2", "--storage", f"sqlite:///{tmp_path}", "--out", str(tmp_path / "a"))
    pytest.importorskip("pymysql")
    line = error("--trials", "2", "--storage", "mysql+pymysql://emo:secret@127.0.0.1:1/emo", "--out", str(tmp_path / "a"))
    assert "cannot open the study storage" in line and "secret" not in line

    # A study created by another space.
    space = tmp_path / "one.json"
    space.write_text(json.dumps({"lr": [1e-3, 2e-3], "d_model": 16, "heads": 2, "blocks": 1, "ffn": 32}))
    storage = f"journal:{tmp_path / 'shared.log'}"
    result = runner.invoke(app, [*base, "--trials", "1", "--space", str(space), "--storage", storage, "--study", "s",
                                 "--normalize", "speaker", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    # The fit options of the command reach every trial.
    assert json.loads((tmp_path / "b" / "t0000-audio" / "config.json").read_text())["options"]["normalize"] == "speaker"
    other = tmp_path / "two.json"
    other.write_text(json.dumps({"lr": [1e-3, 5e-3], "d_model": 16, "heads": 2, "blocks": 1, "ffn": 32}))
    line = error("--trials", "1", "--space", str(other), "--storage", storage, "--study", "s", "--out", str(tmp_path / "b"))
    assert "created with another search space" in line and "lr" in line
    with pytest.raises(EmoError, match="neither a fit option nor a hyperparameter"):
        search(cache, heads=["audio"], out=tmp_path / "c", trials=1, space=normalize({"hidden": [8, 16]}, "t"))


def test_a_point_that_fails_is_counted_and_the_search_goes_on(cache, tmp_path, monkeypatch):
    import emo.fusion.search as search_module

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(search_module, "fit", out_of_memory)
    with pytest.raises(EmoError, match="every trial of study 'm' failed; the first: audio with .*out of memory"):
        search(cache, heads=["audio"], out=tmp_path / "m", trials=2, space=normalize(SPACE, "t"), epochs=1)
    with open(tmp_path / "m" / "results.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    # Failed points take their unit of the budget: two trials, not an endless retry.
    assert [(r["trial"], r["state"]) for r in table] == [("0", "failed"), ("1", "failed")]
    assert all("out of memory" in r["note"] for r in table)
    with pytest.raises(EmoError, match="--set hidden: not a hyperparameter of audio"):
        search(cache, heads=["audio"], out=tmp_path / "n", trials=1, head_params={"hidden": 8})


def test_a_trial_asked_past_the_budget_in_a_race_is_not_run(cache, tmp_path, monkeypatch):
    import optuna
    from optuna.trial import TrialState

    original = optuna.Study.ask
    calls = []

    def racing_ask(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # another worker takes the last unit between this worker's check and its ask
            other = original(self)
            self.tell(other, 0.5)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "ask", racing_ask)
    result = search(cache, heads=["audio"], out=tmp_path / "r", trials=2, space=normalize(SPACE, "t"), epochs=1)
    assert [(r["trial"], r["state"]) for r in result.rows] == [(0, "complete"), (1, "complete")]
    from emo.fusion.search_storage import open_storage

    trials = optuna.load_study(study_name="r", storage=open_storage(f"journal:{tmp_path / 'r' / 'optuna-journal.log'}")).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    assert trials[2].user_attrs.get(OVER_ATTR) and "run" not in trials[2].user_attrs
    assert not (tmp_path / "r" / "t0002-audio").exists()


def test_the_default_space_of_a_scikit_learn_baseline_is_its_regularisation(cache, tmp_path):
    result = search(cache, heads=["logreg"], out=tmp_path / "l", trials=2, sampler_seed=0)
    assert [c for c in result.columns if c in ("C", "lr", "batch_size")] == ["C"]
    for row in result.rows:
        config = json.loads((tmp_path / "l" / row["run"] / "config.json").read_text())
        assert 1e-2 <= config["head"]["hparams"]["C"] <= 1e2 and config["head"]["hparams"]["C"] == pytest.approx(row["C"], rel=1e-3)


def test_a_k_fold_trial_is_scored_by_its_mean_validation_wf1(cache, tmp_path):
    result = search(cache, heads=["audio"], out=tmp_path / "k", trials=1, space=normalize(SPACE, "t"), epochs=2,
                    split="kfold-speaker:2", batch_size=16)
    (row,) = result.rows
    metrics = json.loads((tmp_path / "k" / row["run"] / "metrics.json").read_text())
    assert len(metrics["folds"]) == 2 and "uar_std" in row
    assert row["val_weighted_f1"] == pytest.approx(sum(f["best_val_weighted_f1"] for f in metrics["folds"]) / 2)
    history = json.loads((tmp_path / "k" / row["run"] / "history.json").read_text())
    assert [len(h) for h in history] == [2, 2]
    # Fold k's epoch e is reported at step k * epochs + e, so the median compares fold by fold.
    (trial,) = _trials(f"journal:{tmp_path / 'k' / 'optuna-journal.log'}", "k")
    assert sorted(trial.intermediate_values) == [1, 2, 3, 4]
