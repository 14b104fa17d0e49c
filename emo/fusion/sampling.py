"""Clip sampling from the speech-text paper: transcript deduplication and N clips per class.

Both return positions into the arrays they are given and are seeded through a numpy Generator.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from emo.errors import EmoError
from emo.fusion.options import ORDERS  # one definition, shared with FitOptions


def dedup_text(texts: Sequence[str]) -> np.ndarray:
    """Positions kept when repeated transcripts are dropped (the first clip per text stays).

    Clips without a transcript are all kept: an empty text is not a repeat of another.
    Texts are compared after stripping surrounding whitespace.
    """
    normalised = np.array([(t or "").strip() for t in texts], dtype=object)
    if normalised.size == 0:
        return np.array([], dtype=np.int64)
    _, first = np.unique(normalised, return_index=True)
    keep = np.zeros(normalised.size, dtype=bool)
    keep[first] = True
    keep[normalised == ""] = True
    return np.flatnonzero(keep)


def per_class(
    pool: np.ndarray,
    labels: np.ndarray,
    durations: np.ndarray,
    n: int,
    order: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """At most `n` clips of each class from `pool` (positions), picked at random or by duration.

    `short` takes each class's shortest clips, `long` its longest (ties broken at random, so the
    choice is still seeded). A class with fewer than `n` clips keeps all of them.
    """
    if order not in ORDERS:
        raise EmoError(f"--order {order!r}: use one of {', '.join(ORDERS)}")
    if n < 1:
        raise EmoError(f"--per-class must be at least 1, got {n}")
    pool = np.asarray(pool, dtype=np.int64)
    shuffled = pool[rng.permutation(pool.size)]
    if order != "random":
        key = durations[shuffled].astype(np.float64)
        if np.isnan(key).any():
            raise EmoError(f"--order {order} needs clip durations; some clips have none")
        # Stable sort keeps the random order among equal durations.
        shuffled = shuffled[np.argsort(key if order == "short" else -key, kind="stable")]
    # Rank of each clip within its class, in the chosen order; keep ranks < n.
    cls = labels[shuffled]
    by_class = np.argsort(cls, kind="stable")
    sorted_cls = cls[by_class]
    starts = np.searchsorted(sorted_cls, sorted_cls, side="left")
    rank = np.empty(shuffled.size, dtype=np.int64)
    rank[by_class] = np.arange(shuffled.size) - starts
    return np.sort(shuffled[rank < n])
