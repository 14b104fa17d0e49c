"""Text and visual extractors on tiny random encoders saved like real ones, fed real Korean
transcripts and real MEAD face video."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from emo.cache.fingerprint import canonical
from emo.clip import Clip
from emo.errors import BackboneError, ClipMissing

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from emo.extract.encoders.image_backbone import PixelNormaliser, VisualExtractor, make_visual_extractor  # noqa: E402
from emo.extract.encoders.text_backbone import TextExtractor, make_text_extractor  # noqa: E402

HIDDEN = 32
LAYERS = 2


# ---- tiny models, saved the way hub snapshots are -----------------------------------------


def kcbert_vocab(shared_data: Path) -> Path:
    return shared_data / "korean_tokenizers" / "kcbert-base" / "vocab.txt"


def save_tiny_electra(folder: Path, vocab: Path, seed: int = 0, max_positions: int = 128) -> Path:
    """A random ELECTRA with the real KcBERT vocabulary, laid out like the KcELECTRA hub snapshot
    (config + weights + vocab.txt, no tokenizer.json)."""
    from transformers import ElectraConfig, ElectraModel

    torch.manual_seed(seed)
    config = ElectraConfig(
        vocab_size=sum(1 for line in open(vocab, encoding="utf-8") if line.strip()),
        embedding_size=HIDDEN,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
    )
    ElectraModel(config).eval().save_pretrained(folder)
    shutil.copy(vocab, folder / "vocab.txt")
    return folder


def save_tiny_vit(folder: Path, seed: int = 0, image_size: int = 64) -> Path:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=image_size,
        patch_size=16,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
    )
    ViTModel(config).eval().save_pretrained(folder)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def electra_dir(tmp_path_factory, shared_data) -> Path:
    return save_tiny_electra(tmp_path_factory.mktemp("electra"), kcbert_vocab(shared_data))


@pytest.fixture(scope="module")
def text_all(electra_dir) -> TextExtractor:
    return TextExtractor(str(electra_dir), layers="all")


@pytest.fixture(scope="module")
def transcripts(shared_data) -> list[Clip]:
    files = sorted((shared_data / "kor_emotiontts").glob("*/*/transcript/*.txt"))
    # A spread over speakers, groups and emotions rather than the first few files.
    picked = files[:: max(1, len(files) // 24)][:24]
    assert picked, "no Korean transcripts found"
    return [
        Clip(id=f.stem, label="", speaker=f.stem[:3], text=f.read_text(encoding="utf-8-sig").strip()) for f in picked
    ]


# ---- text ---------------------------------------------------------------------------------


def test_korean_transcripts_become_real_wordpieces(text_all, transcripts):
    # The hub-style folder has no tokenizer.json; a default (lower-casing, accent-stripping)
    # WordPiece tokenizer would decompose every Hangul syllable and give all [UNK].
    prepared = [text_all.prepare(c) for c in transcripts]
    ids = np.concatenate([p.ids for p in prepared])
    unk_share = np.mean(ids == text_all.tokenizer.unk_token_id)
    assert unk_share < 0.02
    pieces = text_all.tokenizer.convert_ids_to_tokens(prepared[0].ids.tolist())
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    assert any("\uac00" <= ch <= "\ud7a3" for piece in pieces for ch in piece)  # Hangul syllables survive
    assert text_all.fingerprint()["do_lower_case"] is False


def test_tokenizer_json_folder_gives_the_same_tokens(tmp_path, text_all, transcripts):
    from tiny_models import save_tiny_electra as save_with_tokenizer_json

    folder = save_with_tokenizer_json(tmp_path / "m")
    assert (folder / "tokenizer.json").is_file() and not (folder / "vocab.txt").exists()
    extractor = TextExtractor(str(folder))
    for clip in transcripts[:5]:
        assert extractor.prepare(clip).ids.tolist() == text_all.prepare(clip).ids.tolist()


def test_tokenizer_disagreeing_with_vocab_file_is_a_backbone_error(tmp_path, shared_data):
    from transformers import BertTokenizer

    folder = save_tiny_electra(tmp_path / "m", kcbert_vocab(shared_data))
    tiny_vocab = tmp_path / "tiny_vocab.txt"
    tiny_vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]) + "\n", encoding="utf-8")
    BertTokenizer(vocab=str(tiny_vocab)).save_pretrained(folder)  # tokenizer.json of 7 tokens beside a 30k vocab.txt
    with pytest.raises(BackboneError, match="tokenizer has 7 tokens"):
        TextExtractor(str(folder))


def test_batched_rows_equal_single_rows_without_padding(text_all, transcripts):
    prepared = [text_all.prepare(c) for c in transcripts]
    assert len({len(p.ids) for p in prepared}) > 3  # lengths differ, so the batch really is padded
    batched = text_all.encode(prepared)
    for p, rows in zip(prepared, batched):
        single = text_all.encode([p])[0]
        assert rows.dtype == np.float16 and rows.shape == (len(p.ids), LAYERS + 1, HIDDEN)
        np.testing.assert_allclose(rows.astype(np.float32), single.astype(np.float32), atol=2e-3)
    assert [text_all.cost(p) for p in prepared] == [len(p.ids) for p in prepared]


def test_small_token_budget_splits_the_batch_without_changing_rows(electra_dir, text_all, transcripts):
    small = TextExtractor(str(electra_dir), layers="all", batch_tokens=40)  # raised to max_tokens (128)
    prepared = [small.prepare(c) for c in transcripts[:8]]
    assert len(small._groups(np.array([len(p.ids) for p in prepared]))) > 1
    for a, b in zip(small.encode(prepared), text_all.encode(prepared)):
        np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), atol=2e-3)


def test_layer_selection(electra_dir, text_all, transcripts):
    clip = transcripts[0]
    every = text_all.encode([text_all.prepare(clip)])[0]
    last = make_text_extractor(str(electra_dir), layers=None)  # the runner passes None for "default"
    picked = TextExtractor(str(electra_dir), layers="0,-1")
    assert last.row_shape == (1, HIDDEN) and picked.row_shape == (2, HIDDEN)
    np.testing.assert_array_equal(last.encode([last.prepare(clip)])[0][:, 0], every[:, LAYERS])
    np.testing.assert_array_equal(picked.encode([picked.prepare(clip)])[0], every[:, [0, LAYERS]])
    assert picked.fingerprint()["layers"] == [0, LAYERS]
    with pytest.raises(BackboneError, match="out of range"):
        TextExtractor(str(electra_dir), layers="5")
    with pytest.raises(BackboneError, match="comma-separated"):
        TextExtractor(str(electra_dir), layers="last,2")


@pytest.mark.parametrize("text", [None, "", "   \n", "\ufeff "])
def test_empty_transcript_is_missing(text_all, text):
    with pytest.raises(ClipMissing, match="empty transcript") as caught:
        text_all.prepare(Clip(id="nea00001", label="neutral", speaker="nea", text=text))
    assert caught.value.status == "missing" and caught.value.path == "nea00001"


def test_long_transcript_is_truncated_and_recorded(electra_dir, transcripts):
    short = TextExtractor(str(electra_dir), max_tokens=8)
    long_text = " ".join(c.text for c in transcripts[:3])
    prepared = short.prepare(Clip(id="long", label="", speaker="", text=long_text))
    assert prepared.truncated and len(prepared.ids) == 8
    assert short.tokenizer.convert_ids_to_tokens(prepared.ids.tolist())[-1] == "[SEP]"
    assert short.encode([prepared])[0].shape[0] == 8
    assert short.fingerprint()["max_tokens"] == 8
    # The model's position table caps max_tokens too (128 positions in the tiny model).
    assert TextExtractor(str(electra_dir), max_tokens=512).fingerprint()["max_tokens"] == 128


def test_text_fingerprint_follows_the_weights(tmp_path, shared_data, electra_dir, text_all):
    same = TextExtractor(str(electra_dir), layers="all")
    assert canonical(same.fingerprint()) == canonical(text_all.fingerprint())
    other = TextExtractor(str(save_tiny_electra(tmp_path / "m", kcbert_vocab(shared_data), seed=1)), layers="all")
    changed = {k for k in text_all.fingerprint() if other.fingerprint()[k] != text_all.fingerprint()[k]}
    assert changed == {"backbone", "revision"}  # backbone: a different folder name; revision: the weights
    retrained = tmp_path / "retrained"
    shutil.copytree(electra_dir, retrained)
    save_tiny_electra(retrained, kcbert_vocab(shared_data), seed=2)  # same folder, new weights
    before = TextExtractor(str(electra_dir)).fingerprint()["revision"]
    assert TextExtractor(str(retrained)).fingerprint()["revision"] != before


def test_text_sequences_through_the_cache(tmp_path, text_all, transcripts):
    from emo.cache import CacheReader
    from emo.extract.run.local import extract_into_cache

    clips = transcripts[:6] + [Clip(id="silent", label="", speaker="", text="  ")]
    (summary,) = extract_into_cache(clips, tmp_path / "c.h5", {"text": text_all}, dataset="kor", workers=2, progress=False)
    assert (summary.extracted, summary.missing) == (6, 1)
    reader = CacheReader(tmp_path / "c.h5")
    assert reader.layer_ids("text") == [0, 1, 2]
    stored = reader.load("text", [c.id for c in transcripts[:6]])
    for i, clip in enumerate(transcripts[:6]):
        single = text_all.encode([text_all.prepare(clip)])[0]
        np.testing.assert_allclose(stored[i].astype(np.float32), single.astype(np.float32), atol=2e-3)
    assert reader.failures("text") == [("silent", "missing", "empty transcript")]


def test_unloadable_text_backbones_say_how_to_fix(tmp_path):
    with pytest.raises(BackboneError, match="local folder"):
        TextExtractor("no-such-user/no-such-model")
    (tmp_path / "config.json").write_text('{"model_type": "electra"}')
    with pytest.raises(BackboneError, match="local folder"):
        TextExtractor(str(tmp_path))  # config but no weights


# ---- visual -------------------------------------------------------------------------------


FRAMES = 6
FACE_SIZE = 112


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory) -> Path:
    return save_tiny_vit(tmp_path_factory.mktemp("vit"))


@pytest.fixture(scope="module")
def mead_clips(shared_data) -> list[Clip]:
    videos = sorted((shared_data / "face_video" / "mead").glob("*.mp4"))
    picked = [videos[0], videos[-1]]  # two speakers
    return [Clip(id=v.stem, label=v.stem.split("_")[2], speaker=v.stem[:4], video=str(v)) for v in picked]


@pytest.fixture(scope="module")
def visual_all(vit_dir) -> VisualExtractor:
    return make_visual_extractor(str(vit_dir), layers="all", frames=FRAMES, face_size=FACE_SIZE)


@pytest.fixture(scope="module")
def mead_crops(visual_all, mead_clips) -> list[np.ndarray]:
    return [visual_all.prepare(c) for c in mead_clips]


class CropsFaces:
    """A face stage handing over given crops: lets an encoder be tested without re-detecting."""

    modality, dtype = "faces", "uint8"

    def __init__(self, crops: dict[str, np.ndarray]):
        self.crops = crops
        self.row_shape = next(iter(crops.values())).shape[1:]

    def fingerprint(self):
        return {"crops": sorted(self.crops)}

    def prepare(self, clip):
        return self.crops[clip.id]

    def cost(self, prepared):
        return len(prepared)

    def encode(self, batch):
        return list(batch)


def test_visual_rows_on_real_face_video(visual_all, mead_clips, mead_crops):
    faces = visual_all.faces
    assert type(faces).__name__ == "FacesExtractor"  # the real face pipeline, not a stand-in
    for clip, crops in zip(mead_clips, mead_crops):
        stage = faces.prepare(clip)  # what the faces modality stores for this clip
        assert crops.dtype == np.uint8 and crops.shape == (len(stage.crops), FACE_SIZE, FACE_SIZE, 3)
        assert stage.info["detected"] == FRAMES  # frontal MEAD faces are found in every frame
    rows = visual_all.encode(mead_crops)
    for crops, clip_rows in zip(mead_crops, rows):
        assert clip_rows.dtype == np.float16 and clip_rows.shape == (len(crops), LAYERS + 1, HIDDEN)
        assert np.isfinite(clip_rows).all()
        assert np.abs(np.diff(clip_rows[:, -1].astype(np.float32), axis=0)).max() > 0  # frames differ
    assert visual_all.cost(mead_crops[0]) == len(mead_crops[0])


def test_visual_drop_policy_keeps_only_frames_with_a_face(vit_dir, mead_clips):
    dropping = VisualExtractor(str(vit_dir), frames=3, face_size=FACE_SIZE, missing_frames="drop")
    stage = dropping.faces.prepare(mead_clips[0])
    rows = dropping.encode([dropping.prepare(mead_clips[0])])[0]
    assert rows.shape[0] == stage.info["detected"] == int(stage.info["frame_index"].size)


def test_visual_batched_equals_single_and_frame_slices(vit_dir, visual_all, mead_crops):
    batched = visual_all.encode(mead_crops)
    sliced = VisualExtractor(str(vit_dir), layers="all", batch_frames=4, faces=CropsFaces({"x": mead_crops[0]}))
    for crops, rows, in_slices in zip(mead_crops, batched, sliced.encode(mead_crops)):
        single = visual_all.encode([crops])[0]
        np.testing.assert_allclose(rows.astype(np.float32), single.astype(np.float32), atol=2e-3)
        np.testing.assert_allclose(in_slices.astype(np.float32), single.astype(np.float32), atol=2e-3)


def test_visual_layer_selection(vit_dir, visual_all, mead_crops):
    faces = CropsFaces({"x": mead_crops[0]})
    every = visual_all.encode(mead_crops[:1])[0]
    last = VisualExtractor(str(vit_dir), faces=faces)
    picked = VisualExtractor(str(vit_dir), layers="1", faces=faces)
    assert last.row_shape == (1, HIDDEN) and picked.row_shape == (1, HIDDEN)
    np.testing.assert_array_equal(last.encode(mead_crops[:1])[0][:, 0], every[:, LAYERS])
    np.testing.assert_array_equal(picked.encode(mead_crops[:1])[0][:, 0], every[:, 1])
    assert last.fingerprint()["pooling"] == "cls"


def test_tensor_normalisation_matches_the_image_processor(mead_crops):
    from transformers import CLIPImageProcessor, ViTImageProcessor

    crops = mead_crops[0]
    processors = [
        ViTImageProcessor(size={"height": 64, "width": 64}),  # plain resize (downscale 112 -> 64)
        ViTImageProcessor(size={"height": FACE_SIZE, "width": FACE_SIZE}),  # no resize at all
        CLIPImageProcessor(size={"shortest_edge": 80}, crop_size={"height": 64, "width": 64}),  # resize + centre crop
    ]
    for processor in processors:
        normaliser = PixelNormaliser.from_processor(processor, FACE_SIZE, "test")
        ours = normaliser(torch.from_numpy(crops)).numpy()
        theirs = processor(images=list(crops), return_tensors="np")["pixel_values"]
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, atol=0.05)  # a few grey levels: PIL vs torch filters
        assert np.abs(ours - theirs).mean() < 0.01


def test_clip_vision_tower_from_a_two_tower_folder(tmp_path, mead_crops):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=99),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                           num_attention_heads=2, intermediate_size=64),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(tmp_path)
    CLIPImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    extractor = VisualExtractor(str(tmp_path), layers="all", faces=CropsFaces({"x": mead_crops[0]}))
    rows = extractor.encode(mead_crops[:1])[0]
    assert rows.shape == (len(mead_crops[0]), LAYERS + 1, HIDDEN)
    assert extractor.fingerprint()["pooling"] == "cls" and extractor.fingerprint()["model_type"] == "clip"


def test_video_without_a_face_is_missing(tmp_path, visual_all):
    import av

    path = tmp_path / "wall.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 128
        stream.pix_fmt = "yuv420p"
        wall = np.full((128, 128, 3), 90, dtype=np.uint8)
        for i in range(25):
            wall[:, :, 0] = 60 + i  # a slowly changing plain wall
            for packet in stream.encode(av.VideoFrame.from_ndarray(wall, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(ClipMissing, match="no face") as caught:
        visual_all.prepare(Clip(id="wall", label="", speaker="", video=str(path)))
    assert caught.value.status == "missing"


def test_visual_fingerprint_nests_the_face_settings_and_follows_the_weights(tmp_path, vit_dir, visual_all):
    fingerprint = visual_all.fingerprint()
    assert fingerprint["faces"]["face_size"] == FACE_SIZE and fingerprint["faces"]["frames"] == FRAMES
    assert fingerprint["schema"] == 1 and fingerprint["layers"] == [0, 1, 2]
    bigger = make_visual_extractor(str(vit_dir), layers="all", frames=FRAMES, face_size=FACE_SIZE + 16)
    assert bigger.fingerprint()["faces"] != fingerprint["faces"]
    by_fps = make_visual_extractor(str(vit_dir), layers="all", fps=5, face_size=FACE_SIZE)
    assert by_fps.fingerprint()["faces"]["fps"] == 5 and by_fps.fingerprint()["faces"]["frames"] is None
    retrained = tmp_path / "vit"
    shutil.copytree(vit_dir, retrained)
    save_tiny_vit(retrained, seed=3)
    moved = make_visual_extractor(str(retrained), layers="all", frames=FRAMES, face_size=FACE_SIZE)
    assert moved.fingerprint()["revision"] != fingerprint["revision"]


def test_unloadable_visual_backbones_say_how_to_fix(tmp_path, vit_dir):
    with pytest.raises(BackboneError, match="--visual-backbone"):
        make_visual_extractor(None)
    with pytest.raises(BackboneError, match="local folder"):
        make_visual_extractor("no-such-user/no-such-vit")
    no_processor = tmp_path / "vit"
    shutil.copytree(vit_dir, no_processor)
    (no_processor / "preprocessor_config.json").unlink()
    with pytest.raises(BackboneError, match="preprocessor_config.json"):
        make_visual_extractor(str(no_processor))


def test_encoder_rejecting_the_crop_size_fails_at_load(tmp_path, vit_dir, mead_crops):
    from transformers import ViTImageProcessor

    no_resize = tmp_path / "vit"
    shutil.copytree(vit_dir, no_resize)
    ViTImageProcessor(do_resize=False).save_pretrained(no_resize)  # 112-pixel crops reach a 64-pixel ViT
    with pytest.raises(BackboneError, match="cannot encode a 112x112 face crop"):
        VisualExtractor(str(no_resize), faces=CropsFaces({"x": mead_crops[0]}))
