"""The fusion heads: shapes for every modality combination, padding invariance, absent
modalities, layer mix, registry errors, config round-trip and a planted-signal fit."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from emo.errors import EmoError
from emo.fusion.heads import HEADS, Head, InputSpec, build_head, list_heads
from emo.fusion.heads.face_encoder import FaceEncoder
from emo.fusion.heads.layers import LayerMix, SequenceEncoder

N_CLASSES = 4


SPECS = {
    "audio": InputSpec("audio", "features", (3, 8)),  # several cached layers -> layer mix
    "text": InputSpec("text", "features", (1, 6)),  # one layer -> squeezed
    "visual": InputSpec("visual", "features", (2, 5)),
    "faces": InputSpec("faces", "faces", (16, 16, 3)),
}
SMALL = {
    "d_model": 16, "heads": 2, "blocks": 1, "ffn": 32, "dropout": 0.0, "hidden": 16,
    "face_size": None, "face_patch": 8, "face_dim": 16, "face_layers": 1, "face_heads": 2,
}
UNIMODAL = {"audio": [["audio"]], "text": [["text"]], "visual": [["visual"], ["faces"]]}
FUSION = ["early", "late", "cross_attention", "concat_mlp"]
FUSION_COMBOS = [
    list(keys)
    for n in (2, 3)
    for keys in itertools.combinations(["audio", "text", "visual", "faces"], n)
    if not {"visual", "faces"} <= set(keys)
]
CASES = [(name, keys) for name, combos in UNIMODAL.items() for keys in combos] + [
    (name, keys) for name in FUSION for keys in FUSION_COMBOS
]
CASE_IDS = [f"{name}-{'+'.join(keys)}" for name, keys in CASES]


def small_head(name: str, keys: list[str], **overrides) -> Head:
    hparams = {k: v for k, v in {**SMALL, **overrides}.items() if k in HEADS[name].defaults}
    return build_head(name, {key: SPECS[key] for key in keys}, N_CLASSES, **hparams)


def random_rows(key: str, shape: tuple, generator: torch.Generator) -> torch.Tensor:
    if SPECS[key].kind == "faces":
        return torch.randint(0, 256, shape + SPECS[key].row_shape, dtype=torch.uint8, generator=generator)
    return torch.randn(shape + SPECS[key].row_shape, generator=generator)


def make_batch(keys, lengths: dict[str, list[int]], seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = {}
    for key in keys:
        lens = torch.tensor(lengths[key])
        T = int(lens.max())
        batch[key] = (random_rows(key, (len(lens), T), g), torch.arange(T) < lens[:, None])
    return batch


def varied_lengths(keys, n_clips: int = 3) -> dict[str, list[int]]:
    # Different lengths per modality and per clip, so padding sits in different places.
    return {key: [2 + (i * 3 + j) % 5 for i in range(n_clips)] for j, key in enumerate(keys)}


@pytest.mark.parametrize("name,keys", CASES, ids=CASE_IDS)
def test_output_shape_for_every_valid_combination(name, keys):
    head = small_head(name, keys)
    batch = make_batch(keys, varied_lengths(keys))
    for train in (True, False):
        head.train(train)
        logits = head(batch)
        assert logits.shape == (3, N_CLASSES)
        assert torch.isfinite(logits).all()


def assert_padding_invariant(head: Head, keys, lengths=None) -> None:
    """A clip's logits alone equal its logits in a batch padded with garbage (NaN included)."""
    lengths = lengths or varied_lengths(keys, n_clips=3)
    n_clips = len(next(iter(lengths.values())))
    batch = make_batch(keys, lengths, seed=1)
    g = torch.Generator().manual_seed(2)
    padded = {}
    for key, (x, mask) in batch.items():
        # Extra frames beyond every mask, filled with garbage (and NaN for features).
        extra = random_rows(key, (x.shape[0], 4), g)
        if SPECS[key].kind == "features":
            extra = extra * 1e3
            extra[:, 0, 0, 0] = float("nan")
        x_pad = torch.cat([x, extra], dim=1)
        mask_pad = torch.cat([mask, torch.zeros(x.shape[0], 4, dtype=torch.bool)], dim=1)
        # Also overwrite the padding already inside the batch with garbage.
        fill = random_rows(key, x.shape[:2], g)
        x_pad[:, : x.shape[1]][~mask] = fill[~mask] if SPECS[key].kind == "faces" else fill[~mask] * 1e3
        padded[key] = (x_pad, mask_pad)
    with torch.no_grad():
        together = head(padded)
        assert torch.isfinite(together).all()
        for i in range(n_clips):
            alone = {key: (x[i : i + 1, : lengths[key][i]], m[i : i + 1, : lengths[key][i]]) for key, (x, m) in batch.items()}
            torch.testing.assert_close(head(alone)[0], together[i], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,keys", CASES, ids=CASE_IDS)
def test_padding_does_not_change_a_clips_logits(name, keys):
    torch.manual_seed(0)
    assert_padding_invariant(small_head(name, keys).eval(), keys)


def rated(keys) -> dict:
    """SPECS with frame rates: audio at 100 Hz, visual features and faces at 75 fps, text none."""
    rates = {"audio": 100.0, "visual": 75.0, "faces": 75.0, "text": None}
    return {key: InputSpec(SPECS[key].name, SPECS[key].kind, SPECS[key].row_shape, rates[key]) for key in keys}


REDUCED_CASES = [(n, k) for n, k in CASES if n in ("audio", "visual", "early", "late", "cross_attention")]


@pytest.mark.parametrize("pooling", ["mean", "stats", "attentive"])
@pytest.mark.parametrize("name,keys", REDUCED_CASES, ids=[f"{n}-{'+'.join(k)}" for n, k in REDUCED_CASES])
def test_reduced_heads_are_padding_invariant(name, keys, pooling):
    torch.manual_seed(0)
    hparams = {k: v for k, v in SMALL.items() if k in HEADS[name].defaults}
    # 100 Hz -> windows of 3 frames (33 Hz <= 40 Hz), 75 fps -> 2; clips of 2..7 frames end mid-window.
    head = build_head(name, rated(keys), N_CLASSES, **hparams, target_rate=40.0, pooling=pooling).eval()
    windows = head.reduction_windows()
    assert windows.get("audio", 3) == 3 and windows.get("visual", 2) == 2 and windows.get("faces", 2) == 2
    assert "text" not in windows  # tokens have no rate: never reduced
    assert windows, "nothing was reduced"
    assert_padding_invariant(head, keys, {key: [2 + (i * 3 + j) % 6 for i in range(4)] for j, key in enumerate(keys)})


def test_reduction_averages_windows_from_each_clips_first_frame():
    from emo.fusion.heads.pooling import reduce_time, reduction_window

    x = torch.arange(2 * 7, dtype=torch.float32).reshape(2, 7, 1)
    mask = torch.arange(7) < torch.tensor([[7], [4]])
    reduced, reduced_mask = reduce_time(x, mask, 3)
    assert reduced_mask.tolist() == [[True, True, True], [True, True, False]]
    # Clip 0: (0,1,2) (3,4,5) (6); clip 1 has frames 7..10: (7,8,9) (10) -- the padding never counts.
    assert reduced[0, :, 0].tolist() == [1.0, 4.0, 6.0]
    assert reduced[1, :2, 0].tolist() == [8.0, 10.0]
    assert reduction_window(100.0, 25.0) == 4 and reduction_window(50.0, 25.0) == 2
    assert reduction_window(50.0, 20.0) == 3  # never above the target: 16.7 Hz
    assert reduction_window(None, 25.0) == 1 and reduction_window(25.0, 25.0) == 1 and reduction_window(100.0, None) == 1
    with pytest.raises(EmoError, match="target_rate"):
        reduction_window(100.0, "fast")


def test_reduction_follows_the_frame_rate_and_target_rate():
    spec = {"audio": InputSpec("audio", "features", (1, 4), 100.0)}
    assert build_head("audio", spec, 3, d_model=8, heads=2, blocks=1, ffn=8).reduction_windows() == {"audio": 4}
    assert build_head("audio", spec, 3, d_model=8, heads=2, blocks=1, ffn=8, target_rate=10).reduction_windows() == {"audio": 10}
    assert build_head("audio", spec, 3, d_model=8, heads=2, blocks=1, ffn=8, target_rate=None).reduction_windows() == {}
    # A checkpoint from before frame rates were recorded has no rate and is rebuilt unreduced.
    old = {"name": "audio", "inputs": {"audio": {"name": "audio", "kind": "features", "row_shape": [1, 4]}},
           "n_classes": 3, "hparams": {"d_model": 8, "heads": 2, "blocks": 1, "ffn": 8}}
    assert Head.from_config(old).reduction_windows() == {}
    with pytest.raises(EmoError, match="frame rate"):
        InputSpec("audio", "features", (1, 4), -5)


@pytest.mark.parametrize("pooling,width", [("mean", 16), ("stats", 32), ("attentive", 32)])
@pytest.mark.parametrize("name", ["audio", "early", "cross_attention", "concat_mlp", "late"])
def test_pooling_choices_set_the_clip_vector(name, pooling, width):
    keys = ["audio"] if name == "audio" else ["audio", "text"]
    head = small_head(name, keys, pooling=pooling).eval()
    pools = [m for m in head.modules() if hasattr(m, "out_dim") and type(m).__name__.endswith("Pooling")]
    assert pools and all(type(p).__name__.lower().startswith(pooling) for p in pools)
    if name != "concat_mlp":  # concat_mlp pools each modality at its own width
        assert {p.out_dim for p in pools} == {width}
    assert_padding_invariant(head, keys)
    # A clip with no frame of a modality still gives finite logits (fusion heads).
    if name != "audio":
        batch = make_batch(keys, varied_lengths(keys))
        x, mask = batch["text"]
        batch["text"] = (x, torch.zeros_like(mask))
        with torch.no_grad():
            assert torch.isfinite(head(batch)).all()
    with pytest.raises(EmoError, match="pooling=.max.: expected one of mean, stats, attentive"):
        small_head(name, keys, pooling="max")


def test_stats_pooling_is_mean_and_std_of_real_frames():
    from emo.fusion.heads.pooling import AttentiveStatsPooling, StatsPooling

    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    mask = torch.tensor([[True, True, False]])
    torch.testing.assert_close(StatsPooling(1)(x, mask), torch.tensor([[2.0, 1.0]]))
    # Attention weights sum to one over real frames: a constant sequence pools to itself, std ~ 0.
    pool = AttentiveStatsPooling(2)
    constant = torch.tensor([[[2.0, -1.0]] * 4])
    out = pool(constant, torch.tensor([[True, True, True, False]]))
    torch.testing.assert_close(out[0, :2], torch.tensor([2.0, -1.0]))
    assert (out[0, 2:] < 0.01).all()


@pytest.mark.parametrize("name", FUSION)
def test_fusion_heads_work_with_any_modality_absent_at_eval(name):
    keys = ["audio", "text", "faces"]
    head = small_head(name, keys).eval()
    batch = make_batch(keys, varied_lengths(keys), seed=3)
    with torch.no_grad():
        full = head(batch)
        for n_left in (1, 2):
            for kept in itertools.combinations(keys, n_left):
                dropped = head({key: batch[key] for key in kept})
                assert dropped.shape == full.shape and torch.isfinite(dropped).all()
                # An input present with no real frame is the same as an absent input.
                empty = {key: (x, mask if key in kept else torch.zeros_like(mask)) for key, (x, mask) in batch.items()}
                torch.testing.assert_close(head(empty), dropped, atol=1e-5, rtol=1e-5)
        # Dropping a modality must change the decision input, or it was never used.
        assert not torch.allclose(head({k: batch[k] for k in keys[:2]}), full)


def test_unimodal_head_refuses_a_batch_without_its_modality():
    head = small_head("audio", ["audio"])
    with pytest.raises(EmoError, match="audio"):
        head({"text": make_batch(["text"], varied_lengths(["text"]))["text"]})


def test_late_fusion_combines_probabilities():
    keys = ["audio", "text"]
    batch = make_batch(keys, varied_lengths(keys), seed=4)
    mean_head = small_head("late", keys).eval()
    with torch.no_grad():
        probs = [torch.softmax(mean_head.branches[key]({key: batch[key]}), dim=-1) for key in keys]
        torch.testing.assert_close(mean_head(batch), torch.log((probs[0] + probs[1]) / 2))
        # Without text, the decision is the audio head's alone.
        torch.testing.assert_close(mean_head({"audio": batch["audio"]}), torch.log(probs[0]))

    learned = small_head("late", keys, combine="learned").eval()
    learned.load_state_dict(mean_head.state_dict())
    with torch.no_grad():
        learned.combine_scores.copy_(torch.tensor([30.0, -30.0]))  # nearly all weight on audio
        torch.testing.assert_close(learned(batch), torch.log(probs[0]), atol=1e-5, rtol=1e-5)
    assert learned.combine_scores.requires_grad and not mean_head.combine_scores.requires_grad


def test_layer_mix_weights_sum_to_one_and_mix_layers():
    mix = LayerMix(3)
    with torch.no_grad():
        mix.layer_logits.copy_(torch.tensor([0.5, -1.0, 2.0]))
    weights = mix.weights
    assert torch.all(weights > 0)
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
    x = torch.randn(2, 4, 3, 5)
    torch.testing.assert_close(mix(x), (x * weights[None, None, :, None]).sum(dim=2))
    single = torch.randn(2, 4, 1, 5)
    torch.testing.assert_close(LayerMix(1)(single), single[:, :, 0])


def test_layer_mix_weights_are_trained_with_the_head():
    head = small_head("audio", ["audio"], layer_mix="weighted")
    batch = make_batch(["audio"], varied_lengths(["audio"]))
    torch.nn.functional.cross_entropy(head(batch), torch.tensor([0, 1, 2])).backward()
    grad = head.sequence.frontend.mix.layer_logits.grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("name", FUSION)
def test_layer_weights_are_reported_for_multi_layer_inputs(name):
    head = small_head(name, ["audio", "text", "visual"])  # 3, 1 and 2 cached layers
    weights = head.layer_weights()
    assert set(weights) == {"audio", "visual"}
    assert len(weights["audio"]) == 3 and sum(weights["audio"]) == pytest.approx(1.0)


def test_sequence_encoder_gives_finite_rows_for_clips_without_frames():
    encoder = SequenceEncoder(8, 2, 1, 16, 0.0).eval()
    mask = torch.tensor([[True, True, False], [False, False, False]])
    with torch.no_grad():
        assert torch.isfinite(encoder(torch.randn(2, 3, 8), mask)).all()


@pytest.mark.parametrize("name,keys", CASES, ids=CASE_IDS)
def test_clips_without_frames_train_without_nan(name, keys):
    head = small_head(name, keys).train()
    lengths = varied_lengths(keys)
    for key in keys:
        lengths[key][1] = 0  # clip 1 has no frame of any modality (e.g. failed extraction)
    lengths[keys[0]][0] = 0  # clip 0 lacks only the first modality
    batch = make_batch(keys, lengths)
    logits = head(batch)
    assert torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)
    head.eval()
    with torch.no_grad():  # the inference fast path handles masks differently from training
        assert torch.isfinite(head(batch)).all()


