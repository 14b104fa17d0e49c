"""The `emo` command. Thin: parse options, call the library, print with rich.

Heavy imports (torch, transformers, h5py, av...) live inside the commands so that
`emo --help` starts instantly. Each command section below is owned by one stage.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated, List, Optional

import typer

# Option defaults live once, in the options dataclasses (stdlib-only modules: no torch at start-up).
from emo.extract.options import ExtractOptions
from emo.fusion.options import default as fit_default

from emo.cli_errors import DEBUG_ENV, EmoGroup
from emo.constants import DEMO_CLIPS, DEMO_EPOCHS, DEMO_SEED, SWEEP_HEARTBEAT_S
from emo.errors import EmoError

app = typer.Typer(
    cls=EmoGroup,  # the one error boundary: one line per error, never a traceback (emo/cli_errors.py)
    help="emo: emotion recognition from speech, faces and transcripts. "
    "`emo extract` caches frozen-encoder sequences once; `emo fit` trains fusion heads from the cache in seconds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cache_app = typer.Typer(help="Inspect, verify and merge HDF5 feature caches.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help=f"Let an unexpected error through with its traceback (as {DEBUG_ENV}=1)."
    ),
) -> None:
    # Read by EmoGroup.invoke from the group's parameters; nothing to do here.
    return None


EXTRACT_DEFAULTS = {f.name: f.default for f in fields(ExtractOptions)}

# ---- options several commands take: each declared once ---------------------------------
# One device convention everywhere: "auto" is cuda when available, else cpu.
Device = Annotated[str, typer.Option("--device", help='Torch device: auto (cuda when available, else cpu), cpu, cuda or cuda:N.')]
# fit and sweep
Modalities = Annotated[Optional[str], typer.Option("--modalities", help="Comma list of cache modalities (default: what the head takes among those cached).")]
Split = Annotated[str, typer.Option("--split", help="stratified | speaker | kfold:K | kfold-speaker:K | column:NAME.")]
Epochs = Annotated[int, typer.Option("--epochs", help="Most epochs per fold.")]
LabelColumn = Annotated[Optional[str], typer.Option("--label-column", help="Use this clip column as the label (e.g. a perceived-label extras column).")]
Classes = Annotated[Optional[str], typer.Option("--classes", help="Comma list of the classes to keep.")]
HeadParams = Annotated[List[str], typer.Option("--set", help="Head hyperparameter KEY=VALUE, e.g. d_model=256 (repeatable).")]
Normalize = Annotated[str, typer.Option(
    "--normalize", help="none | speaker: standardise each speaker's features with that speaker's own clips "
    "(transductive: test speakers too; a single-clip speaker gets global statistics).",
)]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace runs already in --out.")]
TestCache = Annotated[Optional[Path], typer.Option("--test-cache", help="Train on all of CACHE (less --val-fraction for early stopping, carved as --split stratified|speaker says) and test on this other corpus' cache.")]
LabelMap = Annotated[List[str], typer.Option("--label-map", help="With --test-cache: its class SRC scored as the run's class DST: SRC=DST,... (SRC=- leaves SRC out); other classes match by name.")]
Overlap = Annotated[str, typer.Option("--overlap", help="With --test-cache: its clips that are also training/validation clips: refuse | exclude | include (counted).")]


# ---- datasets (emo/extract/datasets) -------------------------------------------------
# <datasets-section>
@app.command("datasets")
def datasets_command(
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Show one adapter in detail: labels, options."),
) -> None:
    """List the dataset adapters: the layouts `emo extract` reads and their labels."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from emo.extract.datasets import get_adapter, list_adapters

    console = Console()
    if name is None:
        table = Table(title="dataset adapters", show_lines=True)
        table.add_column("name", style="bold", no_wrap=True)
        table.add_column("labels", ratio=1)
        table.add_column("layout", ratio=2)
        for adapter_name, description, layout in list_adapters():
            labels = get_adapter(adapter_name).labels
            table.add_row(
                adapter_name,
                ", ".join(labels) if labels else "(from the manifest)",
                Text.assemble(description, "\n", (layout, "dim")),
            )
        console.print(table)
        console.print("[dim]details and options: emo datasets --name NAME[/]")
        return
    adapter = get_adapter(name)
    console.print(f"[bold]{adapter.name}[/]: {adapter.description}", highlight=False)
    console.print(f"layout: {adapter.layout}", highlight=False)
    console.print(f"labels: {', '.join(adapter.labels) if adapter.labels else 'from the manifest'}", highlight=False)
    if adapter.options:
        table = Table(title="options", title_justify="left")
        table.add_column("option", style="bold")
        table.add_column("default")
        table.add_column("meaning")
        for option, default in adapter.options.items():
            table.add_row(option, repr(default), adapter.option_help.get(option, ""))
        console.print(table)
    else:
        console.print("options: none")
