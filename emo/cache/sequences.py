"""Sequences: many clips' ragged frame sequences held as one flat array plus cumulative bounds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Sequences:
    ids: list[str]
    data: np.ndarray  # (rows, *row_shape): clip i is data[bounds[i]:bounds[i + 1]]
    bounds: np.ndarray  # (N + 1,) int64, cumulative: clip i is rows bounds[i] to bounds[i + 1]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.bounds)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.data[self.bounds[i] : self.bounds[i + 1]]

    def padded(self, max_len: int | None = None):
        """(N, Tmax, *row_shape) zero-padded array, lengths (N,), mask (N, Tmax) True on real frames.

        Sequences longer than `max_len` are cut to their first `max_len` frames.
        """
        lengths = np.minimum(self.lengths, max_len) if max_len else self.lengths
        n, t_max = len(self.ids), int(lengths.max()) if len(self.ids) else 0
        out = np.zeros((n, t_max, *self.data.shape[1:]), dtype=self.data.dtype)
        # Scatter every kept row to (clip, position) in one indexed assignment, no loop over clips.
        clip_of_row = np.repeat(np.arange(n), lengths)
        position = np.arange(len(clip_of_row)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        source = self.bounds[:-1][clip_of_row] + position
        out[clip_of_row, position] = self.data[source]
        mask = np.arange(t_max)[None, :] < lengths[:, None]
        return out, lengths.astype(np.int64), mask


def gather_rows(spans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices covering [start, end) spans in order, and the cumulative bounds of the result."""
    lengths = spans[:, 1] - spans[:, 0]
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    rows = np.repeat(spans[:, 0] - bounds[:-1], lengths) + np.arange(bounds[-1])
    return rows, bounds