@pytest.mark.parametrize(
    "name,keys,message",
    [
        ("audio", ["text"], "needs audio"),
        ("text", ["faces"], "needs text; got faces"),
        ("visual", ["audio"], "visual"),
        ("audio", ["audio", "text"], "needs audio"),
        ("early", ["audio"], ">= 2"),
        ("cross_attention", ["text"], ">= 2"),
        ("concat_mlp", ["visual", "faces"], "given twice"),
        ("late", [], "no inputs"),
    ],
)
def test_build_head_rejects_wrong_modalities(name, keys, message):
    with pytest.raises(EmoError, match=message):
        build_head(name, {key: SPECS[key] for key in keys}, N_CLASSES)


def test_build_head_rejects_bad_names_specs_and_hparams():
    with pytest.raises(EmoError, match="unknown head 'nope'; available: audio"):
        build_head("nope", {"audio": SPECS["audio"]}, N_CLASSES)
    with pytest.raises(EmoError, match="unknown hyperparameter.*d_modle"):
        build_head("audio", {"audio": SPECS["audio"]}, N_CLASSES, d_modle=8)
    with pytest.raises(EmoError, match="n_classes"):
        build_head("audio", {"audio": SPECS["audio"]}, 1)
    with pytest.raises(EmoError, match="kind"):
        InputSpec("audio", "waveform", (1, 8))
    with pytest.raises(EmoError, match=r"\(S, S, 3\)"):
        InputSpec("faces", "faces", (16, 8, 3))
    with pytest.raises(EmoError, match="face crops"):
        build_head("early", {"audio": InputSpec("audio", "faces", (16, 16, 3)), "text": SPECS["text"]}, N_CLASSES)
    with pytest.raises(EmoError, match="patch"):
        small_head("visual", ["faces"], face_patch=5)
    with pytest.raises(EmoError, match="combine"):
        small_head("late", ["audio", "text"], combine="max")


