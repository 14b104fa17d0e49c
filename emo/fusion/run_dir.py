"""A fitted-run directory: everything to reproduce, score and reuse a fit.

    config.json          the run record (emo.fusion.run_record): cache path, fingerprints, layers and
                         extract options, head config, options, split, seed, weights, emo version
    metrics.json         accuracy, weighted_f1, macro_f1, uar at the top (k-fold: means, *_std, folds)
    predictions.csv      id, true, predicted, p_<class>..., fold
    splits.json          the train/val/test clip ids of every fold
    history.json         per-epoch records of every fold
    model.safetensors    best weights (k-fold: model-fold<k>.safetensors), head config in the metadata
    confusion.png, curves.png

Weights are safetensors only (never pickle); a head is rebuilt from its stored config.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from emo.errors import EmoError, describe

from emo.fusion.run_record import CONFIG, RunRecord

METRICS = "metrics.json"
PREDICTIONS = "predictions.csv"
SPLITS = "splits.json"
HISTORY = "history.json"


def weights_name(fold: int, n_folds: int) -> str:
    return "model.safetensors" if n_folds == 1 else f"model-fold{fold}.safetensors"


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def check_writable(path: Path, what: str, directory: bool) -> Path:
    """Refuse an output that cannot be written, before any work starts (not after an hour of training).

    `path` itself may not exist yet; its nearest existing ancestor must be a writable directory.
    """
    path = Path(path)
    if path.exists() and path.is_dir() != directory:
        raise EmoError(f"{path}: {what} exists and is {'not ' if directory else ''}a directory")
    ancestor = path if path.exists() else path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise EmoError(f"{path}: cannot write the {what}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise EmoError(f"{path}: cannot write the {what}: no write permission in {ancestor}")
    return path


def check_run_dir(out: Path, overwrite: bool) -> Path:
    """Refuse to train into a folder holding a run, or one that cannot be written (checked before training)."""
    out = check_writable(Path(out), "run directory", directory=True)
    if (out / CONFIG).exists() and not overwrite:
        raise EmoError(f"{out}: already holds a run (config.json); choose another --out or pass --overwrite")
    return out


def save_weights(head, path: Path, fold: int) -> None:
    from safetensors.torch import save_model

    metadata = {"format": "emo-head", "head_config": json.dumps(head.config), "fold": str(fold)}
    save_model(head, str(path), metadata=metadata)


def load_weights(path: Path, config: dict):
    """The head `config` (config.json's, already checked) with the weights of `path`, on the CPU, in eval mode.

    Before any weights are read: the file's header must be readable, the head config in its
    metadata (when there) must be JSON and equal to config.json's, and its tensors must be exactly
    the head's names and shapes (checked against a head built on the meta device). After: every
    floating-point tensor must be finite (a diverged or damaged run is refused, not scored as NaN).
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_model

    from emo.fusion.heads import Head

    if not path.is_file():
        raise EmoError(f"{path}: missing weights file of this run")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            stored = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types for a damaged header
        raise EmoError(f"{path}: not a readable safetensors file ({str(exc)[:120]})") from None
    if "head_config" in metadata:
        try:
            recorded = json.loads(metadata["head_config"])
        except json.JSONDecodeError:
            raise EmoError(f"{path}: the head config in the file's metadata is not JSON") from None
        if recorded != json.loads(json.dumps(config)):
            raise EmoError(f"{path}: the head config in the file's metadata differs from the run's config.json")
    from emo.fusion.heads.registry import MAX_HEAD_VALUES

    with torch.device("meta"):
        probe = Head.from_config(config)
    expected = {name: tuple(t.shape) for name, t in probe.state_dict().items()}
    # Fitted arrays sized by the data (a classical head's support vectors, ...) take their shape from
    # the file; their total size is still bounded below.
    sized_by_file = set(getattr(probe, "model_buffers", ()))
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    wrong = [f"{n} {stored[n]} (the head has {expected[n]})" for n in expected
             if n in stored and stored[n] != expected[n] and n not in sized_by_file]
    total = sum(math.prod(shape) for shape in stored.values())
    if total > MAX_HEAD_VALUES:
        raise EmoError(f"{path}: {total / 1e6:.0f} M stored values exceeds the limit of {MAX_HEAD_VALUES / 1e6:.0f} M")
    if missing or extra or wrong:
        parts = [f"missing {', '.join(missing[:3])}" if missing else "", f"unexpected {', '.join(extra[:3])}" if extra else "",
                 f"wrong shape {'; '.join(wrong[:3])}" if wrong else ""]
        raise EmoError(f"{path}: weights do not fit the head config ({'; '.join(p for p in parts if p)})")
    head = Head.from_config(config)
    try:
        load_model(head, str(path), strict=True, device="cpu")
    except Exception as exc:  # e.g. a tensor whose bytes do not match its header
        raise EmoError(f"{path}: cannot read the weights ({describe(exc)})") from None
    bad = [name for name, t in head.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise EmoError(
            f"{path}: non-finite weights (NaN/inf) in {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}: "
            "the run diverged or the file is damaged; refit it"
        )
    return head.eval()


@dataclass
class SavedRun:
    path: Path
    record: RunRecord
    metrics: dict
    splits: list[dict]  # per fold: {"fold", "train", "val", "test"} clip ids ([] when splits.json is absent)

    @property
    def weights(self) -> list[str]:
        """One file per fold (from config.json, else the files present)."""
        return self.record.weights

    @property
    def n_folds(self) -> int:
        return len(self.weights)

    def heads(self) -> list:
        return [load_weights(self.path / name, self.record.head) for name in self.weights]


def load_run(path: str | Path) -> SavedRun:
    """A run directory's records, each checked (emo.fusion.run_checks) before anything is built from them."""
    from emo.fusion.run_checks import check_splits

    path = Path(path)
    record = RunRecord.read(path)
    records = {}
    for name, default in ((METRICS, {}), (SPLITS, [])):
        file = path / name
        if not file.exists():
            records[name] = default
            continue
        try:
            records[name] = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
            raise EmoError(f"{file}: damaged run file ({str(exc)[:160]})") from None
    splits = records[SPLITS]
    if (path / SPLITS).exists():
        check_splits(splits, len(record.weights), path)
    metrics = records[METRICS] if isinstance(records[METRICS], dict) else {}
    return SavedRun(path, record, metrics, splits)


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories among `paths`, each taken as a run or searched (recursively) for runs."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise EmoError(f"{p}: no such directory")
        if (p / CONFIG).is_file():
            found.append(p)
        else:
            found.extend(sorted(c.parent for c in p.rglob(CONFIG)))
    return found


def save_run(out: Path, result) -> None:
    """Write a RunResult (emo.fusion.fit) as a run directory, all or nothing.

    Everything is written into a hidden staging folder beside `out` first; only a complete run is
    moved into place (renamed, or its files moved into an existing folder with config.json last,
    so a folder never looks like a run before it is one). Any failure removes the staging folder.
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as err:
        raise EmoError(f"{out}: cannot write the run directory ({err.strerror or err})") from None
    try:
        _write_run(staging, result)
        if not out.exists():
            os.replace(staging, out)
            return
        for stale in out.glob("model*.safetensors"):  # an overwritten run may have had other folds
            stale.unlink()
        for file in sorted(staging.iterdir(), key=lambda f: f.name == CONFIG):
            os.replace(file, out / file.name)
        staging.rmdir()
    except OSError as err:
        raise EmoError(f"{out}: cannot write the run directory ({err.strerror or err})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_run(out: Path, result) -> None:
    from emo.fusion.report import plot_confusion, plot_curves

    record = result.record
    for fold, (name, head) in enumerate(zip(record.weights, result.heads, strict=True)):
        save_weights(head, out / name, fold)
    write_json(out / METRICS, result.metrics)
    write_json(out / SPLITS, result.splits)
    write_json(out / HISTORY, result.histories)
    result.predictions.write_csv(out / PREDICTIONS)
    title = f"{record.head['name']} · {record.split.spec}"
    if record.test_cache is not None:  # the scores are on another corpus
        title += f" · test {Path(record.test_cache.path).name}"
    # metrics["classes"]: the scored classes (a cross-corpus test scores those shared with the test cache)
    plot_confusion(result.metrics["confusion"], result.metrics["classes"], out / "confusion.png", title)
    plot_curves(result.histories, out / "curves.png", [f["best_epoch"] for f in _fold_metrics(result.metrics)])
    record.write(out)


def _fold_metrics(metrics: dict) -> list[dict]:
    return metrics.get("folds") or [metrics]
