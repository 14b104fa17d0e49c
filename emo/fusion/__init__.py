"""Fusion: train heads from a cache (`fit`), rescore runs (`evaluate`), sweep, compare runs.

Never imports `emo.extract`: the cache file is the only thing fusion reads.
"""

from emo.fusion.data import CachedData, load_data
from emo.fusion.evaluate import EvalResult, evaluate
from emo.fusion.fit import FitOptions, RunResult, fit
from emo.fusion.predictions import Predictions
from emo.fusion.run_dir import SavedRun, find_runs, load_run
from emo.fusion.runs import summarize_runs
from emo.fusion.sweep import SweepResult, sweep

__all__ = [
    "CachedData",
    "EvalResult",
    "FitOptions",
    "Predictions",
    "RunResult",
    "SavedRun",
    "SweepResult",
    "evaluate",
    "find_runs",
    "fit",
    "load_data",
    "load_run",
    "summarize_runs",
    "sweep",
]
