"""The end-of-run summary the training CLI prints on rank 0: the val/loss trend over every validation of the run
(resumes included), the final metrics, where the outputs are, the generated WAVs, which parts had random weights,
and the command that generates from the run's checkpoint."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from magnet_lightning.callbacks.monitors import ValLossHistory
from magnet_lightning.checkpoint.hub import is_sharded
from magnet_lightning.cli.generate import _slug
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.utils.audio import write_wav
from magnet_lightning.utils.provenance import absolute_if_local, describe_random


def end_of_run_summary(cli: Any) -> str:
    """The summary of `cli` (a MagnetCLI after fit) as printable text."""
    trainer, config = cli.trainer, cli._sub_config()
    lines = ["", "=" * 88]
    history = next((c.history for c in trainer.callbacks if isinstance(c, ValLossHistory)), [])
    if history:
        (s0, v0), (s1, v1) = history[0], history[-1]
        lines.append(f"val/loss: first {v0:.4f} (step {s0}) -> last {v1:.4f} (step {s1}) over {len(history)} "
                     f"validations" + ("  [falling]" if v1 < v0 else "  [NOT falling]"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("eval/")}
    if metrics:
        lines.append("final eval metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))
    lines.append(f"outputs (run folder {cli.run_dir}):")
    ckpt_cb = trainer.checkpoint_callback
    last = ckpt_cb.last_model_path if ckpt_cb is not None else ""
    if ckpt_cb is not None:
        lines.append(f"  checkpoints: {ckpt_cb.dirpath} (last: {Path(last or '-').name}, "
                     f"best: {Path(ckpt_cb.best_model_path or '-').name})")
    for logger in trainer.loggers:
        lines.append(f"  {type(logger).__name__}: {_logger_dir(logger)}")
    random_parts = cli.model.random_parts() if hasattr(cli.model, "random_parts") else []
    if config.generate_after_fit and last:
        lora = getattr(cli.model, "lora_base", None) is not None  # a LoRA checkpoint: its base + its adapters
        wavs = generate_samples(cli.model.hparams.init_from if lora else last,
                                cli._captions(config.generate_after_fit), cli.run_dir / "samples",
                                text_encoder=cli.model.text_encoder, adapter=last if lora else None)
        lines.append(f"  generated WAVs: {wavs[0].parent} ({len(wavs)} files)")
    if random_parts:
        lines.append(f"  {describe_random(random_parts)} (recorded in the checkpoint)")
    if last:
        lines.append("generate from this checkpoint:")
        lines += ["  " + command for command in generate_commands(
            last, cli._captions(1)[0], cli.run_dir, "text_encoder" in random_parts,
            cli.model.hparams.init_from if getattr(cli.model, "lora_base", None) is not None else None)]
    lines.append("=" * 88)
    return "\n".join(lines)


def generate_commands(ckpt: str, caption: str, run_dir: Path, random_text_encoder: bool,
                      lora_base: str | None = None) -> list[str]:
    """The commands that generate from the run's checkpoint `ckpt`, each runnable as printed: a sharded checkpoint
    folder is converted into one file first; a LoRA checkpoint (adapters only) is given as ``--adapter`` to its base
    `lora_base`; a random-T5 checkpoint gets the flag it needs."""
    commands, ckpt = [], str(Path(ckpt).resolve())
    if is_sharded(ckpt):
        single = str(Path(run_dir).resolve() / "model.ckpt")
        commands.append(shlex.join(["python", "-m", "magnet_lightning.convert", "sharded", ckpt, single]))
        ckpt = single
    words = ["python", "-m", "magnet_lightning.generate", "--ckpt", ckpt]
    if lora_base:
        words = [*words[:-1], absolute_if_local(str(lora_base)), "--adapter", ckpt]
    words += ["--text", caption, "--out", str(Path(run_dir).resolve() / "more_samples")]
    if random_text_encoder:
        words.append("--allow-random-text-encoder")
    return [*commands, shlex.join(words)]


def _logger_dir(logger) -> str:
    experiment = getattr(logger, "experiment", None)
    run_dir = getattr(experiment, "dir", None) if type(logger).__name__ == "WandbLogger" else None
    if run_dir:
        mode = os.environ.get("WANDB_MODE", "online")
        return f"{Path(run_dir).parent} (mode {mode}; upload with `wandb sync {Path(run_dir).parent}`)"
    return str(getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None))


def generate_samples(ckpt: str, captions: list[str], out_dir: Path, seed: int = 0,
                     text_encoder: Any = None, adapter: str | None = None) -> list[Path]:
    """Generate one clip per caption from `ckpt` (with a LoRA `adapter` trained on it) and write -14 LUFS WAVs to
    `out_dir`; returns the paths. `text_encoder`: a loaded one to reuse (default: the checkpoint's, loaded again)."""
    generator = MagnetGenerator.from_pretrained(ckpt, device="cpu", text_encoder=text_encoder,
                                                allow_random_text_encoder=True, adapter=adapter)
    result = generator.generate(captions, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (caption, wav) in enumerate(zip(captions, result.audio)):
        path = out_dir / f"{i:02d}_{_slug(caption)}.wav"
        write_wav(path, wav.cpu(), generator.sample_rate)
        paths.append(path)
    return paths
