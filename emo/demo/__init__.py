"""`emo demo`: the whole pipeline on a dataset emo generates itself, offline, in minutes."""

from emo.demo.run import DEMO_HEADS, run_demo
from emo.demo.synth import make_demo_dataset

__all__ = ["DEMO_HEADS", "make_demo_dataset", "run_demo"]
