"""Face crops for a clip: frames -> RetinaFace -> the clip's main face -> 5-point aligned crops.

`detect_and_align` is the reusable core (the `visual` image-encoder extractor calls it on
its own frames); `FacesExtractor` stores the crops themselves as the `faces` modality.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from emo.clip import Clip
from emo.constants import DEFAULT_FACE_SIZE, DEFAULT_FRAMES
from emo.errors import ClipMissing
from emo.extract.decode.retinaface_onnx import (
    DEFAULT_DETECT_SIZE,
    DEFAULT_NMS_THRESHOLD,
    DEFAULT_SCORE_THRESHOLD,
    DETECTOR_NAME,
    Detections,
    RetinaFace,
    get_detector,
    model_sha256,
)

SCHEMA_VERSION = 1
MISSING_POLICIES = ("fill", "drop")

# The ArcFace / insightface 5-point template for 112x112 crops: eye, eye, nose tip,
# mouth corner, mouth corner (image left first). Crops of other sizes scale it.
TEMPLATE_NAME = "arcface-5pt-112"
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)

# Linking detections of consecutive sampled frames into tracks: a box continues a track
# when it overlaps the track's last box this much, and a track survives this many
# sampled frames without a detection (a blink of the detector, a hand over the face).
TRACK_MIN_IOU = 0.3
TRACK_MAX_GAP = 2


def face_template(face_size: int = DEFAULT_FACE_SIZE) -> np.ndarray:
    """(5, 2) template landmark positions in a face_size x face_size crop."""
    return ARCFACE_TEMPLATE_112 * (face_size / 112.0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of x1, y1, x2, y2 boxes."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def select_main_face(detections: Sequence[Detections]) -> np.ndarray:
    """Index of the clip's main face in each frame's detections, -1 where that face is absent.

    Detections are linked across frames into tracks by overlap; the main face is the
    track with the largest sum of score x sqrt(box area), so a face that is large,
    confident and present in many frames wins over a bigger face seen once, and the
    choice never jumps to another person within the track.
    """
    # Linking is sequential by nature (each frame extends the tracks of the previous
    # ones); the per-frame work is a small vectorised IoU matrix.
    track_of: list[np.ndarray] = []
    last_box: list[np.ndarray] = []
    last_frame: list[int] = []
    strength: list[float] = []
    for f, det in enumerate(detections):
        assigned = np.full(len(det), -1, dtype=np.int64)
        live = [t for t in range(len(last_box)) if f - last_frame[t] <= TRACK_MAX_GAP + 1]
        if live and len(det):
            iou = box_iou(np.stack([last_box[t] for t in live]), det.boxes)
            while True:  # greedy one-to-one matching, best overlap first
                row, col = np.unravel_index(np.argmax(iou), iou.shape)
                if iou[row, col] < TRACK_MIN_IOU:
                    break
                assigned[col] = live[row]
                iou[row, :] = -1
                iou[:, col] = -1
        weight = det.scores * np.sqrt(np.prod(det.boxes[:, 2:] - det.boxes[:, :2], axis=1).clip(0))
        for i in range(len(det)):
            if assigned[i] < 0:
                assigned[i] = len(last_box)
                last_box.append(det.boxes[i])
                last_frame.append(f)
                strength.append(0.0)
            t = assigned[i]
            last_box[t], last_frame[t] = det.boxes[i], f
            strength[t] += float(weight[i])
        track_of.append(assigned)
    chosen = np.full(len(detections), -1, dtype=np.int64)
    if not strength:
        return chosen
    main = int(np.argmax(strength))
    for f, assigned in enumerate(track_of):
        hit = np.flatnonzero(assigned == main)
        if len(hit):
            chosen[f] = hit[0]
    return chosen


def align_faces(
    frames: np.ndarray, landmarks: np.ndarray, face_size: int = DEFAULT_FACE_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Similarity-warp each frame so its 5 landmarks land on the template.

    frames (N, H, W, 3) uint8, landmarks (N, 5, 2) -> crops (N, S, S, 3) uint8 and the
    (N, 2, 3) matrices used (frame pixels -> crop pixels).
    """
    import cv2

    template = face_template(face_size)
    crops = np.zeros((len(frames), face_size, face_size, 3), dtype=np.uint8)
    matrices = np.zeros((len(frames), 2, 3), dtype=np.float64)
    # One similarity fit and one warp per frame: OpenCV has no batched form of either.
    for i, (frame, points) in enumerate(zip(frames, landmarks)):
        matrix, _ = cv2.estimateAffinePartial2D(points.astype(np.float32), template, method=cv2.LMEDS)
        if matrix is None:  # degenerate landmarks (all on one point): fit without outlier rejection
            matrix = _similarity_lstsq(points, template)
        matrices[i] = matrix
        crops[i] = cv2.warpAffine(frame, matrix, (face_size, face_size), flags=cv2.INTER_LINEAR, borderValue=0)
    return crops, matrices


