"""`sweep`: many fits over heads x grid x seeds from one in-memory load of the cache.

Grid keys that are fit options (lr, batch_size, epochs, modality_dropout, per_class, ...) go to
`fit`; any other key is a head hyperparameter (d_model, dropout, ...) and goes to the heads
that accept it. Results land in DIR/results.csv (rewritten after every run, so an interrupted
sweep keeps what finished) and one run directory per fit.
"""

from __future__ import annotations

import csv
import itertools
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from emo.errors import EmoError
from emo.fusion.fit import FitOptions, fit
from emo.fusion.metrics import HEADLINE
from emo.fusion.run_dir import check_run_dir, check_writable
from emo.key_value import split_key_value

_FIT_KEYS = {f.name for f in fields(FitOptions)} - {"head", "head_params", "name", "seed"}


def parse_value(text: str) -> Any:
    """'1e-4' -> 1e-4, '64' -> 64, 'true' -> True, 'none' -> None, anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """["d_model=256", "dropout=0.2"] -> {"d_model": 256, "dropout": 0.2}."""
    out = {}
    for item in items:
        key, value = split_key_value(item, "--set")
        out[key] = parse_value(value)
    return out


def parse_grid(items: Sequence[str]) -> dict[str, list]:
    """["lr=1e-4,3e-4", "d_model=128,256"] -> {"lr": [1e-4, 3e-4], "d_model": [128, 256]}."""
    grid = {}
    for item in items:
        key, values = split_key_value(item, "--grid", "KEY=V1,V2,...")
        grid[key] = [parse_value(v) for v in values.split(",")]
    return grid


def expand(heads: Sequence[str], grid: dict[str, list], seeds: Sequence[int], random: int | None, seed: int = 0) -> list[dict]:
    """Every (head, grid point, seed), or `random` grid points drawn without replacement (seeded)."""
    keys = list(grid)
    points = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    if random is not None:
        if random < 1:
            raise EmoError(f"--random must be >= 1, got {random}")
        rng = np.random.default_rng(seed)
        chosen = rng.choice(len(points), size=min(random, len(points)), replace=False)
        points = [points[i] for i in sorted(chosen)]
    return [{"head": h, "params": p, "seed": s} for h in heads for p in points for s in seeds]


def run_name(head: str, params: dict, seed: int) -> str:
    parts = [head, *(f"{k}={v}" for k, v in params.items()), f"seed{seed}"]
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", "-".join(parts))


@dataclass
class SweepResult:
    rows: list[dict]
    csv_path: Path
    columns: list[str]


def sweep(
    cache: str | Path,
    *,
    heads: Sequence[str],
    out: str | Path,
    grid: dict[str, list] | None = None,
    seeds: Sequence[int] = (0,),
    random: int | None = None,
    modalities: Sequence[str] | None = None,
    head_params: dict | None = None,
    on_run: Callable[[dict], None] | None = None,
    overwrite: bool = False,
    **common: Any,
) -> SweepResult:
    """Fit every combination; the cache is read once (union of the heads' modalities) and shared."""
    from emo.fusion.heads import HEADS

    grid = dict(grid or {})
    if not heads:
        raise EmoError("--head: name at least one head")
    for h in heads:
        if h not in HEADS:
            raise EmoError(f"unknown head {h!r}; available: {', '.join(HEADS)}")
    for key in grid:
        if key not in _FIT_KEYS and not any(key in HEADS[h].defaults for h in heads):
            raise EmoError(f"--grid {key}: neither a fit option nor a hyperparameter of {', '.join(heads)}")
    for key in head_params or {}:
        if not any(key in HEADS[h].defaults for h in heads):
            raise EmoError(f"--set {key}: not a hyperparameter of {', '.join(heads)}")
    plan = expand(heads, grid, seeds, random)
    out = check_writable(Path(out), "sweep folder", directory=True)
    for item in plan:  # every grid point and run folder is checked before the cache is read or a run starts
        _fit_arguments(item, head_params, common, HEADS)
        check_run_dir(out / run_name(item["head"], item["params"], item["seed"]), overwrite)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EmoError(f"{out}: cannot create the sweep folder ({err.strerror or err})") from None
    data, per_head = load_for_heads(cache, heads, modalities, common)

    rows: list[dict] = []
    columns = ["run", "head", "seed", *grid, *HEADLINE]
    csv_path = out / "results.csv"
    for item in plan:
        h, params, seed = item["head"], item["params"], item["seed"]
        name = run_name(h, params, seed)
        arguments = _fit_arguments(item, head_params, common, HEADS)
        result = fit(
            cache, head=h, out=out / name, data=data, quiet=True, overwrite=overwrite,
            **{**arguments, "modalities": per_head[h], "name": name},
        )
        row = {"run": name, "head": h, "seed": seed, **params}
        for key in HEADLINE:
            row[key] = result.metrics[key]
            if f"{key}_std" in result.metrics:
                row[f"{key}_std"] = result.metrics[f"{key}_std"]
                if f"{key}_std" not in columns:
                    columns.append(f"{key}_std")
        rows.append(row)
        _write_csv(csv_path, rows, columns)
        if on_run is not None:
            on_run(row)
    return SweepResult(rows, csv_path, columns)


def _fit_arguments(item: dict, head_params: dict | None, common: dict, heads: dict) -> dict:
    """The fit keyword arguments of one grid point, validated (FitOptions checks options and hyperparameters)."""
    h, params, seed = item["head"], item["params"], item["seed"]
    fit_params = {k: v for k, v in params.items() if k in _FIT_KEYS}
    hparams = {**(head_params or {}), **{k: v for k, v in params.items() if k not in _FIT_KEYS}}
    hparams = {k: v for k, v in hparams.items() if k in heads[h].defaults}
    arguments = {**common, **fit_params, "seed": seed, "head_params": hparams}
    known = {f.name for f in fields(FitOptions)}
    try:
        FitOptions(head=h, **{k: v for k, v in arguments.items() if k in known})
    except EmoError as err:
        point = ", ".join(f"{k}={v}" for k, v in params.items())
        raise EmoError(f"sweep point {h}{' ' + point if point else ''}: {err}") from None
    return arguments


def load_for_heads(cache, heads: Sequence[str], modalities: Sequence[str] | None, common: dict):
    """(CachedData with the union of the heads' modalities, {head: its modalities}): one read of the cache."""
    from emo.accel import resolve_device
    from emo.fusion import steps

    data, per_head, _ = steps.load_for_heads(
        cache, heads, modalities, layers=common.get("layers"), label_column=common.get("label_column"),
        classes=common.get("classes"), device=resolve_device(common.get("device", "auto")),
    )
    return data, per_head


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
