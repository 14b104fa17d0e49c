"""Extract: dataset adapters -> Clip records -> frozen encoders -> the HDF5 cache (`run_extraction`)."""

from emo.extract.run.dispatch import ExtractionRequest, run_extraction

__all__ = ["ExtractionRequest", "run_extraction"]
