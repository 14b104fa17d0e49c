"""Whisper encoders as audio backbones: what `emo extract --audio-backbone <whisper>` stores for a clip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
from tiny_models import save_tiny_wav2vec2, save_tiny_whisper

from emo.clip import Clip
from emo.errors import BackboneError, ClipError
from emo.extract.encoders.audio_backbones import WhisperExtractor, make_audio_extractor
from emo.extract.encoders.audio_whisper import PreparedMel


def noise(seconds: float, seed: int, gain: float = 0.1) -> np.ndarray:
    return (gain * np.random.default_rng(seed).standard_normal(int(seconds * 16000))).astype(np.float32)


def wav_clip(tmp_path, name: str, samples: np.ndarray) -> Clip:
    path = tmp_path / f"{name}.wav"
    sf.write(path, samples, 16000, subtype="FLOAT")
    return Clip(id=name, label="neutral", speaker="s", audio=str(path))


def encoder_frames(n_samples: int) -> int:
    """Whisper: one log-mel frame per 160 samples, halved (rounded up) by the stride-2 conv."""
    return math.ceil((n_samples // 160) / 2)


@pytest.fixture(scope="module")
def whisper_model(tmp_path_factory):
    return save_tiny_whisper(tmp_path_factory.mktemp("whisper"))


def hf_encoder_output(folder, mel: np.ndarray):
    """transformers' own WhisperModel encoder on a padded 30 s log-mel: (1500, d_model)."""
    import torch
    from transformers import WhisperModel

    model = WhisperModel.from_pretrained(folder).eval()
    with torch.no_grad():
        out = model.encoder(torch.from_numpy(mel)[None], output_hidden_states=True)
    return out.last_hidden_state[0].numpy(), out.hidden_states[0][0].numpy()


def test_a_clip_gives_the_same_features_alone_and_inside_a_batch(whisper_model, tmp_path):
    extractor = make_audio_extractor(str(whisper_model), layers="all")
    assert isinstance(extractor, WhisperExtractor) and extractor.fingerprint()["input"] == "cut"
    # Two clips of one length (quiet and loud) and one longer clip: log-mel is per clip, and only
    # equal-length windows share a forward, since the encoder takes no mask.
    items = [
        extractor.prepare(wav_clip(tmp_path, "a", noise(1.5, 0, gain=0.01))),
        extractor.prepare(wav_clip(tmp_path, "b", noise(2.3, 1))),
        extractor.prepare(wav_clip(tmp_path, "c", noise(1.5, 2))),
    ]
    sizes = []
    forward = extractor._forward
    extractor._forward = lambda mels: sizes.append(mels.shape[0]) or forward(mels)
    batched = extractor.encode(items)
    assert sorted(sizes) == [1, 2]  # the two 1.5 s clips shared a forward, nothing was padded
    extractor._forward = forward
    for item, features in zip(items, batched):
        alone = extractor.encode([item])[0]
        assert features.dtype == np.float16
        assert features.shape == alone.shape == (encoder_frames(int(item.seconds * 16000)), 3, 32)
        np.testing.assert_allclose(features.astype(np.float32), alone.astype(np.float32), atol=2e-3)


def test_padded_mode_is_transformers_own_encoder_and_differs_from_cut(whisper_model, tmp_path):
    clip = wav_clip(tmp_path, "c", noise(2.0, 3))
    padded = make_audio_extractor(str(whisper_model), layers="0,2", input_mode="pad30")
    cut = make_audio_extractor(str(whisper_model), layers="0,2")
    item = padded.prepare(clip)
    assert item.windows[0].shape == (80, 3000)  # padded to 30 s as Whisper was trained
    assert padded.cost(item) == 30.0 and cut.cost(cut.prepare(clip)) == pytest.approx(2.0)
    ours = padded.encode([item])[0]
    assert ours.shape == (encoder_frames(32000), 2, 32) == (100, 2, 32)  # cut back to the clip's frames
    last, first = hf_encoder_output(whisper_model, item.windows[0])
    np.testing.assert_allclose(ours[:, 1].astype(np.float32), last[:100], atol=3e-3)  # after the final norm
    np.testing.assert_allclose(ours[:, 0].astype(np.float32), first[:100], atol=3e-3)  # conv + positions
    # Cut mode: same embeddings for the clip's frames, but attention sees no 28 s of silence.
    short = cut.encode([cut.prepare(clip)])[0]
    assert short.shape == ours.shape
    assert np.abs(short[:, 1].astype(np.float32) - ours[:, 1].astype(np.float32)).max() > 0.02  # 10x the fp16 tolerance
    assert padded.fingerprint() != cut.fingerprint()
    assert {k for k in padded.fingerprint() if padded.fingerprint()[k] != cut.fingerprint()[k]} == {"input"}


def test_layer_selection_picks_hidden_states(whisper_model, tmp_path):
    clip = wav_clip(tmp_path, "c", noise(1.2, 4))
    by_spec = {}
    for spec in ("all", "last", "2,0", "1"):
        extractor = make_audio_extractor(str(whisper_model), layers=spec)
        by_spec[spec] = extractor.encode([extractor.prepare(clip)])[0]
        assert extractor.row_shape == by_spec[spec].shape[1:]
    assert by_spec["all"].shape[1] == 3  # input + 2 blocks
    np.testing.assert_array_equal(by_spec["last"], by_spec["all"][:, [2]])
    np.testing.assert_array_equal(by_spec["2,0"], by_spec["all"][:, [2, 0]])
    np.testing.assert_array_equal(by_spec["1"], by_spec["all"][:, [1]])
    assert not np.allclose(by_spec["all"][:, 1], by_spec["all"][:, 2])
    for bad in ("3", "1,1", "first"):
        with pytest.raises(BackboneError):
            make_audio_extractor(str(whisper_model), layers=bad)


