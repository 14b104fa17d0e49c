"""Search spaces for `emo sweep --search optuna`: a default per head, a JSON/YAML file, or a --grid.

A space maps a name (a fit option such as `lr`, or a head hyperparameter such as `d_model`)
to one of:

    {"low": 1e-5, "high": 3e-3, "log": true}     float range (log-uniform with "log")
    {"low": 1, "high": 4}                        int range (both bounds integers; "step" optional)
    {"choices": [64, 128, 256]}  or  [64, 128]   categorical
    0.1                                          fixed: not searched, passed to every trial

A name applies to the heads that accept it (fit options apply to all), as with --grid.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from emo.errors import EmoError

# The default space: ranges known to matter for these heads (learning rate first: SUPERB results
# only reproduce when it is tuned per encoder). A head gets the entries it has a hyperparameter for.
DEFAULT_FIT_SPACE: dict[str, Any] = {
    "lr": {"low": 1e-5, "high": 3e-3, "log": True},
    "weight_decay": {"low": 1e-4, "high": 0.1, "log": True},
    "batch_size": {"choices": [16, 32, 64]},
}
DEFAULT_HEAD_SPACE: dict[str, Any] = {
    "d_model": {"choices": [64, 128, 256, 512]},
    "heads": {"choices": [2, 4, 8]},  # divides every d_model choice
    "blocks": {"low": 1, "high": 4},
    "ffn": {"choices": [256, 512, 1024, 2048]},
    "hidden": {"choices": [64, 128, 256, 512]},
    "dropout": {"low": 0.0, "high": 0.5},
    # The scikit-learn baselines (logreg, svm): regularisation and the RBF width.
    "C": {"low": 1e-2, "high": 1e2, "log": True},
    "gamma": {"low": 1e-4, "high": 1.0, "log": True},
}
# Only for heads that train with a modality hidden (absent_ok) and take more than one modality.
DEFAULT_DROPOUT_SPACE: dict[str, Any] = {"modality_dropout": {"low": 0.0, "high": 0.5}}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def normalize(space: dict[str, Any], where: str) -> dict[str, dict]:
    """Every entry as {"type": float|int|categorical|fixed, ...}; EmoError naming `where` and the key."""
    if not isinstance(space, dict) or not space:
        raise EmoError(f"{where}: a search space must be a non-empty mapping of name -> range, choices or value")
    out: dict[str, dict] = {}
    for name, spec in space.items():
        prefix = f"{where}: {name}"
        if isinstance(spec, list):
            spec = {"choices": spec}
        if not isinstance(spec, dict):
            if spec is not None and not isinstance(spec, (str, int, float, bool)):
                raise EmoError(f"{prefix}: expected a range, a list of choices or a value, got {spec!r}")
            out[name] = {"type": "fixed", "value": spec}
            continue
        unknown = set(spec) - {"low", "high", "log", "step", "choices", "type", "value"}
        if unknown:
            raise EmoError(f"{prefix}: unknown field(s) {', '.join(sorted(unknown))} (use low/high/log/step, choices or value)")
        if "choices" in spec:
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise EmoError(f"{prefix}: choices must be a non-empty list")
            if any(not (c is None or isinstance(c, (str, int, float, bool))) for c in choices):
                raise EmoError(f"{prefix}: choices must be numbers, strings, booleans or null")
            if len(set(map(json.dumps, choices))) != len(choices):
                raise EmoError(f"{prefix}: choices repeat a value")
            out[name] = {"type": "fixed", "value": choices[0]} if len(choices) == 1 else {"type": "categorical", "choices": choices}
            continue
        if "value" in spec:
            out[name] = {"type": "fixed", "value": spec["value"]}
            continue
        if "low" not in spec or "high" not in spec:
            raise EmoError(f"{prefix}: a range needs both low and high")
        low, high = spec["low"], spec["high"]
        if not (_is_number(low) and _is_number(high)):
            raise EmoError(f"{prefix}: low and high must be numbers, got {low!r} and {high!r}")
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise EmoError(f"{prefix}: low ({low}) must be <= high ({high})")
        kind = spec.get("type") or ("int" if _is_int(low) and _is_int(high) else "float")
        if kind not in ("int", "float"):
            raise EmoError(f"{prefix}: type must be int or float for a range, got {kind!r}")
        log = bool(spec.get("log", False))
        if log and low <= 0:
            raise EmoError(f"{prefix}: a log range needs low > 0, got {low}")
        step = spec.get("step")
        if step is not None and (not _is_number(step) or step <= 0):
            raise EmoError(f"{prefix}: step must be a positive number, got {step!r}")
        if step is not None and log:
            raise EmoError(f"{prefix}: step and log cannot be combined")
        if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
            raise EmoError(f"{prefix}: an int range needs integer bounds, got {low} and {high}")
        if low == high:
            out[name] = {"type": "fixed", "value": int(low) if kind == "int" else float(low)}
            continue
        entry: dict[str, Any] = {"type": kind, "low": int(low) if kind == "int" else float(low),
                                 "high": int(high) if kind == "int" else float(high), "log": log}
        if step is not None:
            entry["step"] = int(step) if kind == "int" else float(step)
        out[name] = entry
    return out


def load_space_file(path: str | Path) -> dict[str, dict]:
    """A JSON or YAML (.yaml/.yml) space file, normalised."""
    path = Path(path)
    if not path.is_file():
        raise EmoError(f"--space {path}: no such file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text)
        else:
            raw = json.loads(text)
    except Exception as exc:  # yaml and json raise their own error types; one line either way
        raise EmoError(f"--space {path}: not valid {'YAML' if path.suffix.lower() in ('.yaml', '.yml') else 'JSON'} ({str(exc).splitlines()[0]})") from None
    return normalize(raw, f"--space {path}")


def grid_space(grid: dict[str, list]) -> dict[str, dict]:
    """--grid KEY=V1,V2 as categorical choices (a single value is fixed)."""
    return normalize({k: list(v) for k, v in grid.items()}, "--grid")


def default_space(heads: Sequence[str]) -> dict[str, dict]:
    """The documented default: fit options for every head, plus the head hyperparameters they have."""
    from emo.fusion.heads import HEADS
    from emo.fusion.heads.classical import ClassicalHead

    # Learning rate, weight decay and batch size mean nothing to a scikit-learn baseline.
    space = {} if all(issubclass(HEADS[h], ClassicalHead) for h in heads) else dict(DEFAULT_FIT_SPACE)
    for name in heads:
        cls = HEADS[name]
        space.update({k: v for k, v in DEFAULT_HEAD_SPACE.items() if k in cls.defaults})
        if cls.absent_ok and cls.requires.hi > 1:
            space.update(DEFAULT_DROPOUT_SPACE)
    return normalize(space, "default space")


def free_names(space: dict[str, dict]) -> list[str]:
    return [name for name, spec in space.items() if spec["type"] != "fixed"]


def applies(name: str, head: str, fit_keys: set[str]) -> bool:
    from emo.fusion.heads import HEADS

    return name in fit_keys or name in HEADS[head].defaults


def suggest(trial, space: dict[str, dict], head: str, fit_keys: set[str]) -> dict[str, Any]:
    """This trial's values of every entry that applies to `head` (fixed entries included)."""
    values: dict[str, Any] = {}
    for name, spec in space.items():
        if not applies(name, head, fit_keys):
            continue
        kind = spec["type"]
        if kind == "fixed":
            values[name] = spec["value"]
        elif kind == "categorical":
            values[name] = trial.suggest_categorical(name, spec["choices"])
        elif kind == "int":
            values[name] = trial.suggest_int(name, spec["low"], spec["high"], step=spec.get("step", 1), log=spec["log"])
        else:
            values[name] = trial.suggest_float(name, spec["low"], spec["high"], step=spec.get("step"), log=spec["log"])
    return values


def describe(spec: dict) -> str:
    """One short text per entry, for messages: 'log 1e-05..0.003', '{16, 32}', '= 0.1'."""
    kind = spec["type"]
    if kind == "fixed":
        return f"= {spec['value']!r}"
    if kind == "categorical":
        return "{" + ", ".join(map(repr, spec["choices"])) + "}"
    return f"{'log ' if spec['log'] else ''}{spec['low']}..{spec['high']}"
