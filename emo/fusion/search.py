"""`emo sweep --search optuna`: a TPE search over head and fit hyperparameters that many workers share.

Each trial is a normal fit (one run directory, `emo runs` reads it) scored by its validation
weighted F1 (mean over folds), never by its test split. Trials report validation weighted F1
every epoch and the median pruner stops the ones below the median of earlier trials.

Workers share the study through its storage (see search_storage). The budget is exact: a trial
counts while it waits, runs or has finished (completed, pruned, or failed on an emo error such
as an invalid hyperparameter combination); a trial lost with its worker (killed, machine gone)
is failed by the heartbeat and does not count, so its budget is re-used. Optuna's
MaxTrialsCallback stops a worker only after a trial, so two workers that ask at the same moment
overrun the budget; here a trial whose number puts it past the budget (counting the trials
numbered before it) is not run: it is failed at once, marked over-budget, and never counted.
Rerunning the same command resumes the study and stops when the budget is spent.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

from emo.constants import SWEEP_HEARTBEAT_S
from emo.errors import EmoError
from emo.fusion.display import QuietDisplay
from emo.fusion.fit import fit
from emo.fusion.metrics import HEADLINE
from emo.fusion.search_space import applies, default_space, describe, free_names, suggest
from emo.fusion.search_storage import describe_storage, open_storage
from emo.fusion.sweep import _FIT_KEYS, SweepResult, load_for_heads

SETUP_ATTR = "emo:setup"  # study user attribute: the space and settings the study was created with
ERROR_ATTR = "emo:error"  # trial user attribute: the emo error that failed it (counted in the budget)
OVER_ATTR = "emo:over_budget"  # trial user attribute: asked past the budget, never run
DEFAULT_STORAGE = "optuna-journal.log"  # in --out: rerunning the command resumes, local workers share it
PRUNER_STARTUP_TRIALS = 5  # completed trials before the median means anything
PRUNER_WARMUP_EPOCHS = 3  # the first epochs of a fit say little about where it ends


class _OverBudget(Exception):
    """Raised inside a trial that was asked past the budget (caught by optimize: the trial fails)."""


class PruningDisplay(QuietDisplay):
    """The per-epoch hook of a trial's fit: report validation weighted F1, stop when pruned.

    Steps run on over folds (fold k, epoch e -> k * epochs + e) so k-fold trials compare fold by fold.
    """

    def __init__(self, trial, epochs: int):
        self.trial, self.epochs, self.fold_index, self.last_epoch = trial, epochs, 0, 0

    def fold(self, index: int, n_folds: int, sizes: dict, epochs: int) -> None:
        self.fold_index = index

    def epoch(self, record: dict) -> None:
        import optuna

        self.last_epoch = record["epoch"]
        if "val_weighted_f1" not in record:
            return
        self.trial.report(float(record["val_weighted_f1"]), self.fold_index * self.epochs + record["epoch"])
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at fold {self.fold_index + 1} epoch {record['epoch']}")


def _counts(trial) -> bool:
    """Does this trial take one unit of the budget?"""
    from optuna.trial import TrialState

    if trial.state == TrialState.FAIL:
        return ERROR_ATTR in trial.user_attrs
    return True  # waiting, running, complete, pruned


def _finished(trial) -> bool:
    from optuna.trial import TrialState

    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and ERROR_ATTR in trial.user_attrs
    )


def _check_setup(study, setup: dict, study_name: str, storage_text: str) -> None:
    """Store the setup on a new study; refuse an existing study created with another one."""
    stored = study.user_attrs.get(SETUP_ATTR)
    if stored is None:
        if study.get_trials(deepcopy=False):
            raise EmoError(f"study {study_name!r} in {storage_text} was not created by emo sweep; use another --study")
        study.set_user_attr(SETUP_ATTR, setup)
        return
    if stored.get("space") != setup["space"]:
        there, here = stored.get("space", {}), setup["space"]
        diff = sorted(k for k in set(there) | set(here) if there.get(k) != here.get(k))
        shown = "; ".join(
            f"{k}: {describe(there[k]) if k in there else 'absent'} there, {describe(here[k]) if k in here else 'absent'} here"
            for k in diff[:3]
        )
        raise EmoError(
            f"study {study_name!r} in {storage_text} was created with another search space ({shown}); "
            "use another --study or the same space"
        )
    for key in setup:
        if stored.get(key) != setup[key]:
            raise EmoError(
                f"study {study_name!r} in {storage_text} was created with another {key} "
                f"({stored.get(key)!r} there, {setup[key]!r} here); use another --study or the same settings"
            )


def _claim_out(out: Path, storage_text: str, study_name: str) -> None:
    """One --out folder holds one study's runs (trial numbers name the run directories)."""
    import json

    marker = out / "search.json"
    mine = {"storage": storage_text, "study": study_name}
    if marker.is_file():
        try:
            theirs = json.loads(marker.read_text(encoding="utf-8"))
        except ValueError:
            theirs = None
        if theirs != mine:
            raise EmoError(f"{out}: holds the runs of another search ({marker}); choose another --out")
        return
    tmp = out / f".search.json.{os.getpid()}"
    tmp.write_text(json.dumps(mine) + "\n", encoding="utf-8")
    os.replace(tmp, marker)