def test_head_rejects_features_of_another_shape():
    head = small_head("audio", ["audio"])
    x = torch.randn(2, 3, 1, 8)  # one layer where the head was built for three
    with pytest.raises(EmoError, match=r"audio: expected features \(B, T, 3, 8\)"):
        head({"audio": (x, torch.ones(2, 3, dtype=torch.bool))})


def test_list_heads_describes_every_registered_head():
    listed = {name: (description, requires) for name, description, requires in list_heads()}
    assert list(listed) == list(HEADS)
    assert {"audio", "visual", "text", "early", "late", "cross_attention", "concat_mlp"} <= set(listed)
    assert listed["visual"][1] == "visual (features or faces)"
    assert listed["early"][1].startswith(">= 2 of")
    assert all(description for description, _ in listed.values())


@pytest.mark.parametrize(
    "name,keys", [("audio", ["audio"]), ("visual", ["faces"]), ("text", ["text"])]
    + [(name, ["audio", "text", "faces"]) for name in FUSION],
)
def test_config_round_trip_rebuilds_the_same_model(name, keys):
    head = small_head(name, keys, dropout=0.1).eval()
    config = json.loads(json.dumps(head.config))  # as a checkpoint stores it
    assert config["name"] == name and config["n_classes"] == N_CLASSES
    assert config["hparams"]["dropout"] == 0.1 and set(config["hparams"]) == set(HEADS[name].defaults)
    rebuilt = Head.from_config(config)
    rebuilt.load_state_dict(head.state_dict())
    rebuilt.eval()
    assert rebuilt.config == head.config
    batch = make_batch(keys, varied_lengths(keys), seed=5)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(batch), head(batch))


