"""Training one head on one fold: AdamW, warm-up + cosine, clipping, early stopping.

On a GPU it trains in bf16, or in fp16 with a loss-scaling GradScaler on cards without bf16
(`emo.accel.choose_precision`; float32 on the CPU).

The best checkpoint (by validation weighted F1) is kept in memory and loaded back at the end.
Batches come from `CachedData.batch` (in-memory gathers). Losses are summed on the device and
read once per epoch, so a GPU step never waits for the host.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from emo.fusion.augment import Augment, augment_batch, mix_batch
from emo.fusion.data import CachedData
from emo.fusion.metrics import weighted_f1


@dataclass
class TrainSettings:
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup: float = 0.05  # fraction of all steps spent warming up linearly
    grad_clip: float = 1.0
    patience: int | None = 10  # epochs without a better validation weighted F1; None: never stop early
    modality_dropout: float = 0.0
    eval_batch_size: int = 128
    class_weights: str = "none"  # "balanced": inverse training class frequency
    augment: Augment = field(default_factory=Augment)


@dataclass
class FoldTraining:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_weighted_f1: float | None = None
    seconds: float = 0.0


@contextmanager
def deterministic(device):
    """torch deterministic algorithms for the duration of a fit (warn-only where none exists)."""
    import torch

    if device.type == "cuda":
        # cuBLAS reads this when it initialises; harmless if it already has.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = torch.are_deterministic_algorithms_enabled()
    before_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)


def warmup_cosine(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """LR multiplier: linear from ~0 to 1 over the warm-up steps, then cosine down to 0."""
    warmup = max(1, int(round(warmup_fraction * total_steps)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def dropout_masks(
    data: CachedData, rows: np.ndarray, keys: Sequence[str], p: float, rng: np.random.Generator
) -> dict[str, np.ndarray] | None:
    """Per clip, with probability p, hide one of its present modalities (never its last one)."""
    if p <= 0 or len(keys) < 2:
        return None
    present = np.stack([data.modalities[k].present[rows] for k in keys], axis=1)  # (B, M)
    drop_clip = (rng.random(len(rows)) < p) & (present.sum(axis=1) >= 2)
    # A random present modality per clip: argmax of uniform noise restricted to present ones.
    choice = np.argmax(np.where(present, rng.random(present.shape), -1.0), axis=1)
    return {k: drop_clip & (choice == i) for i, k in enumerate(keys)}


def longest_input(data: CachedData, keys: Sequence[str]) -> np.ndarray:
    """(N,) frames of each clip's longest input: what a batch pads to (after the max_frames crop)."""
    return data.batch_frames(keys)


# Scoring batches are cut by padded frames as well as by clips, so that long clips come in small
# batches: at most SCORE_FRAMES padded frames per batch (the gathered features) and at most
# SCORE_ATTENTION frames^2 summed over its clips (what self-attention over each clip holds).
SCORE_FRAMES = 1 << 15
SCORE_ATTENTION = 1 << 26


def frame_budget_batches(lengths: np.ndarray, batch_size: int) -> list[slice]:
    """Consecutive slices of `lengths` (sorted ascending) of at most batch_size clips within the frame budgets."""
    slices, start = [], 0
    while start < len(lengths):
        stop = start + 1  # one clip always fits: max_frames bounds it
        while stop < len(lengths) and stop - start < batch_size:
            t = max(int(lengths[stop]), 1)
            n = stop - start + 1
            if n * t > SCORE_FRAMES or n * t * t > SCORE_ATTENTION:
                break
            stop += 1
        slices.append(slice(start, stop))
        start = stop
    return slices


# Batches are cut from pools of this many batches' worth of shuffled clips sorted by length.
# Clips of similar length then share a batch, so little compute goes to padding (attention pays
# for padded frames too), while batch contents and order stay random from epoch to epoch.
LENGTH_POOL = 8