def search(
    cache: str | Path,
    *,
    heads: Sequence[str],
    out: str | Path,
    trials: int,
    space: dict[str, dict] | None = None,
    storage: str | None = None,
    study: str | None = None,
    seed: int = 0,
    modalities: Sequence[str] | None = None,
    head_params: dict | None = None,
    heartbeat: int = SWEEP_HEARTBEAT_S,
    sampler_seed: int | None = None,
    on_trial: Callable[[dict], None] | None = None,
    **common: Any,
) -> SweepResult:
    """Run this worker's share of a `trials`-trial study; returns every trial of the study as rows.

    `space` is normalised (search_space.normalize); None takes the default space of `heads`.
    `storage` None keeps the study in a journal file in `out`; `study` None names it after `out`.
    """
    import optuna

    from emo.fusion.heads import HEADS

    if trials is None or trials < 1:
        raise EmoError(f"--trials must be >= 1, got {trials}")
    if not heads:
        raise EmoError("--head: name at least one head")
    for h in heads:
        if h not in HEADS:
            raise EmoError(f"unknown head {h!r}; available: {', '.join(HEADS)}")
    head_params = dict(head_params or {})
    for key in head_params:
        if not any(key in HEADS[h].defaults for h in heads):
            raise EmoError(f"--set {key}: not a hyperparameter of {', '.join(heads)}")
    # --set fixes a value: taken out of the default space, but a clash with a given space is an error.
    space = dict(space) if space is not None else {k: v for k, v in default_space(heads).items() if k not in head_params}
    for key in space:
        if key in ("head", "seed") or not any(applies(key, h, _FIT_KEYS) for h in heads):
            raise EmoError(f"search space {key}: neither a fit option nor a hyperparameter of {', '.join(heads)}")
    clash = sorted(set(head_params) & set(free_names(space)))
    if clash:
        raise EmoError(f"--set {', '.join(clash)}: also searched in the space; fix it in one place")
    if not free_names(space) and len(heads) == 1:
        raise EmoError("the search space has no free parameter (every entry is a single value); give a range or choices")
    if not common.get("val_fraction", 0.1) > 0:
        raise EmoError("--search optuna scores trials on validation clips: the validation fraction must be > 0")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    storage_spec = storage or f"journal:{out / DEFAULT_STORAGE}"
    storage_text = describe_storage(storage_spec)
    study_name = study or out.resolve().name
    backend = open_storage(storage_spec, heartbeat)
    _claim_out(out, storage_text, study_name)

    data, per_head = load_for_heads(cache, heads, modalities, common)
    setup = {
        "space": space,
        "heads": list(heads),
        "modalities": per_head,
        "head_params": head_params,
        "seed": seed,
        "fit": {k: v for k, v in sorted(common.items()) if k not in ("device",)},
        "cache": {"dataset": data.dataset, "fingerprints": {m: d.fingerprint for m, d in data.modalities.items()}},
    }
    setup = _jsonable(setup)

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # emo prints its own one line per trial
    try:
        study_obj = optuna.create_study(
            storage=backend, study_name=study_name, direction="maximize", load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=True),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS),
        )
        _check_setup(study_obj, setup, study_name, storage_text)
        worker = f"{socket.gethostname()}:{os.getpid()}"
        objective = _Objective(
            cache, study_obj, trials, heads, space, head_params, per_head, data, out, seed, worker, common,
        )
        _work(study_obj, objective, trials, heartbeat, out, on_trial)
        rows, columns = results_rows(study_obj, space, heads)
        csv_path = _write_results(out, rows, columns)
    finally:
        optuna.logging.set_verbosity(verbosity)
    errors = [t.user_attrs[ERROR_ATTR] for t in study_obj.get_trials(deepcopy=False) if ERROR_ATTR in t.user_attrs]
    if errors and not any(r["state"] in ("complete", "pruned") for r in rows):
        raise EmoError(f"every trial of study {study_name!r} failed; the first: {errors[0]}")
    return SweepResult(rows, csv_path, columns)