@pytest.mark.parametrize("mode", ["cut", "pad30"])
def test_a_long_clip_is_encoded_in_windows_on_its_frame_grid(whisper_model, tmp_path, mode):
    extractor = make_audio_extractor(str(whisper_model), max_window_s=1.0, input_mode=mode)
    clip = wav_clip(tmp_path, "long", noise(3.33, 7))
    samples = sf.read(clip.audio, dtype="float32")[0]
    n = samples.shape[0]
    bounds = extractor.window_bounds(n)
    assert len(bounds) == 4  # 167 frames in windows of at most 50: 42 + 42 + 42 + 41
    assert [frames for *_, frames in bounds] == [42, 42, 42, 41]
    features = extractor.encode([extractor.prepare(clip)])[0]
    assert features.shape[0] == encoder_frames(n) == 166 + 1
    offset = 0
    for start, stop, frames in bounds:
        assert start == offset * 320  # each window starts on the clip's own 20 ms grid
        alone = extractor.prepare(wav_clip(tmp_path, f"w{start}", samples[start:stop]))
        np.testing.assert_allclose(
            features[offset : offset + frames].astype(np.float32),
            extractor.encode([alone])[0].astype(np.float32),
            atol=2e-3,
        )
        offset += frames
    with pytest.raises(BackboneError, match="max window"):
        make_audio_extractor(str(whisper_model), max_window_s=31)


def test_over_30_s_uses_balanced_windows_of_at_most_1500_frames(whisper_model):
    extractor = make_audio_extractor(str(whisper_model))
    bounds = extractor.window_bounds(61 * 16000)
    assert [frames for *_, frames in bounds] == [1017, 1017, 1016]
    assert bounds[-1][1] == 61 * 16000


def test_fingerprint_pins_weights_mode_and_mel_bins(tmp_path):
    folder = save_tiny_whisper(tmp_path / "m", seed=0)
    before = make_audio_extractor(str(folder)).fingerprint()
    json.dumps(before)
    assert before["model_type"] == "whisper" and before["frame_rate"] == 50.0 and before["layers"] == [2]
    assert before["input"] == "cut" and before["log_mel"]["n_mels"] == 80 and before["kind"] == "huggingface"
    assert make_audio_extractor(str(folder), input_mode="pad30").fingerprint()["input"] == "pad30"
    save_tiny_whisper(folder, seed=1)
    after = make_audio_extractor(str(folder)).fingerprint()
    assert after["revision"] != before["revision"]
    # large-v3 style front end: 128 mel bins from the model's own feature extractor.
    large = make_audio_extractor(str(save_tiny_whisper(tmp_path / "v3", n_mels=128)), layers="all")
    item = large.prepare(wav_clip(tmp_path, "c", noise(1.0, 0)))
    assert item.windows[0].shape == (128, 100)
    assert large.encode([item])[0].shape == (50, 3, 32)


def test_only_the_encoder_is_loaded(whisper_model):
    extractor = make_audio_extractor(str(whisper_model))
    names = [name for name, _ in extractor.encoder.named_parameters()]
    assert type(extractor.encoder).__name__ == "WhisperEncoder"
    assert names and not any("decoder" in n or "embed_tokens" in n for n in names)


def test_bad_input_is_one_line(whisper_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneError, match="pass the local folder") as raised:
        make_audio_extractor("openai/whisper-tiny-not-cached-here")
    assert "\n" not in str(raised.value)
    extractor = make_audio_extractor(str(whisper_model))
    with pytest.raises(ClipError, match="too short"):
        extractor.prepare(wav_clip(tmp_path, "blip", noise(0.005, 0)))
    with pytest.raises(BackboneError, match="input"):
        make_audio_extractor(str(whisper_model), input_mode="pad10")
    wav2vec2 = save_tiny_wav2vec2(tmp_path / "w2v")
    with pytest.raises(BackboneError, match="only concerns Whisper"):
        make_audio_extractor(str(wav2vec2), input_mode="pad30")


def test_prepared_windows_match_the_frames_they_yield(whisper_model, tmp_path):
    extractor = make_audio_extractor(str(whisper_model))
    item = extractor.prepare(wav_clip(tmp_path, "odd", noise(0.517, 9)))
    assert isinstance(item, PreparedMel)
    assert item.windows[0].shape == (80, 8272 // 160) and item.frames == [26]
    assert extractor.encode([item])[0].shape[0] == 26


def test_the_input_mode_is_an_extract_option_recorded_with_the_cache():
    from emo.extract.options import ExtractOptions, extract_options_for, options_from_recorded

    padded = ExtractOptions(audio_backbone="whisper-base", audio_layers="all", whisper_input="pad30")
    recorded = extract_options_for("audio", padded)
    assert recorded == {"audio_backbone": "whisper-base", "audio_layers": "all", "whisper_input": "pad30"}
    assert options_from_recorded(recorded, device="cpu").whisper_input == "pad30"
    assert "whisper_input" not in extract_options_for("audio", ExtractOptions(audio_backbone="egemaps"))
    with pytest.raises(ValueError, match="cut or pad30"):
        ExtractOptions(whisper_input="pad20")
