"""emo: emotion recognition from speech, faces and transcripts.

Extract frozen-encoder sequences once into an HDF5 cache (`emo extract`), then train
fusion heads from that cache in seconds (`emo fit`), and score new clips with a fitted
run (`emo predict`, or `emo.predict(run, files)` from Python).
"""

__version__ = "0.1.0"

# Loaded on first use (PEP 562), so that `import emo` stays instant and pulls in no torch.
_LAZY = {"predict": "emo.predictor", "Predictor": "emo.predictor", "Prediction": "emo.predictor"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'emo' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
