"""Values more than one module relies on, defined once.

Standard library only: `emo.cli` reads the defaults at start-up, so `emo --help` stays instant.
"""

# Encoders `emo extract` (and the library's extractors) use when none is named.
DEFAULT_AUDIO_BACKBONE = "facebook/wav2vec2-large-robust"
DEFAULT_TEXT_BACKBONE = "beomi/KcELECTRA-base-v2022"

# Face crops: frames sampled per clip when no fps is given, and the aligned crop's side in pixels.
DEFAULT_FRAMES = 16
DEFAULT_FACE_SIZE = 224

# Audio is decoded (and the demo's audio written) as mono at this rate.
SAMPLE_RATE = 16000

# Largest finite float16. Features are clamped to it before the float16 cast: an inf in the
# cache (or in normalised inputs) would poison every head trained on it.
FLOAT16_MAX = 65504.0

# `emo demo` (emo.demo.run.run_demo and its CLI): clips per speaker and emotion, epochs per head, seed.
DEMO_CLIPS = 5
DEMO_EPOCHS = 30
DEMO_SEED = 0

# Sweeps: seconds between a running Optuna trial's heartbeats (silent for twice that: lost).
SWEEP_HEARTBEAT_S = 60