class _Objective:
    def __init__(self, cache, study, trials, heads, space, head_params, per_head, data, out, seed, worker, common):
        self.cache, self.study, self.trials, self.heads, self.space = cache, study, trials, heads, space
        self.head_params, self.per_head, self.data, self.out = head_params, per_head, data, out
        self.seed, self.worker, self.common = seed, worker, common

    def __call__(self, trial) -> float:
        import optuna

        ahead = sum(1 for t in self.study.get_trials(deepcopy=False) if t.number <= trial.number and _counts(t))
        if ahead > self.trials:
            trial.set_user_attr(OVER_ATTR, True)
            raise _OverBudget(f"trial {trial.number} is past the budget of {self.trials}")
        trial.set_user_attr("worker", self.worker)
        head = trial.suggest_categorical("head", list(self.heads)) if len(self.heads) > 1 else self.heads[0]
        trial.set_user_attr("head", head)
        values = suggest(trial, self.space, head, _FIT_KEYS)
        fit_params = {k: v for k, v in values.items() if k in _FIT_KEYS}
        from emo.fusion.heads import HEADS

        hparams = {**self.head_params, **{k: v for k, v in values.items() if k not in _FIT_KEYS}}
        hparams = {k: v for k, v in hparams.items() if k in HEADS[head].defaults}
        name = f"t{trial.number:04d}-{head}"
        trial.set_user_attr("run", name)
        options = {**self.common, **fit_params}
        display = PruningDisplay(trial, int(options.get("epochs", 50)))
        # Written aside and moved into place whole: a worker killed while saving leaves no half run.
        staging = self.out / f".{name}.partial-{uuid.uuid4().hex[:8]}"
        try:
            result = fit(
                self.cache, head=head, out=staging, data=self.data, display=display,
                **{**options, "seed": self.seed, "modalities": self.per_head[head], "head_params": hparams, "name": name},
            )
            final = self.out / name
            if final.exists():
                raise EmoError(f"{final}: already exists; choose another --out")
            os.replace(staging, final)
        except optuna.TrialPruned:
            trial.set_user_attr("epochs", display.last_epoch)
            raise
        except EmoError as err:
            trial.set_user_attr(ERROR_ATTR, str(err))
            raise
        except RuntimeError as err:
            # A point too large for the device is a bad point, not a lost worker: count it and go on.
            if "out of memory" not in str(err):
                raise
            message = f"{head} with {values}: out of memory on {self.common.get('device', 'auto')}"
            trial.set_user_attr(ERROR_ATTR, message)
            raise EmoError(message) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        metrics = result.metrics
        folds = metrics.get("folds") or [metrics]
        vals = [f.get("best_val_weighted_f1") for f in folds]
        if any(v is None for v in vals):
            trial.set_user_attr(ERROR_ATTR, "no validation clips to score the trial on")
            raise EmoError(f"{final}: no validation clips to score the trial on")
        for key in HEADLINE:
            trial.set_user_attr(key, metrics[key])
            if f"{key}_std" in metrics:
                trial.set_user_attr(f"{key}_std", metrics[f"{key}_std"])
        trial.set_user_attr("epochs", max(f.get("epochs_run", 0) for f in folds))
        return float(sum(vals) / len(vals))


