"""Visual extractor: video -> aligned face crops -> frozen Hugging Face image encoder -> per-frame embeddings.

`prepare` runs the face stage (decode, detect, align; CPU) through a FacesExtractor, so the
crops are exactly what the `faces` modality would store and its fingerprint nests here.
`encode` normalises every crop of the batch at once on the accelerator (the model's own image
processor settings, applied as tensor ops instead of its per-image PIL loop) and runs the
encoder on all frames of all clips together, then splits the rows back per clip.

A frame's embedding at a layer is the class token where the encoder has one (ViT, DeiT, BEiT,
CLIP, DINOv2), else the mean over its tokens (SigLIP-style encoders). Rows are (T, L, D)
float16 with T = frames in which a face was kept.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from emo.accel import autocast, choose_precision, resolve_device
from emo.clip import Clip
from emo.constants import DEFAULT_FACE_SIZE, DEFAULT_FRAMES
from emo.errors import BackboneError, ClipMissing, describe
from emo.extract.encoders.hub import pretrained_fingerprint
from emo.layer_spec import encoder_layers
from emo.extract.encoders.text_backbone import (
    SCHEMA_VERSION,
    load_pretrained_model,
    to_float16,
)

# PIL resampling codes (what image processors store) -> torch interpolation modes; the others
# (box, hamming, lanczos) have no torch equivalent and get the closest antialiased filter.
RESAMPLE_MODES = {0: "nearest", 1: "bicubic", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bilinear"}
# Mean |difference| allowed between our tensor normalisation and the processor's own on a test
# image, in normalised units (about 1-2 grey levels for a [-1, 1] range): resampling filters
# differ slightly between PIL and torch; a wrongly read processor setting differs far more.
PROCESSOR_TOLERANCE = 0.02


@dataclass(frozen=True)
class PixelNormaliser:
    """An image processor's resize / centre-crop / rescale / normalise, as batched tensor ops."""

    resize: tuple[int, int] | None  # (height, width) after resizing, None: no resize
    resample: str  # torch interpolation mode
    crop: tuple[int, int] | None  # centre crop (height, width), None: no crop
    rescale: float | None  # multiply pixel values (1/255 usually)
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    @classmethod
    def from_processor(cls, processor, input_size: int, name: str) -> "PixelNormaliser":
        def attr(key, default=None):
            value = getattr(processor, key, default)
            return default if value is None else value

        resize = None
        if attr("do_resize", False):
            size = _size_dict(attr("size"))
            resize = _resized_shape(size, input_size, input_size, name)
        crop = None
        if attr("do_center_crop", False):
            crop_size = _size_dict(attr("crop_size"))
            if crop_size.get("height") and crop_size.get("width"):
                crop = (int(crop_size["height"]), int(crop_size["width"]))
        resample = attr("resample", 2)
        mode = RESAMPLE_MODES.get(int(getattr(resample, "value", resample)), "bilinear")
        return cls(
            resize=resize,
            resample=mode,
            crop=crop,
            rescale=float(attr("rescale_factor", 1 / 255)) if attr("do_rescale", True) else None,
            mean=tuple(float(v) for v in attr("image_mean")) if attr("do_normalize", False) else None,
            std=tuple(float(v) for v in attr("image_std")) if attr("do_normalize", False) else None,
        )

    def __call__(self, crops):
        """uint8 (N, H, W, 3) RGB tensor -> float32 (N, 3, h, w) model input, on the crops' device."""
        import torch
        import torch.nn.functional as F

        pixels = crops.permute(0, 3, 1, 2).float()
        if self.resize is not None and tuple(pixels.shape[-2:]) != self.resize:
            antialias = self.resample in ("bilinear", "bicubic")
            pixels = F.interpolate(pixels, size=self.resize, mode=self.resample, antialias=antialias,
                                   **({} if self.resample == "nearest" else {"align_corners": False}))
            # PIL resizes uint8 images: round and clip the same way so values match the processor.
            pixels = pixels.round_().clamp_(0, 255)
        if self.crop is not None:
            height, width = pixels.shape[-2:]
            top, left = max(0, (height - self.crop[0]) // 2), max(0, (width - self.crop[1]) // 2)
            pixels = pixels[..., top : top + self.crop[0], left : left + self.crop[1]]
        if self.rescale is not None:
            pixels = pixels * self.rescale
        if self.mean is not None:
            mean = torch.tensor(self.mean, device=pixels.device).view(1, -1, 1, 1)
            std = torch.tensor(self.std, device=pixels.device).view(1, -1, 1, 1)
            pixels = (pixels - mean) / std
        return pixels.contiguous()

    def describe(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _size_dict(size) -> dict[str, Any]:
    if size is None:
        return {}
    if isinstance(size, int):
        return {"height": size, "width": size}
    if isinstance(size, dict):
        return size
    return {k: v for k, v in vars(size).items() if v is not None} if hasattr(size, "__dict__") else dict(size)


def _resized_shape(size: dict[str, Any], height: int, width: int, name: str) -> tuple[int, int]:
    """The processor's target size for an input of (height, width), by the same rules it uses."""
    if size.get("height") and size.get("width"):
        return int(size["height"]), int(size["width"])
    if size.get("shortest_edge"):
        short, long_ = (height, width) if height <= width else (width, height)
        new_short = int(size["shortest_edge"])
        new_long = int(new_short * long_ / short)
        if size.get("longest_edge") and new_long > size["longest_edge"]:
            new_short, new_long = int(new_short * size["longest_edge"] / new_long), int(size["longest_edge"])
        return (new_short, new_long) if height <= width else (new_long, new_short)
    raise BackboneError(f"{name}: image processor size {size} is not supported (need height/width or shortest_edge)")


def load_image_processor(resolved):
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(resolved.path, local_files_only=True)
    except Exception as exc:
        raise BackboneError(
            f"{resolved.name}: cannot load its image processor from {resolved.path} ({describe(exc)}); the folder needs "
            "preprocessor_config.json next to config.json (save the model's AutoImageProcessor with save_pretrained)"
        ) from None


def check_normaliser(normaliser: PixelNormaliser, processor, size: int, name: str) -> None:
    """Compare our tensor normalisation with the processor's own on one image: a setting we misread fails loudly here."""
    import torch

    rng = np.random.default_rng(0)
    # A smooth image: resampling filters agree on smooth content, so only real setting errors show.
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    image = np.stack([np.add.outer(ramp, ramp) / 2, np.add.outer(ramp, 255 - ramp) / 2, np.full((size, size), 128.0)], -1)
    image = (image + rng.normal(0, 1, image.shape)).clip(0, 255).astype(np.uint8)
    try:
        expected = np.asarray(processor(images=[image], return_tensors="np")["pixel_values"], dtype=np.float32)
    except Exception:  # a processor that cannot run on a plain RGB array: nothing to compare against
        return
    ours = normaliser(torch.from_numpy(image[None])).numpy()
    gap = float(np.abs(ours - expected).mean()) if ours.shape == expected.shape else float("inf")
    if gap > PROCESSOR_TOLERANCE:
        raise BackboneError(
            f"{name}: cannot reproduce its image processor ({type(processor).__name__}) as tensor ops "
            f"(ours gives {ours.shape}, the processor {expected.shape}, mean difference {gap:.3g}); "
            "this encoder's preprocessing is not supported"
        )


def has_class_token(model) -> bool:
    return any(name.rsplit(".", 1)[-1] in ("cls_token", "class_embedding") for name, _ in model.named_parameters())


def make_face_pipeline(fps: float | None, frames: int | None, face_size: int, missing_frames: str | None = None):
    """The faces stage whose crops the encoder reads (imported here: it pulls in the detector)."""
    try:
        from emo.extract.decode.faces import FacesExtractor
    except ImportError as exc:
        raise BackboneError(f"visual: the face pipeline (emo.extract.decode.faces) cannot be imported: {exc}") from None
    options: dict[str, Any] = {"fps": fps} if fps is not None else {"frames": frames}
    if missing_frames is not None:
        options["missing_frames"] = missing_frames
    try:
        return FacesExtractor(face_size=face_size, **options)
    except ValueError as exc:
        raise BackboneError(f"visual: face settings: {exc}") from None


class VisualExtractor:
    """Face video -> (T, L, D) float16 per-frame embeddings from a frozen image encoder."""

    modality = "visual"
    dtype = "float16"

    def __init__(
        self,
        backbone: str,
        layers: str | Sequence[int] = "last",
        fps: float | None = None,
        frames: int | None = DEFAULT_FRAMES,
        face_size: int = DEFAULT_FACE_SIZE,
        missing_frames: str | None = None,
        device: str = "cpu",
        pooling: str = "auto",
        batch_frames: int = 256,
        precision: str = "auto",
        faces: Any = None,
    ):
        """`faces`: the face stage (an Extractor of modality "faces" giving uint8 crops); built from
        fps / frames / face_size / missing_frames when None. Sampling is by fps when given, else
        `frames` per clip; missing_frames None keeps the face stage's default ("fill": frames
        without the face repeat the nearest one that has it; "drop": they are left out)."""
        from emo.extract.encoders.hub import resolve_pretrained

        if pooling not in ("auto", "cls", "mean"):
            raise BackboneError(f"{backbone}: pooling {pooling!r}: expected auto, cls or mean")
        self.resolved = resolve_pretrained(backbone, "--visual-backbone")
        self.device = resolve_device(device)
        self.autocast = choose_precision(self.device, precision, backbone).dtype
        model = load_pretrained_model(self.resolved, self.device, "--visual-backbone")
        # CLIP / SigLIP folders hold both towers: only the image tower sees the faces.
        encoder = model.vision_model if getattr(model, "vision_model", None) is not None else model
        config = getattr(encoder, "config", None) or getattr(model.config, "vision_config", model.config)
        if not getattr(config, "hidden_size", None) or not getattr(config, "num_hidden_layers", None):
            raise BackboneError(
                f"{backbone}: {type(encoder).__name__} is not a transformer image encoder with one hidden size "
                "(supported: ViT, DeiT, BEiT, CLIP/SigLIP vision, DINOv2 and the like)"
            )
        self.model = encoder
        self.model_type = model.config.model_type
        self.num_hidden_states = int(config.num_hidden_layers) + 1
        self.layers = encoder_layers(layers, self.num_hidden_states, backbone, "visual")
        self.pooling = ("cls" if has_class_token(encoder) else "mean") if pooling == "auto" else pooling
        if self.pooling == "cls" and not has_class_token(encoder):
            raise BackboneError(f"{backbone}: has no class token; use pooling 'mean'")
        self.row_shape = (len(self.layers), int(config.hidden_size))
        self.batch_frames = max(1, int(batch_frames))
        self.faces = faces if faces is not None else make_face_pipeline(fps, frames, face_size, missing_frames)
        crop_shape = tuple(self.faces.row_shape)
        if len(crop_shape) != 3 or crop_shape[0] != crop_shape[1] or crop_shape[2] != 3:
            raise BackboneError(f"visual: the face stage gives rows of shape {crop_shape}, expected (size, size, 3)")
        processor = load_image_processor(self.resolved)
        self.normalise = PixelNormaliser.from_processor(processor, crop_shape[0], backbone)
        check_normaliser(self.normalise, processor, crop_shape[0], backbone)
        # One blank crop through the encoder now: an input size the model rejects fails the run
        # here, in seconds, instead of failing every clip of it one by one.
        try:
            self.encode([np.zeros((1, *crop_shape), dtype=np.uint8)])
        except BackboneError:
            raise
        except Exception as exc:
            raise BackboneError(
                f"{backbone}: cannot encode a {crop_shape[0]}x{crop_shape[1]} face crop "
                f"({describe(exc)}); "
                "check --face-size against the encoder's image size and its preprocessor_config.json"
            ) from None

    # The runner batches prepared clips up to this many cost units (frames).
    @property
    def batch_budget(self) -> float:
        return float(self.batch_frames)

    def fingerprint(self) -> dict[str, Any]:
        return {
            **pretrained_fingerprint(SCHEMA_VERSION, self.modality, self.resolved, self.model_type, self.layers,
                                     self.num_hidden_states, self.row_shape[1]),
            "pooling": self.pooling,
            "pixels": self.normalise.describe(),
            "faces": self.faces.fingerprint(),
        }

    def prepare(self, clip: Clip) -> np.ndarray:
        """Aligned face crops (T, S, S, 3) uint8 of the frames where a face was kept."""
        crops = self.faces.encode([self.faces.prepare(clip)])[0]
        if len(crops) == 0:
            raise ClipMissing(clip.video or clip.id, "no face found in any frame")
        return np.ascontiguousarray(crops, dtype=np.uint8)

    def cost(self, prepared: np.ndarray) -> float:
        return float(len(prepared))

    def encode(self, batch: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch

        if not batch:
            return []
        lengths = [len(crops) for crops in batch]
        frames = np.concatenate(batch)
        rows = np.empty((len(frames), *self.row_shape), dtype=np.float16)
        # Frames of all clips go through together, in slices that bound accelerator memory.
        for start in range(0, len(frames), self.batch_frames):
            with torch.inference_mode():
                crops = torch.from_numpy(frames[start : start + self.batch_frames]).to(self.device)
                pixels = self.normalise(crops)
                with autocast(self.device, self.autocast):
                    hidden = self.model(pixel_values=pixels, output_hidden_states=True).hidden_states
                if len(hidden) != self.num_hidden_states:
                    raise BackboneError(
                        f"{self.resolved.name}: returned {len(hidden)} hidden states, config says {self.num_hidden_states}"
                    )
                pooled = torch.stack([self._pool(hidden[i]) for i in self.layers], dim=1)  # (n, L, D)
                rows[start : start + len(crops)] = to_float16(pooled)
        return np.split(rows, np.cumsum(lengths)[:-1])

    def _pool(self, tokens):
        return tokens[:, 0] if self.pooling == "cls" else tokens.float().mean(dim=1)


def make_visual_extractor(
    backbone: str | None,
    layers: str | Sequence[int] | None = "last",
    fps: float | None = None,
    frames: int | None = None,
    face_size: int | None = None,
    device: str = "cpu",
    **options: Any,
) -> VisualExtractor:
    """The visual extractor `emo extract --visual-backbone ...` builds; unset face settings take the defaults."""
    if not backbone:
        raise BackboneError(
            "visual: no image encoder given; pass --visual-backbone with a Hugging Face id or a local folder "
            "(e.g. google/vit-base-patch16-224-in21k or /models/vit-base)"
        )
    return VisualExtractor(
        backbone,
        layers=layers or "last",
        fps=fps,
        frames=frames if frames is not None or fps is not None else DEFAULT_FRAMES,
        face_size=face_size or DEFAULT_FACE_SIZE,
        device=device,
        **options,
    )
