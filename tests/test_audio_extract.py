"""Audio decoding and audio backbones: what `emo extract` stores for a clip's sound."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
from tiny_models import save_tiny_wav2vec2

from emo.clip import Clip
from emo.errors import BackboneError, ClipError, ClipMissing
from emo.extract.encoders.audio_backbones import AudioExtractor, ClassicAudioExtractor, make_audio_extractor
from emo.extract.decode.audio import load_audio
from emo.extract.encoders.audio_hf import PreparedWave

KOREAN_WAV = "kor_emotiontts/emotional-to-emotional/nea/wav/nea00001.wav"


def frames_of_wav2vec2(n_samples: int) -> int:
    """wav2vec2's conv stack: 400-sample receptive field, 320-sample hop."""
    return (n_samples - 400) // 320 + 1


def noise(seconds: float, seed: int, gain: float = 0.1) -> np.ndarray:
    return (gain * np.random.default_rng(seed).standard_normal(int(seconds * 16000))).astype(np.float32)


def tone(freq: float, seconds: float, rate: int = 16000, gain: float = 0.3) -> np.ndarray:
    return (gain * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def wav_clip(tmp_path, name: str, samples: np.ndarray, rate: int = 16000) -> Clip:
    path = tmp_path / f"{name}.wav"
    sf.write(path, samples, rate, subtype="FLOAT")
    return Clip(id=name, label="neutral", speaker="s", audio=str(path))


@pytest.fixture(scope="module")
def layer_norm_model(tmp_path_factory):
    return save_tiny_wav2vec2(tmp_path_factory.mktemp("w2v_layer_norm"), layer_norm=True)


@pytest.fixture(scope="module")
def group_norm_model(tmp_path_factory):
    return save_tiny_wav2vec2(tmp_path_factory.mktemp("w2v_group_norm"), layer_norm=False)


# ---- decoding ---------------------------------------------------------------------------------
def test_korean_wav_at_22k_is_resampled_to_16k_with_its_duration(shared_data):
    path = shared_data / KOREAN_WAV
    original, rate = sf.read(path, dtype="float32")
    assert rate == 22050
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.shape[0] - original.shape[0] * 16000 / rate) <= 1
    # Speech energy lies below 8 kHz, so a correct resampler keeps the loudness.
    assert np.sqrt(np.mean(samples**2)) == pytest.approx(np.sqrt(np.mean(original**2)), rel=0.05)


def test_stereo_flac_and_mp3_at_44k_become_mono_16k(tmp_path):
    left = tone(220, 1.5, rate=44100, gain=0.5)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    for suffix in ("flac", "mp3"):
        sf.write(tmp_path / f"a.{suffix}", stereo, 44100)
        samples = load_audio(tmp_path / f"a.{suffix}")
        assert samples.ndim == 1
        assert samples.shape[0] / 16000 == pytest.approx(1.5, abs=0.03)
        assert np.abs(samples).max() == pytest.approx(0.25, rel=0.1)  # the mean of the two channels


def test_audio_track_of_an_mp4_decodes(shared_data):
    import av

    path = sorted((shared_data / "face_video" / "hdtf").glob("*.mp4"))[0]
    with av.open(str(path)) as container:
        seconds = container.duration / 1e6
    samples = load_audio(path)
    assert samples.shape[0] / 16000 == pytest.approx(seconds, abs=0.1)
    assert np.sqrt(np.mean(samples**2)) > 0.01  # real speech, not silence


def test_mp4_without_audio_track_is_missing_audio(shared_data):
    path = sorted((shared_data / "face_video" / "mead").glob("*.mp4"))[0]
    with pytest.raises(ClipError, match="no audio track") as raised:
        load_audio(path)
    assert isinstance(raised.value, ClipMissing)
    assert str(path) in str(raised.value)


def test_corrupt_empty_and_absent_files_fail_with_a_one_line_reason(tmp_path):
    garbage = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    (tmp_path / "corrupt.wav").write_bytes(garbage)
    (tmp_path / "corrupt.mp4").write_bytes(garbage)
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    cases = {
        "corrupt.wav": "cannot decode audio",
        "corrupt.mp4": "cannot decode audio",
        "empty.wav": "zero-length",
        "absent.wav": "file not found",
    }
    for name, reason in cases.items():
        with pytest.raises(ClipError, match=reason) as raised:
            load_audio(tmp_path / name)
        message = str(raised.value)
        assert str(tmp_path / name) in message and "\n" not in message
        assert not isinstance(raised.value, ClipMissing)