# </datasets-section>


# ---- cache (emo/cache) --------------------------------------------------------------
# <cache-section>
@cache_app.command("info")
def cache_info(cache: Path = typer.Argument(..., help="An emo HDF5 cache file.")) -> None:
    """Clips, labels, speakers, per-modality shapes, frames, fingerprint, failures and size."""
    import json

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from emo.cache.inspect import file_size, label_counts, summarize

    reader, summaries = summarize(cache)
    console = Console()
    clips = reader.clips
    console.print(
        # Every string from the file or the user is escaped: `a[/]b` in a name prints as given.
        f"[bold]{escape(str(cache))}[/]  dataset [cyan]{escape(reader.dataset)}[/]  {len(clips)} clips, "
        f"{len(set(clips.speakers))} speakers, {file_size(cache) / 1e6:.1f} MB, "
        f"emo {escape(reader.emo_version)}, created {escape(reader.created)}",
        highlight=False,
    )
    console.print("labels: " + escape(", ".join(f"{k} {v}" for k, v in label_counts(reader).items())), highlight=False)
    table = Table("modality", "row shape", "dtype", "ok", "missing", "failed", "pending", "frames mean/max", "backbone")
    for s in summaries:
        table.add_row(
            s.name, "x".join(map(str, s.row_shape)), s.dtype, str(s.counts["ok"]), str(s.counts["missing"]),
            str(s.counts["failed"]), str(s.counts["pending"]), f"{s.frames_mean:.1f} / {s.frames_max}",
            escape(str(s.fingerprint.get("backbone", s.fingerprint.get("detector", "")))),
        )
    console.print(table)
    for s in summaries:
        console.print(f"[bold]{s.name}[/] fingerprint: {escape(json.dumps(s.fingerprint, sort_keys=True))}", highlight=False)
        for clip_id, status, reason in s.first_failures:
            console.print(f"  {status} {escape(clip_id)}: {escape(reason)}", highlight=False)


@cache_app.command("verify")
def cache_verify(cache: Path = typer.Argument(..., help="An emo HDF5 cache file.")) -> None:
    """Check structure and read every stored row; exit 1 when anything is wrong."""
    from rich.console import Console
    from rich.markup import escape

    from emo.cache.inspect import unchecksummed, verify

    problems = verify(cache)
    unchecked = unchecksummed(cache)
    if problems:
        for problem in problems:
            Console(stderr=True, soft_wrap=True).print(f"[red]{escape(str(cache))}:[/] {escape(problem)}", highlight=False)
        raise typer.Exit(1)
    note = f" (no chunk checksums in {', '.join(unchecked)}: an older cache, damaged bytes there go unseen)" if unchecked else ""
    Console().print(f"[green]ok[/] {escape(str(cache))}{note}", highlight=False)


@cache_app.command("merge")
def cache_merge(
    shards: List[Path] = typer.Argument(..., help="Shard caches written by `emo extract --shard I/N` (or torchrun ranks)."),
    out: Path = typer.Option(..., "-o", "--out", help="The merged cache to write."),
) -> None:
    """Merge shard caches into one: every clip once, fingerprints must agree."""
    from rich.console import Console
    from rich.markup import escape

    from emo.cache.merge import merge_caches

    summary = merge_caches(shards, out)
    ok = ", ".join(f"{m} {n}" for m, n in summary.ok.items())
    Console().print(f"[green]merged[/] {len(shards)} shards -> {escape(str(out))}: {summary.clips} clips; ok: {ok}", highlight=False)