def test_face_augmentation_flips_and_shifts_whole_clips_in_training_only():
    encoder = FaceEncoder(crop_size=16, image_size=None, patch=8, dim=8, layers=1, heads=2, flip=True, jitter=0)
    frames = torch.rand(6, 3, 16, 16)
    clip_of_frame = torch.tensor([0, 0, 0, 1, 1, 1])
    same = frames[[0, 0, 0, 3, 3, 3]]  # each clip repeats one image
    out = encoder.augment(same, clip_of_frame, 2)
    assert torch.equal(out[0], out[1]) and torch.equal(out[3], out[5])  # one transform per clip
    for i in (0, 3):
        assert torch.equal(out[i], same[i]) or torch.equal(out[i], same[i].flip(-1))

    encoder.flip, encoder.jitter = False, 2
    shifted = encoder.augment(same, clip_of_frame, 2)
    assert shifted.shape == same.shape and torch.equal(shifted[0], shifted[2])
    # A shift of at most 2 pixels: the centre of the image moves at most that far.
    centre = same[0][:, 2:14, 2:14]
    assert any(
        torch.equal(shifted[0][:, 2 + dy : 14 + dy, 2 + dx : 14 + dx], centre)
        for dy in range(-2, 3)
        for dx in range(-2, 3)
    )

    x = torch.randint(0, 256, (2, 3, 16, 16, 3), dtype=torch.uint8)
    mask = torch.ones(2, 3, dtype=torch.bool)
    encoder.flip, encoder.jitter = True, 2
    encoder.eval()
    torch.testing.assert_close(encoder(x, mask), encoder(x, mask))  # no augmentation at eval


