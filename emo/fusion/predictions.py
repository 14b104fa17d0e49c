"""Test-set predictions of a run: one row per (clip, fold), written as predictions.csv."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass
class Predictions:
    ids: list[str]
    true: np.ndarray  # (N,) int64 class index
    predicted: np.ndarray  # (N,) int64
    probs: np.ndarray  # (N, K) float64
    fold: np.ndarray  # (N,) int64
    class_names: list[str]

    @classmethod
    def concat(cls, parts: Sequence["Predictions"]) -> "Predictions":
        return cls(
            ids=[i for p in parts for i in p.ids],
            true=np.concatenate([p.true for p in parts]),
            predicted=np.concatenate([p.predicted for p in parts]),
            probs=np.concatenate([p.probs for p in parts]),
            fold=np.concatenate([p.fold for p in parts]),
            class_names=list(parts[0].class_names),
        )

    def write_csv(self, path: Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "true", "predicted", *(f"p_{c}" for c in self.class_names), "fold"])
            for i, cid in enumerate(self.ids):
                writer.writerow([
                    cid,
                    self.class_names[self.true[i]],
                    self.class_names[self.predicted[i]],
                    *(f"{p:.6f}" for p in self.probs[i]),
                    int(self.fold[i]),
                ])
