"""Face pipeline: video decode, RetinaFace detection, main-face choice, 5-point alignment, crops."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from emo.clip import Clip
from emo.errors import ClipError, ClipMissing
from emo.extract.decode.faces import (
    FacesExtractor,
    align_faces,
    detect_and_align,
    face_template,
    nearest_kept,
    select_main_face,
)
from emo.extract.decode.retinaface_onnx import Detections, RetinaFace, get_detector
from emo.extract.decode.video import read_frames

MEAD_FRAMES = 8


@pytest.fixture(scope="module")
def detector() -> RetinaFace:
    return get_detector("cpu")


@pytest.fixture(scope="module")
def face_clips(shared_data: Path) -> list[Path]:
    clips = sorted((shared_data / "face_video" / "mead").glob("*.mp4")) + sorted(
        (shared_data / "face_video" / "hdtf").glob("*.mp4")
    )
    assert len(clips) == 26
    return clips


def write_video(path: Path, frames: np.ndarray, rate: int = 10) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=rate)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return path


def eye_errors(points: np.ndarray, face_size: int = 224) -> np.ndarray:
    """Distance (crop pixels) of each of the two eye points from the template's eyes."""
    return np.linalg.norm(points[..., :2, :] - face_template(face_size)[:2], axis=-1)


# ---- decoding -----------------------------------------------------------------------


def test_frames_k_spread_over_the_clip(face_clips):
    clip = face_clips[0]  # MEAD: 25 fps, about 4 s
    frames, times = read_frames(str(clip), frames=10)
    all_frames, all_times = read_frames(str(clip), fps=1000)  # capped at the stream rate: every frame
    duration = all_times[-1] + 1 / 25
    assert frames.shape == (10, 256, 256, 3) and frames.dtype == np.uint8
    assert np.all(np.diff(times) > 0)
    # Each of the K equal slices of the clip contributes the frame at its centre.
    centres = (np.arange(10) + 0.5) * duration / 10
    assert np.all(np.abs(times - centres) <= 1 / 25 + 1e-6)
    assert len(all_times) == round(duration * 25) and np.allclose(np.diff(all_times), 1 / 25)
    # The picked frames are the very frames a full decode shows at those times.
    index = np.round(times * 25).astype(int)
    assert np.array_equal(frames, all_frames[index])


def test_fps_sampling_and_seeking_match_a_full_decode(face_clips):
    clip = face_clips[-1]  # HDTF: 8 s, keyframes every 0.48 s, so fps=0.4 seeks
    sparse, sparse_times = read_frames(str(clip), fps=0.4)
    dense, dense_times = read_frames(str(clip), fps=5)
    assert np.allclose(sparse_times, [0.0, 2.5, 5.0, 7.5], atol=1 / 25)
    assert np.allclose(dense_times, np.arange(40) / 5, atol=1 / 25)
    full, full_times = read_frames(str(clip), fps=25)
    for image, t in zip(sparse, sparse_times):
        assert np.array_equal(image, full[np.argmin(np.abs(full_times - t))])


def test_more_frames_than_the_clip_has_repeat_frames(tmp_path):
    frames = np.stack([np.full((32, 32, 3), 20 * i, np.uint8) for i in range(5)])
    video = write_video(tmp_path / "short.mp4", frames)
    out, times = read_frames(str(video), frames=12)
    assert out.shape[0] == 12 and len(np.unique(times)) == 5
    assert np.all(np.diff(times) >= 0)


def test_clip_without_duration_in_its_header_samples_the_same_frames(tmp_path, monkeypatch):
    import emo.extract.decode.video as video_decode

    frames = np.stack([np.full((32, 32, 3), 8 * i, np.uint8) for i in range(30)])
    video = str(write_video(tmp_path / "ramp.mkv", frames))
    with_header = [read_frames(video, frames=7), read_frames(video, fps=3)]
    monkeypatch.setattr(video_decode, "_stream_duration", lambda container, stream: None)
    without = [read_frames(video, frames=7), read_frames(video, fps=3)]
    for (a, ta), (b, tb) in zip(with_header, without):
        assert np.array_equal(ta, tb) and np.array_equal(a, b)


