"""Tiny randomly initialised Hugging Face models, saved like real checkpoints.

No pretrained weights exist on these machines, so tests load these folders through the same
code path users take for `facebook/wav2vec2-large-robust` or `beomi/KcELECTRA-base-v2022`.
The wav2vec2 ones keep the real conv geometry (7 layers, 400-sample receptive field, 320-sample
hop = 50 frames/s) with a few channels, so frame counts and windowing are those of the real model.
"""

from __future__ import annotations

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KCBERT_VOCAB = SHARED_DATA / "korean_tokenizers" / "kcbert-base" / "vocab.txt"


def save_tiny_wav2vec2(
    folder: str | Path,
    *,
    layer_norm: bool = True,
    hidden_size: int = 32,
    num_layers: int = 2,
    conv_channels: int = 16,
    seed: int = 0,
) -> Path:
    """A wav2vec2 folder (config, weights, preprocessor_config) with random weights.

    layer_norm=True is shaped like wav2vec2-large-robust: layer-norm feature encoder, stable
    layer norm, feature extractor returning attention masks (padding is safe).
    layer_norm=False is shaped like wav2vec2-base: group-norm feature encoder, no attention
    mask (padding changes every frame, so it must never see any).
    """
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = Path(folder)
    config = Wav2Vec2Config(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        conv_dim=(conv_channels,) * 7,
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        feat_extract_norm="layer" if layer_norm else "group",
        do_stable_layer_norm=layer_norm,
        conv_bias=layer_norm,
        vocab_size=8,
    )
    torch.manual_seed(seed)
    Wav2Vec2Model(config).eval().save_pretrained(folder)
    Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=layer_norm,
    ).save_pretrained(folder)
    return folder


def save_tiny_electra(
    folder: str | Path,
    *,
    vocab_file: str | Path = KCBERT_VOCAB,
    hidden_size: int = 32,
    num_layers: int = 2,
    seed: int = 0,
) -> Path:
    """An ELECTRA discriminator folder with random weights and the real KcBERT WordPiece vocabulary.

    do_lower_case=False as in KcBERT/KcELECTRA: lower-casing also strips accents, which
    decomposes Hangul syllables into jamo and turns every Korean word into [UNK].
    """
    import torch
    from transformers import BertTokenizer, ElectraConfig, ElectraModel

    folder = Path(folder)
    tokenizer = BertTokenizer(vocab=str(vocab_file), do_lower_case=False, model_max_length=512)
    config = ElectraConfig(
        vocab_size=len(tokenizer),
        embedding_size=hidden_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    ElectraModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_whisper(
    folder: str | Path,
    *,
    n_mels: int = 80,
    d_model: int = 32,
    num_layers: int = 2,
    seed: int = 0,
) -> Path:
    """A whole WhisperModel folder (encoder and decoder) with random weights and its feature extractor.

    The real front end (16 kHz, 10 ms hop, 30 s = 1500 encoder positions); n_mels=128 is shaped
    like whisper-large-v3. The decoder is saved too, as in a hub checkpoint, so a test can show
    it is never loaded.
    """
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    folder = Path(folder)
    config = WhisperConfig(
        vocab_size=64,
        num_mel_bins=n_mels,
        d_model=d_model,
        encoder_layers=num_layers,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        max_source_positions=1500,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    torch.manual_seed(seed)
    WhisperModel(config).eval().save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=n_mels).save_pretrained(folder)
    return folder
