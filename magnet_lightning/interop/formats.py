"""`magnet-export --format FORMAT`: one export entry point for every format.

- ``magnet_lightning`` (default): this project's slim folder (checkpoint/export.py), or with ``--adapter-only`` its
  adapter folder;
- ``audiocraft``: audiocraft's release folder (audiocraft_release.py) of the merged model, any family audiocraft has;
- ``transformers``: a `MusicgenForConditionalGeneration` folder (transformers_musicgen.py), or with
  ``--adapter-only`` a peft adapter for it (peft_adapter.py); the autoregressive family only.

Each writes its folder atomically with a model card (format, family, base, license, what was fine-tuned) and never
over an existing folder unless `force`.
"""

from __future__ import annotations

from pathlib import Path

from magnet_lightning.checkpoint import hub
from magnet_lightning.checkpoint.export import CARD_NAME, DTYPES, choose_license, random_notes, resolve_checkpoint
from magnet_lightning.checkpoint.export import export as export_slim
from magnet_lightning.checkpoint.model_card import CardInfo, model_card, read_origin
from magnet_lightning.checkpoint.pretrained import load_pretrained
from magnet_lightning.errors import UserError
from magnet_lightning.interop.audiocraft_release import release_files, write_release
from magnet_lightning.interop.exported import Exported
from magnet_lightning.interop.transformers_export import export_transformers
from magnet_lightning.lora.files import read_adapter
from magnet_lightning.models.registry import model_family
from magnet_lightning.utils.staged_folder import check_target, staged_folder

FORMATS = ("magnet_lightning", "audiocraft", "transformers")
DEFAULT_DTYPES = {"magnet_lightning": "float32", "audiocraft": "float16", "transformers": "float32"}
"""Each format's weight dtype unless --dtype says otherwise (audiocraft's releases are float16)."""


def export_as(fmt: str, ckpt: str | Path, out: str | Path, *, license: str | None = None, dtype: str | None = None,
              adapter: str | Path | None = None, adapter_only: bool = False, force: bool = False) -> Exported:
    """Write `out` in format `fmt` from `ckpt` (merged with `adapter`, or the adapter alone with `adapter_only`)."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    dtype = dtype or DEFAULT_DTYPES[fmt]
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype}: choose one of {sorted(DTYPES)}")
    if adapter_only and adapter is None:
        raise UserError("--adapter-only needs --adapter ADAPTER (and CKPT its base, to check it against)")
    out = hub.expand(out)
    if fmt == "magnet_lightning":
        folder = export_slim(ckpt, out, license, dtype, adapter, adapter_only, force)
        return Exported(folder, sorted(p.name for p in folder.iterdir()), [])
    if fmt == "audiocraft":
        if adapter_only:
            raise UserError("audiocraft has no adapter format: leave out --adapter-only to export the merged model")
        return _export_audiocraft(resolve_checkpoint(ckpt), out, license, dtype, adapter, force)
    return export_transformers(resolve_checkpoint(ckpt), out, license=license, dtype=dtype, adapter=adapter,
                               adapter_only=adapter_only, force=force)


def _export_audiocraft(ckpt: Path, out: Path, license: str | None, dtype: str, adapter: str | Path | None,
                       force: bool) -> Exported:
    check_target(out, force)
    origin = read_origin(ckpt, read_adapter(hub.expand(adapter)) if adapter else None)
    chosen = choose_license(ckpt, license, origin)
    pretrained = load_pretrained(ckpt, device="cpu", adapter=adapter)
    files = release_files(pretrained, origin.training, DTYPES[dtype])
    notes = random_notes(pretrained.random_parts)
    if files.codec_file is None and files.codec_pretrained is None:
        notes.append(f"audiocraft has no form of this model's codec `{pretrained.codec}`, so the folder holds no "
                     "compression_state_dict.bin: audiocraft's `get_pretrained` needs one beside state_dict.bin "
                     "(the LM alone loads with `audiocraft.models.loaders.load_lm_model`).")
    cfg = pretrained.model.cfg
    card = CardInfo(
        format="audiocraft release format", library="audiocraft", family=model_family(pretrained.model.family).label,
        license=chosen, origin=origin,
        summary=(f"{cfg.num_parameters() / 1e6:.1f} M parameters ({cfg.num_layers} layers x {cfg.dim}), "
                 f"{cfg.num_codebooks} codebooks of {cfg.codebook_size}, text encoder `{pretrained.text_encoder}`, "
                 f"{pretrained.sample_rate} Hz; weights {dtype} in `state_dict.bin` (`best_state`, `xp.cfg`)."),
        usage=[f"from audiocraft.models import {files.client}", "",
               f'model = {files.client}.get_pretrained("PATH_OR_REPO_ID")'],
        notes=notes)
    with staged_folder(out, force) as tmp:
        names = write_release(files, tmp)
        (tmp / CARD_NAME).write_text(model_card(card))
    return Exported(out, sorted([*names, CARD_NAME]), notes)
