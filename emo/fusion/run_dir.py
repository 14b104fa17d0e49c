"""A fitted-run directory: everything to reproduce, score and reuse a fit.

    config.json          cache path + fingerprints, head config, options, split, seed, emo version
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
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from emo.errors import EmoError

CONFIG = "config.json"
METRICS = "metrics.json"
PREDICTIONS = "predictions.csv"
SPLITS = "splits.json"
HISTORY = "history.json"


def weights_name(fold: int, n_folds: int) -> str:
    return "model.safetensors" if n_folds == 1 else f"model-fold{fold}.safetensors"


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def check_run_dir(out: Path, overwrite: bool) -> Path:
    """Refuse to train into a folder holding a run (checked before training, written after)."""
    out = Path(out)
    if (out / CONFIG).exists() and not overwrite:
        raise EmoError(f"{out}: already holds a run (config.json); choose another --out or pass --overwrite")
    if out.exists() and not out.is_dir():
        raise EmoError(f"{out}: exists and is not a directory")
    return out


def save_weights(head, path: Path, fold: int) -> None:
    from safetensors.torch import save_model

    metadata = {"format": "emo-head", "head_config": json.dumps(head.config), "fold": str(fold)}
    save_model(head, str(path), metadata=metadata)


def load_weights(path: Path, fallback_config: dict | None = None):
    """A head rebuilt from the config in the file's metadata, with its weights, on the CPU, in eval mode."""
    from safetensors import safe_open
    from safetensors.torch import load_model

    from emo.fusion.heads import Head

    if not path.exists():
        raise EmoError(f"{path}: missing weights file of this run")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for a damaged header
        raise EmoError(f"{path}: not a readable safetensors file ({str(exc)[:120]})") from None
    config = json.loads(metadata["head_config"]) if "head_config" in metadata else fallback_config
    if config is None:
        raise EmoError(f"{path}: no head config in the metadata and none in config.json")
    head = Head.from_config(config)
    missing, unexpected = load_model(head, str(path), strict=False, device="cpu")
    if missing or unexpected:
        raise EmoError(f"{path}: weights do not fit the head config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return head.eval()


@dataclass
class SavedRun:
    path: Path
    config: dict
    metrics: dict
    splits: list[dict]  # per fold: {"fold", "train", "val", "test"} clip ids

    @property
    def n_folds(self) -> int:
        return len(self.splits)

    def heads(self) -> list:
        fallback = self.config.get("head")
        return [load_weights(self.path / weights_name(k, self.n_folds), fallback) for k in range(self.n_folds)]


def load_run(path: str | Path) -> SavedRun:
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise EmoError(f"{path}: not a run directory (no {CONFIG}); runs are made by `emo fit --out`")
    try:
        config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
        metrics = json.loads((path / METRICS).read_text(encoding="utf-8")) if (path / METRICS).exists() else {}
        splits = json.loads((path / SPLITS).read_text(encoding="utf-8")) if (path / SPLITS).exists() else []
    except json.JSONDecodeError as exc:
        raise EmoError(f"{path}: damaged run file ({exc})") from None
    return SavedRun(path, config, metrics, splits)


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
    """Write a RunResult (emo.fusion.fit) as a run directory."""
    from emo.fusion.report import plot_confusion, plot_curves

    n_folds = len(result.heads)
    config = {**result.config, "weights": [weights_name(k, n_folds) for k in range(n_folds)]}
    result.config = config
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("model*.safetensors"):  # an overwritten run may have had other folds
        stale.unlink()
    for fold, head in enumerate(result.heads):
        save_weights(head, out / weights_name(fold, n_folds), fold)
    write_json(out / CONFIG, config)
    write_json(out / METRICS, result.metrics)
    write_json(out / SPLITS, result.splits)
    write_json(out / HISTORY, result.histories)
    result.predictions.write_csv(out / PREDICTIONS)
    title = f"{config['head']['name']} · {config['split']['spec']}"
    # metrics["classes"]: the scored classes (a cross-corpus test scores those shared with the test cache)
    plot_confusion(result.metrics["confusion"], result.metrics["classes"], out / "confusion.png", title)
    plot_curves(result.histories, out / "curves.png", [f["best_epoch"] for f in _fold_metrics(result.metrics)])


def _fold_metrics(metrics: dict) -> list[dict]:
    return metrics.get("folds") or [metrics]