def test_face_encoder_ignores_brightness_contrast_and_colour_cast():
    # The same crops under other lighting: contrast x2 and a different offset per channel.
    torch.manual_seed(0)
    encoder = FaceEncoder(crop_size=16, image_size=None, patch=8, dim=16, layers=1, heads=2).eval()
    x = torch.randint(40, 111, (2, 3, 16, 16, 3), dtype=torch.int16)
    relit = (2 * x + torch.tensor([-30, 0, 30], dtype=torch.int16)).to(torch.uint8)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    with torch.no_grad():
        torch.testing.assert_close(encoder(relit, mask), encoder(x.to(torch.uint8), mask), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size,patch", [(48, 8), (48, 16), (24, 12), (20, 5)])
def test_face_encoder_makes_one_token_per_patch(size, patch):
    encoder = FaceEncoder(crop_size=size, image_size=None, patch=patch, dim=16, layers=1, heads=2)
    tokens = encoder.patch_embed(torch.zeros(3, 3, size, size))
    assert tokens.shape == (3, 16, size // patch, size // patch)
    x, mask = torch.zeros(2, 2, size, size, 3, dtype=torch.uint8), torch.ones(2, 2, dtype=torch.bool)
    assert encoder(x, mask).shape == (2, 2, 16)


def planted_batch(keys, n_clips: int = 32, seed: int = 0):
    """Each clip's class is written into its frames' mean (features) or texture (faces).

    Faces carry the class in local shape, as expressions do: horizontal stripes, vertical
    stripes, a checkerboard or none, at a random phase, on a random colour per clip (the
    encoder standardises each crop's colour away, so colour must not be the signal).
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_clips) % N_CLASSES
    batch = {}
    for key in keys:
        lens = torch.randint(2, 7, (n_clips,), generator=g)
        T = int(lens.max())
        mask = torch.arange(T) < lens[:, None]
        if SPECS[key].kind == "faces":
            size = SPECS[key].row_shape[0]
            phase = torch.randint(0, 4, (n_clips, 1, 1), generator=g)
            rows, cols = torch.arange(size)[:, None] + phase, torch.arange(size)[None, :] + phase
            horizontal = ((rows // 2) % 2).expand(-1, -1, size)
            vertical = ((cols // 2) % 2).expand(-1, size, -1)
            patterns = torch.stack([horizontal, vertical, horizontal ^ vertical, torch.zeros_like(horizontal)], 1)
            texture = patterns[torch.arange(n_clips), labels].float()  # (n_clips, S, S)
            colour = torch.rand(n_clips, 3, generator=g) * 120 + 40
            noise = torch.randn((n_clips, T) + SPECS[key].row_shape, generator=g) * 10
            x = colour[:, None, None, None, :] + 60 * texture[:, None, :, :, None] + noise
            x = x.clamp(0, 255).to(torch.uint8)
        else:
            L, D = SPECS[key].row_shape
            means = torch.randn(N_CLASSES, D, generator=g) * 1.5
            x = means[labels][:, None, None, :] + torch.randn(n_clips, T, L, D, generator=g)
        batch[key] = (x, mask)
    return batch, labels


@pytest.mark.parametrize(
    "name,keys",
    [("audio", ["audio"]), ("visual", ["visual"]), ("visual", ["faces"]), ("text", ["text"])]
    + [(name, ["audio", "text"]) for name in FUSION]
    + [("cross_attention", ["audio", "text", "faces"])],
)
def test_each_head_learns_a_planted_signal(name, keys):
    torch.manual_seed(0)
    head = small_head(name, keys)
    batch, labels = planted_batch(keys)
    optimiser = torch.optim.Adam(head.parameters(), lr=3e-3)
    head.train()
    for _ in range(60):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(head(batch), labels).backward()
        optimiser.step()
    head.eval()
    with torch.no_grad():
        accuracy = (head(batch).argmax(dim=-1) == labels).float().mean().item()
    assert accuracy >= 0.9, f"{name} on {keys}: train accuracy {accuracy:.2f}"


def test_feature_stats_standardise_inputs_and_travel_with_the_checkpoint():
    torch.manual_seed(0)
    spec = {"audio": InputSpec("audio", "features", (2, 6))}
    plain = build_head("audio", spec, 3, d_model=16, heads=2, blocks=1, ffn=32).eval()
    scaled = build_head("audio", spec, 3, d_model=16, heads=2, blocks=1, ffn=32).eval()
    scaled.load_state_dict(plain.state_dict())
    mean, std = torch.randn(2, 6) * 50, torch.rand(2, 6) * 100 + 1
    scaled.set_feature_stats({"audio": (mean, std)})
    x, mask = torch.randn(4, 7, 2, 6), torch.ones(4, 7, dtype=torch.bool)
    # Features on another scale, standardised by their statistics, give the plain head's output.
    torch.testing.assert_close(scaled({"audio": (x * std + mean, mask)}), plain({"audio": (x, mask)}), atol=1e-4, rtol=1e-4)
    rebuilt = Head.from_config(scaled.config).eval()
    rebuilt.load_state_dict(scaled.state_dict())
    torch.testing.assert_close(rebuilt({"audio": (x * std + mean, mask)}), plain({"audio": (x, mask)}), atol=1e-4, rtol=1e-4)


def test_frame_rate_is_read_from_every_extractors_fingerprint():
    from emo.fusion.heads.registry import frame_rate

    assert frame_rate({"backbone": "compare", "frame_rate": 100.0}) == 100.0
    assert frame_rate({"detector": "retinaface", "fps": 25, "frames": None}) == 25.0
    assert frame_rate({"backbone": "vit", "faces": {"fps": 10.0, "frames": None}}) == 10.0
    assert frame_rate({"detector": "retinaface", "fps": None, "frames": 16}) is None
    assert frame_rate({"backbone": "kcelectra", "layers": [12]}) is None
    assert frame_rate({"frame_rate": "fast"}) is None


@pytest.mark.parametrize("layer_mix,blocks", [("concat", 1), ("weighted", 0), ("concat", 0)])
def test_concatenated_layers_and_encoderless_audio_head_stay_padding_invariant(layer_mix, blocks):
    torch.manual_seed(0)
    hparams = {k: v for k, v in SMALL.items() if k in HEADS["audio"].defaults}
    head = build_head("audio", rated(["audio"]), N_CLASSES, **{**hparams, "blocks": blocks},
                      layer_mix=layer_mix, pooling="stats", target_rate=40.0).eval()
    frontend = head.sequence.frontend
    # concat keeps every cached layer side by side: 3 layers x 8 dims reach the projection.
    assert frontend.out_dim == (3 * 8 if layer_mix == "concat" else 8)
    assert head.sequence.proj.in_features == frontend.out_dim
    assert (head.encoder is None) == (blocks == 0)
    assert ("audio" in head.layer_weights()) == (layer_mix == "weighted")
    assert_padding_invariant(head, ["audio"], {"audio": [2 + 3 * i for i in range(4)]})


def test_encoderless_is_for_single_input_heads_only():
    with pytest.raises(EmoError, match="blocks"):
        small_head("early", ["audio", "text"], blocks=0)
    with pytest.raises(EmoError, match="layer_mix"):
        small_head("audio", ["audio"], layer_mix="sum")
