"""emo: emotion recognition from speech, faces and transcripts.

Extract frozen-encoder sequences once into an HDF5 cache (`emo extract`), then train
fusion heads from that cache in seconds (`emo fit`).
"""

__version__ = "0.1.0"
