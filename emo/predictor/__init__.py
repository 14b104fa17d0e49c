"""`emo predict`: score new clips with a fitted run, through the extractors its cache was built with.

    from emo import predict
    predict("runs/ca", ["clip.mp4", "other.wav"])          # -> [Prediction, Prediction]

    from emo.predictor import Predictor                      # load once, score many calls
    predictor = Predictor("runs/ca", device="cpu")
    predictor.predict(["a.mp4", "a.wav"], text="...")        # same stem: one clip

The top-level glue of the two stages: it imports both `emo.extract` (to rebuild and check the
run's extractors) and `emo.fusion` (the run's heads and the cache's input layout). Named
`predictor` rather than `predict` so that the package never shadows the `emo.predict` function.
"""

from emo.predictor.inputs import ClipFiles, group_files
from emo.predictor.scoring import Prediction, Predictor, predict

__all__ = ["ClipFiles", "Prediction", "Predictor", "group_files", "predict"]