# ---- Hugging Face encoders ---------------------------------------------------------------------
def test_layer_norm_encoder_gives_the_same_features_alone_and_in_a_padded_batch(layer_norm_model, tmp_path):
    extractor = make_audio_extractor(str(layer_norm_model), layers="all")
    assert isinstance(extractor, AudioExtractor) and extractor.accepts_padding
    # A quiet short clip among louder, longer ones: normalisation must be its own, padding ignored.
    short = extractor.prepare(wav_clip(tmp_path, "short", noise(1.03, 0, gain=0.01)))
    longer = [extractor.prepare(wav_clip(tmp_path, f"long{i}", noise(s, i + 1))) for i, s in enumerate((2.4, 3.1))]
    alone = extractor.encode([short])[0]
    forwards = []
    encode_group = extractor._forward
    extractor._forward = lambda batch, group: forwards.append(len(group)) or encode_group(batch, group)
    batched = extractor.encode([longer[0], short, longer[1]])
    assert forwards == [3]  # one padded forward: the short clip really saw padding
    assert alone.shape == batched[1].shape == (frames_of_wav2vec2(short.samples.shape[0]), 3, 32)
    assert alone.dtype == np.float16
    np.testing.assert_allclose(batched[1].astype(np.float32), alone.astype(np.float32), atol=2e-3)
    for item, features in zip(longer, (batched[0], batched[2])):
        assert features.shape[0] == frames_of_wav2vec2(item.samples.shape[0])


def test_group_norm_encoder_never_sees_padding(group_norm_model, tmp_path):
    import torch

    extractor = make_audio_extractor(str(group_norm_model))
    assert not extractor.accepts_padding
    items = [extractor.prepare(wav_clip(tmp_path, f"c{i}", noise(s, i))) for i, s in enumerate((1.0, 2.2, 1.0, 3.0))]
    forwards = []
    encode_group = extractor._forward
    extractor._forward = lambda batch, group: forwards.append(len(group)) or encode_group(batch, group)
    batched = extractor.encode(items)
    assert sorted(forwards) == [1, 1, 2]  # the two 1.0 s clips share a forward, nothing is padded
    for item, features in zip(items, batched):
        alone = extractor.encode([item])[0]
        assert features.shape == alone.shape == (frames_of_wav2vec2(item.samples.shape[0]), 1, 32)
        np.testing.assert_allclose(features.astype(np.float32), alone.astype(np.float32), atol=2e-3)
    # Why it matters: zero padding shifts a group-norm encoder's every frame.
    with torch.no_grad():
        clean = extractor.model(torch.from_numpy(items[0].samples)[None]).last_hidden_state
        padded = torch.nn.functional.pad(torch.from_numpy(items[0].samples)[None], (0, 32000))
        shifted = extractor.model(padded).last_hidden_state[:, : clean.shape[1]]
    assert (clean - shifted).abs().max() > 0.05


def test_a_long_clip_is_encoded_in_frame_aligned_windows(layer_norm_model, tmp_path):
    extractor = make_audio_extractor(str(layer_norm_model), max_window_s=1.0)
    item = extractor.prepare(wav_clip(tmp_path, "long", noise(3.7, 7)))
    n = item.samples.shape[0]
    bounds = extractor.window_bounds(n)
    assert len(bounds) == math.ceil(frames_of_wav2vec2(n) / frames_of_wav2vec2(16000))
    assert all(stop - start <= 16000 for start, stop, _ in bounds[:-1])
    features = extractor.encode([item])[0]
    assert features.shape[0] == frames_of_wav2vec2(n) == sum(frames for _, _, frames in bounds)
    # Each window starts on the clip's own frame grid, so its frames land where they belong.
    offset = 0
    for start, stop, frames in bounds:
        assert start == offset * 320
        window = PreparedWave("long", item.samples[start:stop], (stop - start) / 16000)
        np.testing.assert_allclose(
            features[offset : offset + frames].astype(np.float32),
            extractor.encode([window])[0].astype(np.float32),
            atol=2e-3,
        )
        offset += frames


def test_layer_selection_keeps_the_chosen_hidden_states(layer_norm_model, tmp_path):
    import torch

    clip = wav_clip(tmp_path, "c", noise(1.5, 3))
    by_spec = {}
    for spec in ("all", "1,2", "2,0", "last", "-1"):
        extractor = make_audio_extractor(str(layer_norm_model), layers=spec)
        prepared = extractor.prepare(clip)
        by_spec[spec] = extractor.encode([prepared])[0]
        assert extractor.row_shape == by_spec[spec].shape[1:]
    frames = frames_of_wav2vec2(24000)
    assert by_spec["all"].shape == (frames, 3, 32)  # transformer input + 2 layers
    np.testing.assert_array_equal(by_spec["1,2"], by_spec["all"][:, [1, 2]])
    np.testing.assert_array_equal(by_spec["2,0"], by_spec["all"][:, [2, 0]])
    np.testing.assert_array_equal(by_spec["last"], by_spec["all"][:, [2]])
    np.testing.assert_array_equal(by_spec["-1"], by_spec["last"])  # one grammar: -1 = last, as at fit time
    with torch.no_grad():
        out = extractor.model(torch.from_numpy(prepared.samples)[None], output_hidden_states=True)
    expected = {0: out.hidden_states[0], 1: out.hidden_states[1], 2: out.last_hidden_state}  # 2 = the model's output
    for layer, reference in expected.items():
        np.testing.assert_allclose(by_spec["all"][:, layer].astype(np.float32), reference[0].numpy(), atol=2e-3)
    for bad in ("3", "0,5", "1,1", "first", ""):
        with pytest.raises(BackboneError):
            make_audio_extractor(str(layer_norm_model), layers=bad)


