"""emo.accel: one precision rule for encoders and training; fp16 training scales its loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emo import accel
from emo.errors import EmoError
from synthetic_cache import make_synthetic_cache

TINY = {"d_model": 8, "heads": 2, "blocks": 1, "ffn": 8}


@pytest.fixture
def gpu(monkeypatch):
    """Pretend to hold a CUDA card of a given compute capability (no CUDA call is made)."""

    def card(capability):
        monkeypatch.setattr(torch.version, "hip", None)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        # torch answers True on a T4 too (bf16 emulated): the rule must not go by it.
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
        return torch.device("cuda")

    return card


def test_a_card_without_bf16_computes_fp16_and_training_scales_the_loss(gpu):
    device = gpu((7, 5))  # T4; a GTX 1080 is 6.1, a V100 7.0
    assert accel.choose_precision(device) == accel.Precision(torch.float16, True)
    assert accel.choose_precision(device, "fp16") == accel.Precision(torch.float16, True)


def test_an_ampere_card_computes_bf16_without_a_scaler(gpu):
    device = gpu((8, 0))
    assert accel.choose_precision(device) == accel.Precision(torch.bfloat16, False)
    assert accel.choose_precision(device, "fp16") == accel.Precision(torch.float16, True)


def test_explicit_options_are_honoured_on_cuda(gpu):
    device = gpu((7, 5))
    assert accel.choose_precision(device, "bf16") == accel.Precision(torch.bfloat16, False)
    assert accel.choose_precision(device, "fp32") == accel.Precision(None, False)


@pytest.mark.parametrize("option", accel.PRECISIONS)
def test_the_cpu_computes_float32_whatever_the_option(option):
    assert accel.choose_precision(torch.device("cpu"), option) == accel.Precision(None, False)


def test_an_unknown_precision_is_a_one_line_error_naming_where():
    with pytest.raises(EmoError, match=r"^facebook/x: precision 'half' is not one of auto, fp32, fp16, bf16$"):
        accel.choose_precision(torch.device("cpu"), "half", "facebook/x")


def test_a_training_step_in_fp16_goes_through_the_grad_scaler(tmp_path, monkeypatch):
    """What a cc 7.5 card gets, played on the CPU: fp16 autocast, the loss scaled, clipping on
    unscaled gradients, the step and the scale update by the scaler."""
    from emo.fusion import load_data
    from emo.fusion.heads import build_head
    from emo.fusion.train import TrainSettings, train_fold

    cache = tmp_path / "c.h5"
    make_synthetic_cache(cache, shapes={"audio": (1, 8)}, speakers=2, clips_per_speaker_class=2)
    data = load_data(cache, ["audio"])
    head = build_head("audio", data.inputs(["audio"]), 4, **TINY)
    monkeypatch.setattr(accel, "choose_precision", lambda device, precision="auto", where="": accel.Precision(torch.float16, True))

    calls = []

    class SpyScaler(torch.amp.GradScaler):
        def __init__(self, device="cuda", *args, enabled=True, **kwargs):
            calls.append(("init", device, enabled))
            super().__init__(device, *args, enabled=enabled, **kwargs)

        def scale(self, outputs):
            calls.append("scale")
            return super().scale(outputs)

        def unscale_(self, optimizer):
            calls.append("unscale_")
            return super().unscale_(optimizer)

        def step(self, optimizer, *args, **kwargs):
            calls.append("step")
            return super().step(optimizer, *args, **kwargs)

        def update(self, new_scale=None):
            calls.append("update")
            return super().update(new_scale)

    monkeypatch.setattr(torch.amp, "GradScaler", SpyScaler)
    dtypes = []
    forward = head.forward

    def spy_forward(*args, **kwargs):
        dtypes.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32)
        return forward(*args, **kwargs)

    monkeypatch.setattr(head, "forward", spy_forward)
    rows = np.arange(len(data))
    before = {k: v.clone() for k, v in head.state_dict().items()}
    train_fold(head, data, ["audio"], data.labels, rows, rows[:0], TrainSettings(epochs=1, batch_size=8, lr=1e-3),
               torch.device("cpu"), np.random.default_rng(0))

    assert calls[0] == ("init", "cpu", True)
    steps = len(rows) // 8
    assert calls[1:] == ["scale", "unscale_", "step", "update"] * steps
    assert set(dtypes) == {torch.float16}
    assert any(not torch.equal(before[k], v) for k, v in head.state_dict().items())  # the steps were taken


# ---- the device resolver: one contract for extract, fit, eval and predict ------------------


@pytest.mark.parametrize("asked", [None, "", "auto", " AUTO "])
@pytest.mark.parametrize("cuda", [False, True])
def test_no_device_or_auto_is_cuda_when_available_else_cpu(asked, cuda, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert accel.resolve_device(asked) == torch.device("cuda" if cuda else "cpu")


def test_a_named_device_is_kept(gpu, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    gpu((8, 0))
    assert accel.resolve_device("cpu") == torch.device("cpu")
    assert accel.resolve_device("cuda:1") == torch.device("cuda:1")
    assert accel.resolve_device(torch.device("cuda")) == torch.device("cuda")


@pytest.mark.parametrize("asked", ["gpu", "cuda:x", "cpu:0:1"])
def test_a_bad_device_string_is_a_one_line_error(asked):
    with pytest.raises(EmoError, match=rf"^--device {asked!r}: not a torch device \(cpu, cuda, cuda:1, auto\)$"):
        accel.resolve_device(asked)


def test_cuda_on_a_machine_without_it_is_an_error_naming_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EmoError, match=r"^--device cuda:0: CUDA is not available on this machine; use --device cpu$"):
        accel.resolve_device("cuda:0")


def test_a_gpu_index_the_machine_lacks_is_an_error(gpu, monkeypatch):
    gpu((8, 0))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(EmoError, match=r"^--device cuda:2: this machine has 2 CUDA device\(s\), cuda:0..cuda:1$"):
        accel.resolve_device("cuda:2")


def test_an_audio_encoder_on_missing_cuda_fails_with_the_resolver_message(tmp_path, monkeypatch):
    """The encoders resolve --device as the fit does (they used to fail inside model.to())."""
    from emo.extract.encoders.audio_backbones import make_audio_extractor
    from tiny_models import save_tiny_wav2vec2

    folder = save_tiny_wav2vec2(tmp_path / "w2v")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EmoError, match=r"^--device cuda: CUDA is not available on this machine; use --device cpu$"):
        make_audio_extractor(str(folder), device="cuda")
