"""Plots of a run: the confusion matrix and the per-epoch training curves (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only: never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(confusion: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, title: str = "") -> None:
    """Counts in the cells, colour = share of the true class (rows sum to 1)."""
    plt = _pyplot()
    counts = np.asarray(confusion, dtype=np.int64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.7 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), count in np.ndenumerate(counts):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if shares[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(histories: Sequence[Sequence[dict]], path: Path, best_epochs: Sequence[int] = ()) -> None:
    """Train/val loss (left) and validation weighted F1 (right) per epoch, one line per fold."""
    plt = _pyplot()
    fig, (loss_ax, f1_ax) = plt.subplots(1, 2, figsize=(11, 4))
    many = len(histories) > 1
    for fold, history in enumerate(histories):
        epochs = [r["epoch"] for r in history]
        suffix = f" fold {fold}" if many else ""
        color = plt.cm.tab10(fold % 10)
        loss_ax.plot(epochs, [r["train_loss"] for r in history], color=color, label=f"train{suffix}")
        if history and "val_loss" in history[0]:
            loss_ax.plot(epochs, [r["val_loss"] for r in history], color=color, linestyle="--", label=f"val{suffix}")
            f1_ax.plot(epochs, [r["val_weighted_f1"] for r in history], color=color, label=f"val{suffix}")
        if fold < len(best_epochs):
            f1_ax.axvline(best_epochs[fold], color=color, alpha=0.3, linewidth=1)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy")
    loss_ax.legend(fontsize="small", ncol=2 if many else 1)
    f1_ax.set_xlabel("epoch")
    f1_ax.set_ylabel("validation weighted F1")
    f1_ax.set_ylim(0, 1)
    if f1_ax.get_legend_handles_labels()[0]:  # validation curves (best-epoch markers alone carry no label)
        f1_ax.legend(fontsize="small", ncol=2 if many else 1)
    else:
        f1_ax.text(0.5, 0.5, "no validation part", ha="center", va="center", transform=f1_ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