def test_fingerprint_follows_weights_layers_and_windowing(tmp_path):
    folder = save_tiny_wav2vec2(tmp_path / "model", seed=0)
    before = make_audio_extractor(str(folder)).fingerprint()
    json.dumps(before)  # stored as JSON in the cache
    assert before["schema"] == 1 and before["sample_rate"] == 16000 and before["frame_rate"] == 50.0
    assert before["layers"] == [2] and before["dtype"] == "float16" and before["normalize"] is True
    assert make_audio_extractor(str(folder), layers="2").fingerprint() == before  # same rows as "last"
    assert make_audio_extractor(str(folder), layers="all").fingerprint()["layers"] == [0, 1, 2]
    assert make_audio_extractor(str(folder), max_window_s=10).fingerprint() != before
    save_tiny_wav2vec2(folder, seed=1)  # same config, other weights
    after = make_audio_extractor(str(folder)).fingerprint()
    assert after["revision"] != before["revision"]
    assert {k: v for k, v in after.items() if k != "revision"} == {k: v for k, v in before.items() if k != "revision"}


def test_prepare_takes_the_video_audio_track_and_reports_absent_or_short_audio(
    layer_norm_model, shared_data, tmp_path
):
    extractor = make_audio_extractor(str(layer_norm_model))
    video = sorted((shared_data / "face_video" / "hdtf").glob("*.mp4"))[0]
    prepared = extractor.prepare(Clip(id="v", label="neutral", speaker="s", video=str(video)))
    assert extractor.cost(prepared) == pytest.approx(8.0, abs=0.1)
    assert extractor.encode([prepared])[0].shape[0] == frames_of_wav2vec2(prepared.samples.shape[0])
    with pytest.raises(ClipMissing):
        extractor.prepare(Clip(id="nothing", label="neutral", speaker="s"))
    with pytest.raises(ClipError, match="too short"):
        extractor.prepare(wav_clip(tmp_path, "blip", noise(0.02, 0)))


def test_missing_model_folder_is_a_backbone_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneError):
        make_audio_extractor(str(tmp_path / "empty"))


# ---- built-in extractors -----------------------------------------------------------------------
@pytest.mark.parametrize("name, dim", [("egemaps", 25), ("compare", 65), ("logmel", 80)])
def test_builtin_extractors_give_one_layer_100hz_float16_frames(name, dim, tmp_path):
    extractor = make_audio_extractor(name)
    assert isinstance(extractor, ClassicAudioExtractor) and extractor.row_shape == (1, dim)
    clips = [wav_clip(tmp_path, f"n{i}", noise(s, i, gain=0.3)) for i, s in enumerate((2.5, 1.2))]
    prepared = [extractor.prepare(clip) for clip in clips]
    for item, features, seconds in zip(prepared, extractor.encode(prepared), (2.5, 1.2)):
        assert features.dtype == np.float16 and features.shape[1:] == (1, dim)
        assert abs(features.shape[0] - 100 * seconds) <= 5
        assert np.isfinite(features).all()  # ComParE's spectral variance alone would overflow float16
        assert extractor.cost(item) == pytest.approx(seconds)
    fingerprint = extractor.fingerprint()
    assert fingerprint["backbone"] == name and fingerprint["frame_rate"] == 100.0 and fingerprint["library_version"]


def test_builtin_features_measure_what_they_say(tmp_path):
    egemaps = make_audio_extractor("egemaps")
    pitch = egemaps.prepare(wav_clip(tmp_path, "a3", tone(220, 2.0)))
    f0 = pitch.features[:, 0, egemaps.feature_names.index("F0semitoneFrom27.5Hz_sma3nz")].astype(np.float32)
    assert np.median(f0[f0 > 0]) == pytest.approx(12 * math.log2(220 / 27.5), abs=0.5)

    logmel = make_audio_extractor("logmel", n_mels=40)
    spectrum = logmel.prepare(wav_clip(tmp_path, "k", tone(1000, 1.0))).features[:, 0].astype(np.float32)
    assert spectrum.shape == (101, 40)
    one_khz_bin = round(1000 / (16000 / 512))
    assert spectrum.mean(axis=0).argmax() == logmel._mel_filters[one_khz_bin].argmax()


def test_builtin_extractors_reject_layers_and_too_short_clips(tmp_path):
    with pytest.raises(BackboneError):
        make_audio_extractor("egemaps", layers="1,2")
    with pytest.raises(ClipError, match="too short"):
        make_audio_extractor("compare").prepare(wav_clip(tmp_path, "blip", noise(0.02, 0)))