# </cache-section>


# ---- extract (emo/extract) ----------------------------------------------------------
# <extract-section>
@app.command("extract")
def extract_command(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., help="Dataset adapter name (list them with `emo datasets`)."),
    root: Path = typer.Argument(..., help="The dataset's folder (or manifest file)."),
    out: Path = typer.Option(..., "--out", "-o", help="Cache file to create, or to resume/update when it exists."),
    modalities: Optional[str] = typer.Option(
        None,
        "--modalities",
        help="Comma list of audio,text,faces,visual. Default: what the dataset has: "
        "audio if its clips have audio, text if they have transcripts, faces if they have video.",
    ),
    audio_backbone: str = typer.Option(
        EXTRACT_DEFAULTS["audio_backbone"], "--audio-backbone",
        help="HF id, local model folder, or built-in: whisper-base, whisper-tiny.en (packaged weights), egemaps, compare, logmel.",
    ),
    audio_layers: Optional[str] = typer.Option(None, "--audio-layers", help="Hidden layers kept: last, all, or e.g. 12,18,24 (negative: from the end, -1 = last; default: the backbone's)."),
    whisper_input: Optional[str] = typer.Option(
        None, "--whisper-input", help="Whisper encoders: cut (default: the clip's own frames) or pad30 (padded to 30 s as in training)."
    ),
    text_backbone: str = typer.Option(EXTRACT_DEFAULTS["text_backbone"], "--text-backbone", help="HF id or local model folder."),
    text_layers: Optional[str] = typer.Option(None, "--text-layers", help="Hidden layers kept: last, all, or e.g. 8,12 (negative: from the end, -1 = last; default: last)."),
    visual_backbone: Optional[str] = typer.Option(None, "--visual-backbone", help="Image encoder for face crops: HF id or local folder."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Video frames sampled per second (or give --frames)."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Video frames sampled per clip, evenly spaced (or give --fps)."),
    face_size: Optional[int] = typer.Option(None, "--face-size", help="Side in pixels of the aligned face crops."),
    device: Device = "auto",
    shard: Optional[str] = typer.Option(
        None,
        "--shard",
        help="I/N: extract only the clips whose position in the id-sorted clip list is I modulo N, "
        "into this shard's own cache file (merge them later).",
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild the chosen modalities even when their fingerprint is unchanged."),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Extract clips recorded as failed again (after fixing their files); without it a rerun skips them."
    ),
    batch_seconds: float = typer.Option(EXTRACT_DEFAULTS["batch_seconds"], "--batch-seconds", help="Audio per encoder batch, in seconds."),
    workers: Optional[int] = typer.Option(None, "--workers", help="CPU threads decoding ahead of the encoder (default: cores - 1, at most 8)."),
    option: List[str] = typer.Option([], "--option", "-O", help="Dataset adapter option KEY=VALUE (repeatable; see `emo datasets --name NAME`)."),
    allow_outside_paths: bool = typer.Option(
        False, "--allow-outside-paths",
        help="manifest: accept media paths outside the manifest's folder (absolute, or climbing out with '..'); refused by default.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Extract frozen-encoder sequences of a dataset into an HDF5 cache (resumable: rerun to continue).

    Several processes or GPUs: `torchrun --standalone --nproc-per-node N -m emo extract ...`
    (one shard per process, cuda:LOCAL_RANK each, merged into OUT by rank 0 at the end).
    """
    from rich.console import Console

    from emo.extract.run.distributed import end_distributed, is_main_process
    from emo.extract.options import default_workers, parse_modalities, parse_shard
    from emo.extract.run.summary import summary_table
    from emo.extract import run_extraction
    from emo.key_value import split_key_value

    try:
        wanted = parse_modalities(modalities)
        shard_spec = parse_shard(shard)
        options = ExtractOptions(
            audio_backbone=audio_backbone,
            audio_layers=audio_layers,
            whisper_input=whisper_input,
            text_backbone=text_backbone,
            text_layers=text_layers,
            visual_backbone=visual_backbone,
            fps=fps,
            frames=frames,
            face_size=face_size,
            device=device,
            batch_seconds=batch_seconds,
            workers=workers if workers is not None else default_workers(),
        )
        dataset_options = dict(split_key_value(item, "--option") for item in option)
        if allow_outside_paths:
            dataset_options["allow_outside_paths"] = True
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    console = Console()
    # torchrun ranks leave together, after rank 0 has printed its report or the error boundary
    # its one line: the root context closes after EmoGroup.invoke, whatever this command raises.
    ctx.find_root().call_on_close(end_distributed)
    summary = run_extraction(
        dataset, root, out, wanted, options, shard=shard_spec, force=force, retry_failed=retry_failed,
        progress=not quiet, console=console, dataset_options=dataset_options,
    )
    if is_main_process():  # under torchrun, rank 0 speaks for every process
        console.print(summary_table(summary))
    if not summary.any_ok:
        raise EmoError(f"{out}: nothing could be extracted (every clip missing or failed; reasons above)")
# </extract-section>


# ---- fit / eval / sweep / runs / heads (emo/fusion) --------------------------------------
# <fusion-section>
def _fusion_list(text: Optional[str]) -> Optional[List[str]]:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def _fusion_print_metrics(metrics: dict, title: str) -> None:
    from rich.console import Console

    from emo.fusion.display import metrics_table

    Console().print(metrics_table(metrics, title=title))


def _fusion_print_normalization(metrics: dict) -> None:
    normalization = metrics.get("normalize")
    if normalization:
        typer.echo(f"--normalize {normalization['mode']}: {normalization['note']}")


def _fusion_print_notes(notes: List[str], last: Optional[str] = None) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    for line in notes:
        console.print(f"[dim]·[/] {escape(line)}")
    if last:
        console.print(escape(last))


@app.command("fit")
def fit_command(
    cache: Path = typer.Argument(..., help="An emo HDF5 cache (from `emo extract`)."),
    head: str = typer.Option(..., "--head", help="Fusion head (list them with `emo heads`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write (config, metrics, plots, weights)."),
    modalities: Modalities = fit_default("modalities"),
    split: Split = fit_default("split"),
    val_fraction: float = typer.Option(fit_default("val_fraction"), "--val-fraction", help="Share of the training part held out for validation / early stopping (0: none)."),
    epochs: Epochs = fit_default("epochs"),
    seed: int = typer.Option(fit_default("seed"), "--seed", help="Seed of splits, sampling, initialisation and batch order."),
    device: Device = fit_default("device"),
    layers: List[str] = typer.Option([], "--layers", help='Cached layers to use: "12,18,24", "last", "all" (negative: from the end, -1 = last), or per modality "audio=12,18" (repeatable).'),
    batch_size: Optional[int] = typer.Option(fit_default("batch_size"), "--batch-size", help="Clips per training step (default: the head's own, else the general one; recorded in config.json)."),
    lr: Optional[float] = typer.Option(fit_default("lr"), "--lr", help="Peak AdamW learning rate, linear warm-up, cosine decay (default: the head's own, else the general one; recorded in config.json)."),
    per_class: Optional[int] = typer.Option(fit_default("per_class"), "--per-class", help="Keep at most N training clips per class."),
    order: str = typer.Option(fit_default("order"), "--order", help="Which clips --per-class keeps: random | short | long (by duration)."),
    dedup_text: bool = typer.Option(fit_default("dedup_text"), "--dedup-text", help="Drop clips whose transcript repeats an earlier clip's (before splitting)."),
    label_column: LabelColumn = fit_default("label_column"),
    classes: Classes = fit_default("classes"),
    max_frames: int = typer.Option(
        fit_default("max_frames"), "--max-frames",
        help="Most frames per clip and input the head sees (longer clips: a random window in training, the centred one "
        "when scoring); bounds memory whatever one long file holds. Recorded with the run.",
    ),
    modality_dropout: float = typer.Option(fit_default("modality_dropout"), "--modality-dropout", help="Per training clip, hide one modality with this probability (clips missing a modality are then kept)."),
    patience: int = typer.Option(fit_default("patience"), "--patience", help="Stop after this many epochs without a better validation weighted F1 (0: never)."),
    class_weights: str = typer.Option(fit_default("class_weights"), "--class-weights", help="none | balanced: weight the loss by inverse training class frequency."),
    time_mask: Optional[float] = typer.Option(fit_default("time_mask"), "--time-mask", help="Training only: per clip, hide one span of up to this fraction of its frames (0: off; default: the head's own, else off)."),
    feature_mask: Optional[float] = typer.Option(fit_default("feature_mask"), "--feature-mask", help="Training only: per clip, set one band of up to this fraction of feature dims to the training mean (0: off; default: the head's own, else off)."),
    mixup: Optional[float] = typer.Option(fit_default("mixup"), "--mixup", help="Training only: mixup of clip pairs with Beta(a, a) weights (0: off; default: the head's own, else off)."),
    normalize: Normalize = fit_default("normalize"),
    name: Optional[str] = typer.Option(fit_default("name"), "--name", help="A name for the run (default: the run directory's)."),
    hparams: HeadParams = [],
    test_cache: TestCache = fit_default("test_cache"),
    label_map: LabelMap = [],
    overlap: Overlap = fit_default("overlap"),
    overwrite: Overwrite = False,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-epoch lines."),
) -> None:
    """Train a fusion head from a cache, score it on the test split(s) (or --test-cache) and write a run directory."""
    from emo.fusion import fit
    from emo.fusion.sweep import parse_assignments

    result = fit(
        cache, head=head, out=out, quiet=quiet, overwrite=overwrite,
        modalities=_fusion_list(modalities), split=split, val_fraction=val_fraction, epochs=epochs, seed=seed,
        device=device, layers=layers or None, batch_size=batch_size, lr=lr, per_class=per_class, order=order,
        dedup_text=dedup_text, label_column=label_column, classes=_fusion_list(classes),
        modality_dropout=modality_dropout, max_frames=max_frames, normalize=normalize, patience=patience, name=name, class_weights=class_weights,
        time_mask=time_mask, feature_mask=feature_mask, mixup=mixup, head_params=parse_assignments(hparams),
        test_cache=test_cache, label_map=label_map or None, overlap=overlap,
    )
    _fusion_print_metrics(result.metrics, f"{head} · {result.record.split.spec} · {out}")
    _fusion_print_normalization(result.metrics)
    if "cross_corpus" in result.metrics:  # what the test cache left out, also with --quiet
        _fusion_print_notes(result.metrics["cross_corpus"]["notes"], f"tested on {result.record.test_cache.path}")


@app.command("eval")
def eval_command(
    run: Path = typer.Argument(..., help="A run directory (from `emo fit`)."),
    cache: Optional[Path] = typer.Argument(None, help="Score on this cache's clips instead of the run's test split."),
    drop: List[str] = typer.Option([], "--drop", help="Score with this modality absent (repeatable)."),
    label_map: List[str] = typer.Option([], "--label-map", help="Another cache's class SRC scored as the run's class DST: SRC=DST,... (SRC=- leaves SRC out); other classes match by name."),
    overlap: Optional[str] = typer.Option(None, "--overlap", help="Clips of another cache the run trained or validated on: refuse (default) | exclude | include, counted either way."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="The other cache's label column (default: the run's)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for metrics.json, predictions.csv, confusion.png (default for another cache: RUN/eval/<cache name>)."),
    device: Device = "auto",
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics to this JSON file."),
) -> None:
    """Rescore a run's saved model(s) on its test split, or on another cache with the same fingerprints."""
    import json

    from emo.fusion import evaluate
    from emo.fusion.cross_corpus import save_scores
    from emo.fusion.run_dir import check_writable

    if json_out is not None:
        check_writable(json_out, "--json file", directory=False)  # before scoring, not after
    if out is not None:
        check_writable(out, "scores folder", directory=True)
    result = evaluate(run, cache, drop=drop, device=device, label_map=label_map or None, overlap=overlap,
                      label_column=label_column)
    where = "test split" if result.same_cache else str(result.cache)
    dropped = f" · without {', '.join(drop)}" if drop else ""
    if out is None and not result.same_cache:
        out = run / "eval" / result.cache.stem
    if out is not None:
        save_scores(out, result.metrics, result.predictions, f"{run.name} on {where}{dropped}")
    _fusion_print_metrics(result.metrics, f"{run} on {where}{dropped}")
    _fusion_print_notes(result.notes, f"saved to {out}" if out is not None else None)
    _fusion_print_normalization(result.metrics)
    if json_out is not None:
        json_out.write_text(json.dumps(result.metrics, indent=2) + "\n", encoding="utf-8")


@app.command("sweep")
def sweep_command(
    cache: Path = typer.Argument(..., help="An emo HDF5 cache, read once for every run."),
    head: str = typer.Option(..., "--head", help="Comma list of heads."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for results.csv and one run directory per fit."),
    grid: List[str] = typer.Option([], "--grid", help="KEY=V1,V2 (fit option or head hyperparameter; repeatable)."),
    seeds: str = typer.Option(str(fit_default("seed")), "--seeds", help="Comma list of seeds (default: fit's one seed)."),
    random: Optional[int] = typer.Option(None, "--random", help="Draw N grid points at random instead of the full grid."),
    modalities: Modalities = fit_default("modalities"),
    split: Split = fit_default("split"),
    epochs: Epochs = fit_default("epochs"),
    device: Device = fit_default("device"),
    label_column: LabelColumn = fit_default("label_column"),
    classes: Classes = fit_default("classes"),
    hparams: HeadParams = [],
    normalize: Normalize = fit_default("normalize"),
    test_cache: TestCache = fit_default("test_cache"),
    label_map: LabelMap = [],
    overlap: Overlap = fit_default("overlap"),
    overwrite: Overwrite = False,
    search: str = typer.Option("grid", "--search", help="grid (every --grid point, or --random N of them) | optuna (TPE + median pruning)."),
    trials: Optional[int] = typer.Option(None, "--trials", help="optuna: trials in the whole study, shared by every worker."),
    storage: Optional[str] = typer.Option(None, "--storage", help="optuna: journal:PATH, a .log/.db file, or an RDB URL (default: a journal file in --out)."),
    study: Optional[str] = typer.Option(None, "--study", help="optuna: study name (default: the --out folder's name)."),
    space: Optional[Path] = typer.Option(None, "--space", help="optuna: JSON/YAML search space (default: the heads' default space)."),
    heartbeat: int = typer.Option(SWEEP_HEARTBEAT_S, "--heartbeat", help="optuna: seconds between a running trial's heartbeats; silent for twice that = lost, re-run."),
) -> None:
    """Fit heads x grid x seeds from one in-memory load of the cache, or share an Optuna search between workers."""
    from rich.console import Console

    from rich.markup import escape

    from emo.fusion import sweep
    from emo.fusion.display import runs_table
    from emo.fusion.sweep import parse_assignments, parse_grid

    console = Console()
    try:
        seed_list = [int(s) for s in _fusion_list(seeds) or [fit_default("seed")]]
    except ValueError:
        raise EmoError(f"--seeds {seeds!r}: expected integers like 0,1,2")
    if search not in ("grid", "optuna"):
        raise EmoError(f"--search {search!r}: expected grid or optuna")
    # The fit options every run of either search takes.
    common = dict(split=split, epochs=epochs, device=device, label_column=label_column, classes=_fusion_list(classes),
                  normalize=normalize, test_cache=test_cache, label_map=label_map or None, overlap=overlap)
    if search == "optuna":
        _sweep_optuna(cache, head, out, grid, seed_list, random, modalities, hparams, trials, storage, study, space,
                      heartbeat, console, common)
        return
    optuna_only = [flag for flag, value in (("--trials", trials), ("--storage", storage), ("--study", study), ("--space", space)) if value is not None]
    if optuna_only:
        raise EmoError(f"{', '.join(optuna_only)}: only with --search optuna")
    result = sweep(
        cache, heads=_fusion_list(head) or [], out=out, grid=parse_grid(grid), seeds=seed_list, random=random,
        modalities=_fusion_list(modalities), head_params=parse_assignments(hparams), overwrite=overwrite,
        on_run=lambda row: console.print(f"[dim]done[/] {escape(row['run'])}  UAR {row['uar']:.4f}", highlight=False),
        **common,
    )
    columns = [c for c in result.columns if not c.endswith("_std")]
    console.print(runs_table(result.rows, columns, title=f"sweep · {cache}"))
    console.print(f"results: {escape(str(result.csv_path))}", highlight=False)


def _sweep_optuna(cache, head, out, grid, seed_list, random, modalities, hparams, trials, storage, study, space,
                  heartbeat, console, common: dict) -> None:
    from rich.markup import escape

    from emo.fusion.display import runs_table
    from emo.fusion.search import search
    from emo.fusion.search_space import grid_space, load_space_file
    from emo.fusion.sweep import parse_assignments, parse_grid

    if trials is None:
        raise EmoError("--search optuna needs --trials N (the whole study's budget)")
    if random is not None:
        raise EmoError("--random is a grid search; with --search optuna give --trials")
    if space is not None and grid:
        raise EmoError("--space and --grid both define the search space; give one")
    if len(seed_list) != 1:
        raise EmoError("--search optuna takes one --seeds value (every trial uses it)")

    def show(row: dict) -> None:
        score = f"val wF1 {row['val_weighted_f1']:.4f}  UAR {row['uar']:.4f}" if "uar" in row else row["state"]
        note = f"  ({row['note']})" if row.get("note") else ""
        console.print(f"[dim]trial {row['trial']}[/] {row['head']}  {escape(score + note)}", highlight=False)

    chosen = load_space_file(space) if space is not None else grid_space(parse_grid(grid)) if grid else None
    result = search(
        cache, heads=_fusion_list(head) or [], out=out, trials=trials, space=chosen, storage=storage, study=study,
        seed=seed_list[0], modalities=_fusion_list(modalities), head_params=parse_assignments(hparams),
        heartbeat=heartbeat, on_trial=show, **common,
    )
    columns = [c for c in result.columns if not c.endswith("_std") and c not in ("worker", "note")]
    shown = [{**r, "val_weighted_f1": f"{r['val_weighted_f1']:.3f}"} if "val_weighted_f1" in r else r for r in result.rows]
    console.print(runs_table(shown, columns, title=f"optuna search · {cache}"))
    console.print(f"results: {escape(str(result.csv_path))}", highlight=False)


@app.command("runs")
def runs_command(
    paths: List[Path] = typer.Argument(..., help="Run directories, or folders holding runs."),
) -> None:
    """Compare run directories: head, modalities, split, seed, accuracy, wF1, mF1, UAR."""
    from rich.console import Console

    from emo.fusion import summarize_runs
    from emo.fusion.display import runs_table
    from emo.fusion.runs import COLUMNS

    damaged: list[str] = []
    rows = summarize_runs(paths, damaged)
    if not rows:
        if damaged:  # nothing to compare: the first reason is the error, the count says there are more
            raise EmoError(damaged[0] + (f" (and {len(damaged) - 1} more damaged runs)" if len(damaged) > 1 else ""))
        raise EmoError(f"no run directories (with config.json) under {', '.join(map(str, paths))}")
    console = Console()
    console.print(runs_table(rows, COLUMNS))
    for message in damaged:  # after the table, one line each: what was left out and why
        console.print(f"skipped: {message}", highlight=False, markup=False)


@app.command("heads")
def heads_command() -> None:
    """List the fusion heads and the modalities each one takes."""
    from rich.console import Console
    from rich.table import Table

    from emo.fusion.heads import list_heads

    table = Table("head", "takes", "description")
    for name, description, requirement in list_heads():
        table.add_row(name, requirement, description)
    Console().print(table)
# </fusion-section>


# ---- predict / demo (emo/predictor/, emo/demo/) -----------------------------------
# <predict-section>
@app.command("predict")
def predict_command(
    run: Path = typer.Argument(..., help="A run directory (from `emo fit --out`)."),
    files: List[Path] = typer.Argument(
        ...,
        help="Clips to score. Each FILE is one clip: a video gives the faces and its own audio track, an audio "
        "file gives the audio. A video and an audio file with the same name stem (x.mp4 x.wav) are one clip.",
    ),
    text: List[str] = typer.Option(
        [], "--text", help="Transcript, for runs that use text: one for a single clip, or repeat once per clip in order."
    ),
    pair: bool = typer.Option(False, "--pair", help="Take the FILEs two by two, a video and an audio file per clip."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON list (file, probabilities, top, missing_modalities)."),
    top: int = typer.Option(3, "--top", min=1, help="Classes shown per clip in the table."),
    device: Device = "auto",
    speaker: Optional[str] = typer.Option(None, "--speaker", help="All FILEs are clips of this one speaker: needed (with >= 2 clips) by runs fitted with --normalize speaker, whose statistics come from these clips."),
    allow_download: bool = typer.Option(
        False, "--allow-download",
        help="Let the run's Hugging Face backbones be downloaded when they are not in the local hub cache (default: never).",
    ),
) -> None:
    """Score clips with a fitted run: the run's extractors (checked against its fingerprints), then its head."""
    from rich.console import Console
    from rich.markup import escape

    from emo.predictor import Predictor
    from emo.predictor.display import predictions_json, predictions_table
    from emo.fusion import load_run
    from emo.predictor.inputs import attach_texts, group_files
    from emo.predictor.scoring import check_speaker

    err = Console(stderr=True, soft_wrap=True)
    clips = attach_texts(group_files(files, pair=pair), text or None)  # bad arguments fail before any model loads
    check_speaker(run, load_run(run).record.normalize, speaker, len(clips))
    predictor = Predictor(run, device=device, allow_download=allow_download)
    predictions = predictor.predict(files, text or None, pair=pair, keep_going=True, speaker=speaker)
    if json_out:
        typer.echo(predictions_json(predictions))
    else:
        if predictor.n_folds > 1:
            err.print(f"[dim]k-fold run: probabilities are the mean of its {predictor.n_folds} fold models[/]")
        if speaker is not None:
            err.print(f"[dim]--normalize speaker: features standardised with the statistics of these clips of {speaker}[/]",
                      highlight=False)
        if any(p.error is None for p in predictions):
            Console().print(predictions_table(predictions, top, title=f"{run} · {predictor.head_name}"))
    failures = [p.error for p in predictions if p.error is not None]
    for message in failures:
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    if failures:
        raise typer.Exit(1)
# </predict-section>


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("emo-demo"), "--out", "-o", help="Folder for the generated data, cache and runs."),
    clips: int = typer.Option(DEMO_CLIPS, help="Clips per speaker and emotion (6 speakers x 4 emotions)."),
    epochs: int = typer.Option(DEMO_EPOCHS, help="Training epochs per head."),
    seed: int = typer.Option(DEMO_SEED, help="Seed for the generated data and the training."),
) -> None:
    """Run the whole pipeline offline on a small dataset emo generates itself (no download)."""
    from rich.console import Console

    from emo.demo.run import print_results, run_demo

    console = Console()
    rows = run_demo(out, clips_per_speaker_emotion=clips, epochs=epochs, seed=seed, console=console)
    print_results(rows, out, console)