def _work(study, objective: _Objective, trials: int, heartbeat: int, out: Path, on_trial) -> None:
    """Ask trials until the budget is spent; wait (and fail stale trials) while others run the rest."""
    import warnings

    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    poll = min(5.0, float(heartbeat))
    while True:
        current = study.get_trials(deepcopy=False)
        if sum(map(_finished, current)) >= trials:
            return
        waiting = any(t.state == TrialState.WAITING for t in current)
        if sum(map(_counts, current)) >= trials and not waiting:
            # The rest of the budget is running elsewhere; a lost worker's trial frees its unit
            # once its heartbeat is stale, and this worker then runs the re-queued trial.
            time.sleep(poll)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                optuna.storages.fail_stale_trials(study)
            continue
        ended = {t.number for t in current if t.state.is_finished()}
        try:
            study.optimize(objective, n_trials=1, catch=(EmoError, _OverBudget), gc_after_trial=False)
        except UpdateFinishedTrialError:
            pass  # this worker stalled past the grace period and its trial was failed by another
        rows, columns = results_rows(study, objective.space, objective.heads)
        _write_results(out, rows, columns)
        if on_trial is not None:
            by_number = {r["trial"]: r for r in rows}
            for t in study.get_trials(deepcopy=False):
                if t.state.is_finished() and t.number not in ended and t.number in by_number \
                        and t.user_attrs.get("worker") == objective.worker:
                    on_trial(by_number[t.number])


def results_rows(study, space: dict[str, dict], heads: Sequence[str]) -> tuple[list[dict], list[str]]:
    """One row per trial of the study (over-budget ones left out), and the table's columns."""
    from optuna.trial import TrialState

    names = (["head"] if len(heads) > 1 else []) + free_names(space)
    states = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
              TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}
    rows, std_columns = [], []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.user_attrs.get(OVER_ATTR):
            continue
        row: dict[str, Any] = {
            "trial": t.number, "run": t.user_attrs.get("run", "") if t.state == TrialState.COMPLETE else "",
            "state": states[t.state], "head": t.user_attrs.get("head", t.params.get("head", heads[0])),
        }
        row.update({k: _short(t.params[k]) for k in names if k in t.params})
        if t.value is not None:
            row["val_weighted_f1"] = t.value
        for key in HEADLINE:
            if key in t.user_attrs:
                row[key] = t.user_attrs[key]
            if f"{key}_std" in t.user_attrs:
                row[f"{key}_std"] = t.user_attrs[f"{key}_std"]
                if f"{key}_std" not in std_columns:
                    std_columns.append(f"{key}_std")
        row["epochs"] = t.user_attrs.get("epochs", "")
        row["worker"] = t.user_attrs.get("worker", "")
        if t.state == TrialState.FAIL:
            row["note"] = t.user_attrs.get(ERROR_ATTR) or "worker lost (no heartbeat)"
        rows.append(row)
    columns = ["trial", "run", "state", *(["head"] if "head" not in names else []), *names,
               "val_weighted_f1", *HEADLINE, *std_columns, "epochs", "worker", "note"]
    return rows, columns


def _short(value):
    return float(f"{value:.4g}") if isinstance(value, float) else value


def _write_results(out: Path, rows: list[dict], columns: list[str]) -> Path:
    """results.csv from the study itself, replaced whole: workers sharing --out never interleave."""
    path = out / "results.csv"
    tmp = out / f".results.csv.{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def _jsonable(value):
    """Tuples to lists (and so on) so a setup compares equal after a round trip through the storage."""
    import json

    return json.loads(json.dumps(value, default=str))