def length_batches(rows: np.ndarray, lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of training batches: shuffled, grouped by length within pools, in shuffled order."""
    order = rows[rng.permutation(len(rows))]
    batches = []
    span = batch_size * LENGTH_POOL
    for start in range(0, len(order), span):
        pool = order[start : start + span]
        pool = pool[np.argsort(lengths[pool], kind="stable")]
        batches += [pool[i : i + batch_size] for i in range(0, len(pool), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def infer_probabilities(
    head, data: CachedData, rows: np.ndarray, keys: Sequence[str], device, labels: np.ndarray | None = None,
    batch_size: int = 128,
):
    """(probabilities (N, K) float64, mean cross-entropy) of `head` on `rows`; labels are per data row.

    Without labels (clips to score, `emo predict`) the loss is None. Clips are scored in order of
    length (less padding; a clip's output does not depend on its batch) and returned in the order of `rows`.
    """
    import torch

    from emo.accel import autocast, choose_precision

    head.eval()
    probs, loss_sum = [], None
    frames = longest_input(data, keys)[rows]
    by_length = np.argsort(frames, kind="stable")
    sorted_rows = rows[by_length]
    targets = None if labels is None else torch.from_numpy(labels[sorted_rows]).to(device)
    with torch.no_grad(), autocast(device, choose_precision(device).dtype):
        for part_slice in frame_budget_batches(frames[by_length], batch_size):
            chunk = sorted_rows[part_slice]
            logits = head(data.batch(chunk, keys, device)).float()
            if targets is not None:
                part = torch.nn.functional.cross_entropy(logits, targets[part_slice], reduction="sum")
                loss_sum = part if loss_sum is None else loss_sum + part
            probs.append(torch.softmax(logits, dim=-1))
    if not probs:
        return np.zeros((0, head.n_classes)), None
    out = np.empty((len(rows), head.n_classes))
    out[by_length] = torch.cat(probs).double().cpu().numpy()
    return out, None if loss_sum is None else float(loss_sum) / len(rows)


def feature_stats(data: CachedData, keys: Sequence[str], rows: np.ndarray, chunk: int = 1 << 16) -> dict:
    """Mean and std per (layer, dim) over every real frame of the training clips, per feature input."""
    import torch

    stats = {}
    for key in keys:
        modality = data.modalities.get(key)
        if modality is None or modality.kind != "features":
            continue
        lengths = modality.lengths[rows]
        lengths = lengths[lengths > 0]
        starts = modality.starts.cpu().numpy()[rows][modality.lengths[rows] > 0]
        frames = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
        if len(frames) == 0:
            continue
        # Chunked (no full float32 copy in memory). Each chunk is summed in float32 around a
        # reference (the first chunk's mean), and the chunk sums are added in float64: centring
        # keeps E[d^2] - E[d]^2 from cancelling where |mean| >> std, and a float64 copy of every
        # frame (the old way) cost more than the rest of a fold's set-up.
        reference = None
        total = torch.zeros(modality.row_shape, dtype=torch.float64)
        squares = torch.zeros(modality.row_shape, dtype=torch.float64)
        for start in range(0, len(frames), chunk):
            block = modality.data[torch.from_numpy(frames[start : start + chunk]).to(modality.data.device)].float()
            if reference is None:
                reference = block.mean(0)
            block = block - reference
            total += block.sum(0).double().cpu()
            squares += block.square_().sum(0).double().cpu()
        mean = total / len(frames)
        std = (squares / len(frames) - mean * mean).clamp(min=0).sqrt()
        stats[key] = ((mean + reference.double().cpu()).float(), std.float())
    return stats


def class_weights(train_labels: np.ndarray, n_classes: int, mode: str, device):
    """None (plain cross-entropy), or per-class weights n / (K n_c) from the training labels ("balanced").

    sklearn's "balanced" formula: each class then carries the same total weight, which is what
    UAR (the mean of per-class recalls) rewards. A class absent from training gets weight 1.
    """
    if mode == "none":
        return None
    import torch

    counts = np.bincount(train_labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32, device=device)


def check_finite_loss(loss: float, part: str, epoch: int, settings: TrainSettings) -> None:
    """Stop a diverged fit at the epoch it diverged: NaN/inf loss is never trained on or reported as a result."""
    if not math.isfinite(loss):
        from emo.errors import EmoError

        raise EmoError(
            f"training diverged: the {part} loss is {loss} at epoch {epoch} (peak lr {settings.lr:g}); "
            "lower --lr (or --grad-clip), nothing was written"
        )


def train_fold(
    head,
    data: CachedData,
    keys: Sequence[str],
    labels: np.ndarray,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    settings: TrainSettings,
    device,
    rng: np.random.Generator,
    on_epoch: Callable[[dict], None] | None = None,
) -> FoldTraining:
    """Train in place; `head` ends holding its best-validation weights (last epoch without validation).

    `labels` (one class index per data row) may differ from `data.labels` when a fit keeps a
    subset of the classes; rows are positions in `data`.
    """
    import torch

    from emo.accel import autocast, choose_precision

    precision = choose_precision(device)
    # Disabled (a pass-through) unless the compute dtype is fp16.
    scaler = torch.amp.GradScaler(device.type, enabled=precision.grad_scaler)
    stats = feature_stats(data, keys, train_rows)
    head.set_feature_stats(stats)
    head.to(device)
    fill = {key: mean.to(device) for key, (mean, _) in stats.items()}  # feature masking's value
    weights = class_weights(labels[train_rows], head.n_classes, settings.class_weights, device)
    clip_lengths = longest_input(data, keys)
    steps_per_epoch = math.ceil(len(train_rows) / settings.batch_size)
    total_steps = max(1, steps_per_epoch * settings.epochs)
    decay, no_decay = [], []
    for name, param in head.named_parameters():
        if param.requires_grad:
            # Biases, norms and small learned vectors (layer mix, tokens) are not weight-decayed.
            (no_decay if param.dim() < 2 else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.lr,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_steps, settings.warmup))
    targets = torch.from_numpy(labels).to(device)
    result = FoldTraining()
    best_state, since_best = None, 0
    started = time.perf_counter()

    for epoch in range(1, settings.epochs + 1):
        tick = time.perf_counter()
        head.train()
        batches = length_batches(train_rows, clip_lengths, settings.batch_size, rng)
        loss_sum = torch.zeros((), device=device)
        for rows in batches:
            batch = data.batch(rows, keys, device, dropout_masks(data, rows, keys, settings.modality_dropout, rng), rng=rng)
            target = targets[torch.from_numpy(rows).to(device)]
            augment = settings.augment
            if augment.time_mask or augment.feature_mask:
                batch = augment_batch(batch, augment, rng, fill)
            if augment.mixup:
                batch, partner, lam = mix_batch(batch, augment.mixup, rng)
            with autocast(device, precision.dtype):
                logits = head(batch).float()
            loss = torch.nn.functional.cross_entropy(logits, target, weight=weights)
            if augment.mixup:
                partner_loss = torch.nn.functional.cross_entropy(logits, target[partner.to(device)], weight=weights)
                loss = lam * loss + (1.0 - lam) * partner_loss
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if settings.grad_clip:
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                torch.nn.utils.clip_grad_norm_(head.parameters(), settings.grad_clip)
            scaler.step(optimizer)  # skipped when fp16 gradients overflowed; the scale then shrinks
            scaler.update()
            scheduler.step()
            loss_sum += loss.detach() * len(rows)
        record = {"epoch": epoch, "train_loss": float(loss_sum) / len(train_rows), "lr": scheduler.get_last_lr()[0]}
        check_finite_loss(record["train_loss"], "training", epoch, settings)

        if len(val_rows):
            probs, val_loss = infer_probabilities(head, data, val_rows, keys, device, labels, settings.eval_batch_size)
            score = weighted_f1(labels[val_rows], probs.argmax(axis=1))
            record.update(val_loss=val_loss, val_weighted_f1=score)
            check_finite_loss(val_loss, "validation", epoch, settings)
            improved = result.best_val_weighted_f1 is None or score > result.best_val_weighted_f1
            if improved:
                result.best_val_weighted_f1, result.best_epoch, since_best = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
            else:
                since_best += 1
        else:
            result.best_epoch = epoch
        record["seconds"] = time.perf_counter() - tick
        result.history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if len(val_rows) and settings.patience and since_best >= settings.patience:
            break

    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    result.seconds = time.perf_counter() - started
    return result
