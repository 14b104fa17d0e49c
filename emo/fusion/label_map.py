"""Class correspondence between another corpus and a run: by name, then `--label-map SRC=DST`.

SRC is a class of the other cache, DST a class the run was trained on; `SRC=-` leaves SRC out.
A source class with neither a map entry nor a same-named run class (exact, else the one run
class equal to it ignoring case) is left out, and its clips are counted, not scored.

Each run class receives at most one source class. Pooling two (RAVDESS `calm` and `neutral`
both -> `neutral`) is refused: the pooled class's recall, and so UAR, would then depend on
how the other corpus divides it, and its confusion row would no longer be one emotion. Leave
one of them out (`calm=-`) instead. A map that leaves fewer than two shared classes is refused
too: with one class every prediction restricted to the shared classes is right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from emo.errors import EmoError
from emo.key_value import option_items, split_key_value

LEAVE_OUT = "-"


def parse_label_map(items: Sequence[str] | str | None) -> dict[str, str]:
    """["calm=neutral,boredom=-", "ps=surprise"] -> {"calm": "neutral", "boredom": "-", "ps": "surprise"}."""
    out: dict[str, str] = {}
    for pair in option_items(items, ","):
        src, dst = split_key_value(pair, "--label-map", "SRC=DST (SRC=- leaves SRC out)")
        if src in out and out[src] != dst:
            raise EmoError(f"--label-map: {src!r} is mapped twice ({out[src]} and {dst}); a clip has one class")
        out[src] = dst
    return out


@dataclass
class LabelMapping:
    """Which source class (of the other cache) is scored as which run class."""

    source_classes: list[str]
    run_classes: list[str]
    to_run: dict[str, str]  # source class -> run class, for the classes scored
    left_out: list[str]  # source classes not scored (no counterpart, or mapped to "-")
    given: dict[str, str]  # the explicit entries, as parsed (recorded so a rescore maps the same way)

    @property
    def shared(self) -> list[str]:
        """Run classes that receive a source class, in the run's order."""
        targets = set(self.to_run.values())
        return [c for c in self.run_classes if c in targets]

    @property
    def unshared(self) -> list[str]:
        """Run classes no source class maps to: the model may predict them, the truth never is one."""
        return [c for c in self.run_classes if c not in self.to_run.values()]

    def source_to_run_index(self) -> np.ndarray:
        """(len(source_classes) + 1,) int64: run class index per source class index, -1 when left out
        (the extra last slot maps an unlabelled -1 to -1)."""
        out = np.full(len(self.source_classes) + 1, -1, dtype=np.int64)
        for i, name in enumerate(self.source_classes):
            if name in self.to_run:
                out[i] = self.run_classes.index(self.to_run[name])
        return out

    def describe(self) -> dict:
        return {"given": dict(self.given), "to_run": dict(self.to_run), "left_out": list(self.left_out),
                "shared": self.shared, "unshared_run_classes": self.unshared}


def resolve_label_map(
    source_classes: Sequence[str], run_classes: Sequence[str], given: dict[str, str], where: str
) -> LabelMapping:
    """The mapping from explicit `given` entries plus name matches; one-line errors for bad maps."""
    source_classes, run_classes = list(source_classes), list(run_classes)
    for src, dst in given.items():
        if src not in source_classes:
            raise EmoError(f"--label-map {src}={dst}: {src!r} is not a class of {where} "
                           f"(its classes: {', '.join(source_classes)})")
        if dst != LEAVE_OUT and dst not in run_classes:
            raise EmoError(f"--label-map {src}={dst}: {dst!r} is not a class of the run "
                           f"(its classes: {', '.join(run_classes)})")
    folded: dict[str, list[str]] = {}
    for name in run_classes:
        folded.setdefault(name.casefold(), []).append(name)
    to_run: dict[str, str] = {}
    left_out: list[str] = []
    for src in source_classes:
        if src in given:
            dst = given[src]
        elif src in run_classes:
            dst = src
        elif len(folded.get(src.casefold(), [])) == 1:
            dst = folded[src.casefold()][0]
        else:
            dst = LEAVE_OUT
        if dst == LEAVE_OUT:
            left_out.append(src)
        else:
            to_run[src] = dst
    by_target: dict[str, list[str]] = {}
    for src, dst in to_run.items():
        by_target.setdefault(dst, []).append(src)
    for dst, sources in by_target.items():
        if len(sources) > 1:
            raise EmoError(
                f"--label-map: {' and '.join(map(repr, sources))} of {where} would both be scored as the run's "
                f"{dst!r}, which makes its recall depend on how they mix; leave all but one out, e.g. {sources[-1]}=-"
            )
    mapping = LabelMapping(source_classes, run_classes, to_run, left_out, dict(given))
    if not to_run:
        raise EmoError(f"{where}: none of its classes ({', '.join(source_classes)}) matches the run's "
                       f"({', '.join(run_classes)}); map them with --label-map SRC=DST")
    if len(mapping.shared) < 2:
        raise EmoError(f"{where}: only {mapping.shared[0]!r} is shared with the run's classes "
                       f"({', '.join(run_classes)}); scoring needs at least 2 (map more with --label-map SRC=DST)")
    return mapping