def _similarity_lstsq(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (scale, rotation, shift) src -> dst as a 2x3 matrix."""
    x, y = src[:, 0].astype(np.float64), src[:, 1].astype(np.float64)
    ones, zeros = np.ones_like(x), np.zeros_like(x)
    design = np.concatenate([np.stack([x, -y, ones, zeros], 1), np.stack([y, x, zeros, ones], 1)])
    (a, b, tx, ty), *_ = np.linalg.lstsq(design, np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def nearest_kept(kept: np.ndarray) -> np.ndarray:
    """For each frame, the index of the nearest frame with a face (earlier one on ties)."""
    have = np.flatnonzero(kept)
    if not len(have):
        raise ValueError("no frame has a face")
    frames = np.arange(len(kept))
    right = np.clip(np.searchsorted(have, frames), 0, len(have) - 1)
    left = np.clip(right - 1, 0, len(have) - 1)
    use_left = np.abs(frames - have[left]) <= np.abs(have[right] - frames)
    return np.where(use_left, have[left], have[right])


def detect_and_align(
    frames: np.ndarray,
    detector: RetinaFace | None = None,
    face_size: int = DEFAULT_FACE_SIZE,
    missing_frames: str = "fill",
    detect_size: int | None = DEFAULT_DETECT_SIZE,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    nms_threshold: float = DEFAULT_NMS_THRESHOLD,
    path: str | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The main face of a frame sequence as aligned crops.

    frames (N, H, W, 3) uint8 RGB -> (crops, kept_mask, info):
      crops      (T, S, S, 3) uint8; T = N under "fill" (frames without the face repeat the
                 nearest frame that has it), T = kept_mask.sum() under "drop";
      kept_mask  (N,) bool, True where the main face was detected in that frame;
      info       frames / detected / filled / dropped counts; `frame_index` (T,) the sampled
                 frame each crop stands for and `source_index` (T,) the frame whose face it
                 shows (they differ only for filled rows); `landmarks` (N, 5, 2) float32
                 and `matrices` (N, 2, 3) frame -> crop similarity (NaN where absent),
                 `scores` (N,), `provider` (the onnxruntime provider).
    Raises ClipMissing (naming `path`) when no frame has a face.
    """
    if missing_frames not in MISSING_POLICIES:
        raise ValueError(f"missing_frames must be one of {MISSING_POLICIES}, not {missing_frames!r}")
    detector = detector or get_detector("cpu")
    detections = detector.detect(
        frames, detect_size=detect_size, score_threshold=score_threshold, nms_threshold=nms_threshold
    )
    chosen = select_main_face(detections)
    kept = chosen >= 0
    if not kept.any():
        raise ClipMissing(path, f"no face detected in {len(frames)} sampled frames")
    landmarks = np.full((len(frames), 5, 2), np.nan, dtype=np.float32)
    scores = np.zeros(len(frames), dtype=np.float32)
    have = np.flatnonzero(kept)
    landmarks[have] = np.stack([detections[f].landmarks[chosen[f]] for f in have])
    scores[have] = [detections[f].scores[chosen[f]] for f in have]

    aligned, fitted = align_faces(frames[have], landmarks[have], face_size)
    matrices = np.full((len(frames), 2, 3), np.nan)
    matrices[have] = fitted
    if missing_frames == "fill":
        rows, source = np.arange(len(frames)), nearest_kept(kept)
        # Row of `aligned` for each source frame: have is sorted, so searchsorted finds it.
        crops = aligned[np.searchsorted(have, source)]
    else:
        rows, source, crops = have, have, aligned
    info = {
        "frames": len(frames),
        "detected": int(kept.sum()),
        "filled": int(len(crops) - kept.sum()) if missing_frames == "fill" else 0,
        "dropped": int(len(frames) - kept.sum()) if missing_frames == "drop" else 0,
        "missing_frames": missing_frames,
        "frame_index": rows,
        "source_index": source,
        "landmarks": landmarks,
        "matrices": matrices,
        "scores": scores,
        "provider": getattr(detector, "provider", None),
    }
    return crops, kept, info


@dataclass
class PreparedFaces:
    """One clip after `FacesExtractor.prepare`: the crops to store and what happened on the way."""

    clip_id: str
    crops: np.ndarray  # (T, S, S, 3) uint8
    timestamps: np.ndarray  # (T,) seconds: the sampled time each crop stands for
    info: dict[str, Any] = field(default_factory=dict)


class FacesExtractor:
    """The `faces` modality: aligned main-face crops stored as uint8, no encoder.

    All the work (decode, detect, align) is CPU work in `prepare`; `encode` only hands
    the crops over. The detector session is created on first use and shared.
    """

    modality = "faces"
    dtype = "uint8"

    def __init__(
        self,
        fps: float | None = None,
        frames: int | None = None,
        face_size: int | None = None,
        missing_frames: str = "fill",
        device: str | None = "cpu",
        detect_size: int | None = DEFAULT_DETECT_SIZE,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        nms_threshold: float = DEFAULT_NMS_THRESHOLD,
        threads: int | None = None,
    ):
        """None for fps, frames, face_size or device means the default: 16 frames per clip,
        224-pixel crops, the detector on CUDA when onnxruntime has it, else on CPU."""
        if fps is not None and frames is not None:
            raise ValueError("give fps or frames, not both")
        if fps is None and frames is None:
            frames = DEFAULT_FRAMES
        if (fps is not None and fps <= 0) or (frames is not None and frames <= 0):
            raise ValueError(f"fps and frames must be positive, not fps={fps} frames={frames}")
        if missing_frames not in MISSING_POLICIES:
            raise ValueError(f"missing_frames must be one of {MISSING_POLICIES}, not {missing_frames!r}")
        face_size = DEFAULT_FACE_SIZE if face_size is None else face_size
        if face_size <= 0:
            raise ValueError(f"face_size must be positive, not {face_size}")
        self.fps, self.frames = fps, frames
        self.face_size = face_size
        self.missing_frames = missing_frames
        self.device = device
        self.detect_size = detect_size
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.threads = threads  # onnxruntime intra-op threads; None: its default
        self.row_shape = (face_size, face_size, 3)
        self._detector: RetinaFace | None = None
        self._lock = threading.Lock()

    @property
    def detector(self) -> RetinaFace:
        """The shared detector session, created on first use (not at construction: `emo` stays light)."""
        with self._lock:
            if self._detector is None:
                device = self.device
                if device is None:
                    import onnxruntime as ort

                    device = "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
                self._detector = get_detector(device, self.threads)
            return self._detector

    @property
    def provider(self) -> str:
        """The onnxruntime execution provider the detector actually runs on."""
        return self.detector.provider

    def fingerprint(self) -> dict[str, Any]:
        # Provider, device and threads are left out on purpose: CPU and CUDA runs of the
        # detector find the same faces (up to float rounding), so switching must not
        # rebuild the cache.
        return {
            "schema": SCHEMA_VERSION,
            "detector": DETECTOR_NAME,
            "detector_sha256": model_sha256(),
            "fps": self.fps,
            "frames": self.frames,
            "face_size": self.face_size,
            "template": TEMPLATE_NAME,
            "detect_size": self.detect_size,
            "score_threshold": self.score_threshold,
            "nms_threshold": self.nms_threshold,
            "missing_frames": self.missing_frames,
        }

    def prepare(self, clip: Clip) -> PreparedFaces:
        from emo.extract.decode.video import read_frames

        if not clip.video:
            raise ClipMissing(clip.id, "no video file for this clip")
        frames, timestamps = read_frames(clip.video, fps=self.fps, frames=self.frames)
        crops, _, info = detect_and_align(
            frames,
            self.detector,
            face_size=self.face_size,
            missing_frames=self.missing_frames,
            detect_size=self.detect_size,
            score_threshold=self.score_threshold,
            nms_threshold=self.nms_threshold,
            path=clip.video,
        )
        return PreparedFaces(clip.id, crops, timestamps[info["frame_index"]], info)

    def cost(self, prepared: PreparedFaces) -> float:
        return float(len(prepared.crops))

    def encode(self, batch: Sequence[PreparedFaces]) -> list[np.ndarray]:
        return [p.crops for p in batch]
