"""Declared head hyperparameters: each head states the type and range of every value it takes.

A head's `params` ({name: Param}) sits beside its `defaults`; `register_head` refuses a head
whose defaults are not all declared (or fail their own declaration). Every value that reaches a
head, from `--set`, `sweep --grid`, the Python API or a saved run's config, is checked here
once, before anything is built, with the accepted range in the message:

    head 'audio': dropout=5: expected a number in [0, 1)

Ranges are generous for research but bounded, so that a typo or a crafted run record cannot
ask for a model that fills the machine (the registry also counts parameters before building).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from emo.errors import EmoError

_KIND_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its type, its range (numbers) or choices (strings), and whether None is allowed.

    lo / hi are inclusive bounds; lo_open / hi_open make them exclusive (lr > 0, dropout < 1).
    """

    kind: type
    lo: float | None = None
    hi: float | None = None
    hi_open: bool = False
    lo_open: bool = False
    choices: tuple = ()
    optional: bool = False  # None is a meaningful value (documented in `help`)
    help: str = ""

    def describe(self) -> str:
        if self.choices:
            text = "one of " + ", ".join(map(str, self.choices))
        else:
            text = _KIND_NAMES[self.kind]
            if self.kind in (int, float) and (self.lo is not None or self.hi is not None):
                lo = "-inf" if self.lo is None else _number(self.lo)
                hi = "inf" if self.hi is None else _number(self.hi)
                text += f" in {'(' if self.lo_open or self.lo is None else '['}{lo}, {hi}{')' if self.hi_open or self.hi is None else ']'}"
        return text + (" (or none)" if self.optional else "")

    def check(self, name: str, value: Any) -> Any:
        """The value, coerced to the declared type (an integral float for an int, an int for a float);
        ValueError with the accepted range when it does not fit."""
        given = value
        if value is None:
            if self.optional:
                return None
            raise ValueError(self._wrong(name, value))
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            raise ValueError(self._wrong(name, value))
        if self.kind is str:
            if isinstance(value, str) and (not self.choices or value in self.choices):
                return value
            raise ValueError(self._wrong(name, value))
        # Numbers: bools are ints to Python but never a width or a rate here.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(self._wrong(name, value))
        if not math.isfinite(value):
            raise ValueError(self._wrong(name, value))
        if self.kind is int:
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError(self._wrong(name, value))
                value = int(value)
        else:
            value = float(value)
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            raise ValueError(self._wrong(name, given))
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            raise ValueError(self._wrong(name, given))
        if self.choices and value not in self.choices:
            raise ValueError(self._wrong(name, given))
        return value

    def _wrong(self, name: str, value: Any) -> str:
        return f"{name}={value!r}: expected {self.describe()}"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


@dataclass(frozen=True)
class Divisible:
    """A rule between two values: `numerator` must be a multiple of `denominator` (attention heads)."""

    numerator: str
    denominator: str

    def check(self, values: Mapping[str, Any]) -> None:
        a, b = values.get(self.numerator), values.get(self.denominator)
        if isinstance(a, int) and isinstance(b, int) and b > 0 and a % b:
            raise ValueError(
                f"{self.numerator}={a} is not divisible by {self.denominator}={b} "
                f"(each attention head gets {self.numerator} / {self.denominator} dimensions)"
            )


def check_values(head: str, params: Mapping[str, Param], rules, values: Mapping[str, Any]) -> dict[str, Any]:
    """Validated copy of a complete hyperparameter dict (defaults already merged in); EmoError naming the head."""
    unknown = sorted(set(values) - set(params))
    if unknown:
        raise EmoError(
            f"head {head!r}: unknown hyperparameter(s) {', '.join(unknown)}; accepted: {', '.join(sorted(params))}"
        )
    out = {}
    try:
        for name, value in values.items():
            out[name] = params[name].check(name, value)
        for rule in rules:
            rule.check(out)
    except ValueError as err:
        raise EmoError(f"head {head!r}: {err}") from None
    return out


# -- shared declarations (the heads' modules pick what they take) -----------------------------
DROPOUT = Param(float, 0.0, 1.0, hi_open=True, help="dropout probability")
POOLINGS = ("mean", "stats", "attentive")
POOLING = Param(str, choices=POOLINGS, help="frames -> clip vector: mean, mean+std, attentive statistics (ECAPA)")
TARGET_RATE = Param(
    float, 0.0, 10000.0, lo_open=True, optional=True,
    help="Hz the frames are averaged down to before attention (none: the cached rate)",
)
LAYER_MIXES = ("weighted", "concat")
LAYER_MIX = Param(str, choices=LAYER_MIXES, help="cached layers -> frame vector: learned weighted sum, or concatenation")
SEQUENCE_PARAMS = {
    "d_model": Param(int, 1, 8192, help="width of the projected sequence"),
    "heads": Param(int, 1, 256, help="attention heads (d_model must be a multiple)"),
    "blocks": Param(int, 1, 64, help="transformer encoder blocks"),
    "ffn": Param(int, 1, 65536, help="feed-forward width of each block"),
    "dropout": DROPOUT,
    "target_rate": TARGET_RATE,
    "pooling": POOLING,
    "layer_mix": LAYER_MIX,
}
SEQUENCE_RULES = (Divisible("d_model", "heads"),)
FACE_PARAMS = {
    "face_size": Param(int, 8, 1024, optional=True, help="side the crops are downsized to (none: the cached size)"),
    "face_patch": Param(int, 1, 256, help="patch side in pixels"),
    "face_dim": Param(int, 8, 4096, help="width of the face patch encoder"),
    "face_layers": Param(int, 1, 64, help="transformer blocks of the face patch encoder"),
    "face_heads": Param(int, 1, 256, help="attention heads of the face patch encoder"),
    "face_pool": Param(str, choices=("mean", "cls"), help="patch tokens -> frame vector"),
    "face_flip": Param(bool, help="random horizontal flips in training"),
    "face_jitter": Param(int, 0, 64, help="pixels of random shift in training"),
}
FACE_RULES = (Divisible("face_dim", "face_heads"),)