def test_truncated_video_is_a_clip_error(tmp_path):
    import av

    # moov atom first (faststart), so a cut file still opens and decodes its first part.
    full = tmp_path / "full.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(full), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for image in rng.integers(0, 255, (100, 64, 64, 3), np.uint8):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert read_frames(str(full), frames=8)[0].shape[0] == 8
    with pytest.raises(ClipError, match=r"cut\.mp4: video stops at .*truncated"):
        read_frames(str(cut), frames=8)


@pytest.mark.parametrize("content", [b"", b"not a video at all\n" * 50, bytes(range(256)) * 64])
def test_unreadable_file_is_a_clip_error(tmp_path, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(ClipError, match="bad.mp4") as caught:
        read_frames(str(bad), frames=4)
    assert not isinstance(caught.value, ClipMissing)


def test_missing_file_and_audio_only_file(tmp_path):
    import soundfile

    with pytest.raises(ClipError, match="not found"):
        read_frames(str(tmp_path / "nope.mp4"), frames=4)
    wav = tmp_path / "speech.wav"
    soundfile.write(wav, np.zeros(16000, np.float32), 16000)
    with pytest.raises(ClipMissing, match="no video stream"):
        read_frames(str(wav), frames=4)


# ---- detection ----------------------------------------------------------------------


def test_group_photo_has_twenty_faces(shared_data, detector):
    import cv2

    image = cv2.cvtColor(cv2.imread(str(shared_data / "face_video" / "group_photo.jpg")), cv2.COLOR_BGR2RGB)
    (faces,) = detector.detect(image)
    assert len(faces) >= 20
    assert np.all(np.diff(faces.scores) <= 0)
    assert np.all(faces.boxes[:, 2:] > faces.boxes[:, :2])
    # Eyes sit inside their face box, the image-left eye first.
    x, y = faces.landmarks[:, :2, 0], faces.landmarks[:, :2, 1]
    x1, y1, x2, y2 = (faces.boxes[:, i : i + 1] for i in range(4))
    inside = (x >= x1) & (x <= x2) & (y >= y1) & (y <= y2)
    assert inside.mean() > 0.95
    assert np.mean(x[:, 0] < x[:, 1]) > 0.95


def test_detection_size_maps_coordinates_back(shared_data, detector):
    import cv2

    image = cv2.cvtColor(cv2.imread(str(shared_data / "face_video" / "group_photo.jpg")), cv2.COLOR_BGR2RGB)
    (native,) = detector.detect(image, detect_size=None)
    (shrunk,) = detector.detect(image, detect_size=800)
    # The same confident faces come back at the same place in original pixels.
    confident = native.boxes[native.scores > 0.95]
    from emo.extract.decode.faces import box_iou

    assert np.median(box_iou(confident, shrunk.boxes).max(axis=1)) > 0.8


def test_session_reports_the_provider_it_runs_on():
    import onnxruntime as ort

    cpu = RetinaFace("cpu")
    assert cpu.provider == "CPUExecutionProvider" == cpu.session.get_providers()[0]
    cuda = RetinaFace("cuda")
    assert cuda.provider == cuda.session.get_providers()[0]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert cuda.provider == "CPUExecutionProvider"
    assert get_detector("cpu") is get_detector("cpu")


# ---- main face, alignment -----------------------------------------------------------


def test_real_clips_have_a_face_and_aligned_eyes_land_on_the_template(face_clips, detector):
    # The template's eyes are 70 px apart in a 224 crop. A scale, order or frame mix-up
    # puts eyes tens of pixels off; expressive faces (contempt, happy) legitimately
    # differ from the template by a few pixels.
    fitted, redetected = [], []
    for clip in face_clips:
        frames, _ = read_frames(str(clip), frames=MEAD_FRAMES)
        crops, kept, info = detect_and_align(frames, detector, path=str(clip))
        assert kept.mean() >= 0.95, clip.name
        assert crops.shape == (MEAD_FRAMES, 224, 224, 3) and crops.dtype == np.uint8
        assert info["provider"] == "CPUExecutionProvider"
        # The fitted similarity carries the detected eyes onto the template's eyes...
        m = info["matrices"][kept]
        moved = np.einsum("nij,nkj->nki", m[:, :, :2], info["landmarks"][kept]) + m[:, None, :, 2]
        fitted.append(eye_errors(moved))
        # ...and the crop's pixels agree: detecting again on the crop finds the eyes there.
        again = detector.detect(crops[kept], detect_size=None)
        assert all(len(d) >= 1 for d in again), clip.name
        redetected.append(eye_errors(np.stack([d.landmarks[0] for d in again])))
        assert fitted[-1].max() < 10 and redetected[-1].max() < 15, (clip.name, fitted[-1], redetected[-1])
    assert np.median(np.concatenate(fitted)) < 4
    assert np.median(np.concatenate(redetected)) < 5


def test_alignment_survives_detection_downscale(face_clips, detector):
    clip = face_clips[-1]  # 512x512 frames, detected at 256: landmarks must be mapped back x2
    frames, _ = read_frames(str(clip), frames=4)
    crops, kept, info = detect_and_align(frames, detector, face_size=112, detect_size=256)
    assert kept.all() and crops.shape == (4, 112, 112, 3)
    again = detector.detect(crops, detect_size=None)
    assert np.median(eye_errors(np.stack([d.landmarks[0] for d in again]), face_size=112)) < 4


def test_main_face_is_the_steady_confident_one():
    def det(*faces):  # faces: (x1, y1, size, score)
        boxes = np.array([[x, y, x + s, y + s] for x, y, s, _ in faces], np.float32).reshape(-1, 4)
        marks = boxes[:, None, :2] + np.linspace(0.3, 0.7, 5)[None, :, None] * (boxes[:, None, 2:] - boxes[:, None, :2])
        return Detections(boxes, np.array([f[3] for f in faces], np.float32), marks.astype(np.float32))

    speaker = [(100 + 2 * i, 50, 80, 0.99) for i in range(6)]
    frames = [
        det(speaker[0], (300, 40, 60, 0.9)),
        det((300, 40, 62, 0.9), speaker[1]),  # listed second: the index must follow the track
        det(speaker[2]),
        det(),  # the speaker's face is missed in this frame
        det((0, 0, 200, 0.95), speaker[4]),  # a big face passing by once
        det(speaker[5], (302, 41, 60, 0.9)),
    ]
    chosen = select_main_face(frames)
    assert chosen.tolist() == [0, 1, 0, -1, 1, 0]
    assert select_main_face([det(), det()]).tolist() == [-1, -1]


def test_align_faces_puts_landmarks_on_the_template():
    template = face_template(112)
    # A face twice the template's size, shifted and turned by 20 degrees.
    angle = np.deg2rad(20)
    rot = 2 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = (template @ rot.T + [150, 60]).astype(np.float32)
    frames = np.zeros((1, 400, 400, 3), np.uint8)
    crops, matrices = align_faces(frames, points[None], face_size=112)
    moved = points @ matrices[0, :, :2].T + matrices[0, :, 2]
    assert np.allclose(moved, template, atol=0.05)
    assert crops.shape == (1, 112, 112, 3)


# ---- missing frames -----------------------------------------------------------------


class FakeDetector:
    """A face (template landmarks) only in the frames listed; other frames come back empty."""

    provider = "fake"

    def __init__(self, face_in: list[int], face_size: int = 32):
        self.face_in = set(face_in)
        self.points = face_template(face_size).astype(np.float32)

    def detect(self, images, **_):
        box = np.array([[0, 0, 32, 32]], np.float32)
        return [
            Detections(box, np.array([0.99], np.float32), self.points[None])
            if i in self.face_in
            else Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
            for i in range(len(images))
        ]


def flat_frames(n: int) -> np.ndarray:
    """Frame i is one flat grey level 30 * i, so each crop shows which frame it came from."""
    return np.stack([np.full((32, 32, 3), 30 * i, np.uint8) for i in range(n)])


def test_fill_policy_repeats_the_nearest_frame_with_a_face():
    crops, kept, info = detect_and_align(flat_frames(7), FakeDetector([1, 4]), face_size=32, missing_frames="fill")
    assert kept.tolist() == [False, True, False, False, True, False, False]
    # Frame 2 is nearer to 1, frame 3 nearer to 4; frames outside take the end ones.
    assert info["source_index"].tolist() == [1, 1, 1, 4, 4, 4, 4]
    assert info["frame_index"].tolist() == list(range(7))
    assert crops.shape == (7, 32, 32, 3)
    assert [int(np.median(c)) for c in crops] == [30, 30, 30, 120, 120, 120, 120]
    assert (info["detected"], info["filled"], info["dropped"]) == (2, 5, 0)
    assert np.isnan(info["landmarks"][0]).all() and not np.isnan(info["landmarks"][1]).any()
    assert nearest_kept(np.array([True, False, True])).tolist() == [0, 0, 2]  # ties go to the earlier frame


def test_drop_policy_keeps_only_frames_with_a_face():
    crops, kept, info = detect_and_align(flat_frames(7), FakeDetector([1, 4]), face_size=32, missing_frames="drop")
    assert [int(np.median(c)) for c in crops] == [30, 120]
    assert info["source_index"].tolist() == info["frame_index"].tolist() == [1, 4]
    assert (info["detected"], info["filled"], info["dropped"]) == (2, 0, 5)


def test_real_frames_without_a_face_are_filled(face_clips, detector):
    frames, _ = read_frames(str(face_clips[0]), frames=6)
    frames[2:4] = 0  # two black frames in the middle
    crops, kept, info = detect_and_align(frames, detector, missing_frames="fill")
    assert kept.tolist() == [True, True, False, False, True, True]
    assert info["source_index"].tolist() == [0, 1, 1, 4, 4, 5]
    assert np.array_equal(crops[2], crops[1]) and np.array_equal(crops[3], crops[4])


# ---- the extractor ------------------------------------------------------------------


def test_video_without_a_face_is_missing(tmp_path):
    video = write_video(tmp_path / "wall.mp4", np.full((12, 96, 128, 3), (90, 140, 200), np.uint8))
    extractor = FacesExtractor(frames=6)
    with pytest.raises(ClipMissing, match=r"wall\.mp4: no face detected in 6 sampled frames"):
        extractor.prepare(Clip("c1", "neutral", "s1", video=str(video)))
    with pytest.raises(ClipMissing):
        extractor.prepare(Clip("c2", "neutral", "s1"))
    with pytest.raises(ClipError, match="not found"):
        extractor.prepare(Clip("c3", "neutral", "s1", video=str(tmp_path / "gone.mp4")))


def test_extractor_prepares_crops_and_encode_returns_them(face_clips):
    extractor = FacesExtractor(frames=5, face_size=112)
    assert (extractor.modality, extractor.dtype, extractor.row_shape) == ("faces", "uint8", (112, 112, 3))
    clips = [Clip(p.stem, "x", p.stem[:4], video=str(p)) for p in face_clips[:2]]
    prepared = [extractor.prepare(c) for c in clips]
    assert [extractor.cost(p) for p in prepared] == [5.0, 5.0]
    out = extractor.encode(prepared)
    assert [o.shape for o in out] == [(5, 112, 112, 3)] * 2 and all(o.dtype == np.uint8 for o in out)
    assert np.all(np.diff(prepared[0].timestamps) > 0)
    assert extractor.provider == "CPUExecutionProvider"


def test_extractor_with_fps_and_drop_keeps_timestamps_of_kept_frames(tmp_path, monkeypatch):
    video = write_video(tmp_path / "flat.mp4", flat_frames(8), rate=4)
    extractor = FacesExtractor(fps=4, face_size=32, missing_frames="drop")
    extractor._detector = FakeDetector([2, 5], face_size=32)
    prepared = extractor.prepare(Clip("c", "x", "s", video=str(video)))
    assert np.allclose(prepared.timestamps, [0.5, 1.25])
    assert prepared.crops.shape == (2, 32, 32, 3)


def test_fingerprint_names_the_detector_and_the_settings_not_the_device():
    from retinaface.weights import WEIGHTS

    base = FacesExtractor().fingerprint()
    json.dumps(base)
    assert base["detector"] == "retinaface-mobilenet0.25"
    assert base["detector_sha256"] == hashlib.sha256(WEIGHTS).hexdigest()
    settings = (base["frames"], base["fps"], base["face_size"], base["missing_frames"], base["schema"])
    assert settings == (16, None, 224, "fill", 1)
    assert FacesExtractor(device="cuda").fingerprint() == base
    for changed in (FacesExtractor(face_size=112), FacesExtractor(fps=5), FacesExtractor(missing_frames="drop"),
                    FacesExtractor(score_threshold=0.8), FacesExtractor(detect_size=320)):
        assert changed.fingerprint() != base
    assert FacesExtractor(frames=None, face_size=None, device=None).fingerprint() == base
    with pytest.raises(ValueError):
        FacesExtractor(missing_frames="interpolate")
    with pytest.raises(ValueError, match="not both"):
        FacesExtractor(fps=5, frames=8)
