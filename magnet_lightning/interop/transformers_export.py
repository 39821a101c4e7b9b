"""`magnet-export CKPT OUT --format transformers [--adapter-only]`: the autoregressive family as a
`MusicgenForConditionalGeneration` folder (or, with --adapter-only, a peft adapter for one); see
transformers_musicgen.py for the format and what differs between the libraries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from magnet_lightning.checkpoint import hub
from magnet_lightning.checkpoint.audiocraft_families import AUDIOCRAFT_IMPORTS
from magnet_lightning.checkpoint.export import CARD_NAME, DTYPES, choose_license, random_notes
from magnet_lightning.checkpoint.model_card import CardInfo, Origin, model_card, read_origin
from magnet_lightning.checkpoint.pretrained import Pretrained, load_pretrained
from magnet_lightning.codec.codecs import HFEncodecCodec, load_codec
from magnet_lightning.errors import UserError
from magnet_lightning.interop.exported import Exported
from magnet_lightning.interop.peft_adapter import write_peft_adapter
from magnet_lightning.interop.transformers_names import to_transformers
from magnet_lightning.lora.files import attach_adapter, read_adapter
from magnet_lightning.models.base import CodebookTransformer
from magnet_lightning.models.conditioning import TextEncoder
from magnet_lightning.models.registry import model_family
from magnet_lightning.utils.staged_folder import check_target, staged_folder


def check_family(model: CodebookTransformer, ckpt: Path) -> None:
    """One line for a model transformers' MusicGen cannot hold (its family, or a delay pattern other than 0..K-1)."""
    spec = AUDIOCRAFT_IMPORTS[model.family]
    if spec is None or not spec.transformers_musicgen:
        raise UserError(f"--format transformers: transformers' MusicGen holds autoregressive models only, and {ckpt} "
                        f"is a {model_family(model.family).label} model: export it with --format audiocraft or "
                        "--format magnet_lightning")
    if list(model.pattern.delays) != list(range(model.cfg.num_codebooks)):
        raise UserError(f"--format transformers: transformers' MusicGen delays codebook k by k steps; this model's "
                        f"delays are {list(model.pattern.delays)}")


def build_musicgen(pretrained: Pretrained):
    """(MusicgenForConditionalGeneration holding our decoder, the T5 and the EnCodec; the T5 tokenizer)."""
    from transformers import MusicgenDecoderConfig, MusicgenForCausalLM, MusicgenForConditionalGeneration

    model, cfg = pretrained.model, pretrained.model.cfg
    codec = load_codec(pretrained.codec)
    if not isinstance(codec, HFEncodecCodec):
        raise UserError(f"--format transformers: MusicGen holds a transformers EncodecModel, and this checkpoint's "
                        f"codec {pretrained.codec!r} is not one")
    t5 = TextEncoder.from_pretrained(pretrained.text_encoder)
    state = to_transformers(model.state_dict())
    if cfg.text_dim == cfg.dim and not _is_identity(model):
        raise UserError(f"--format transformers: with T5 and decoder both {cfg.dim} wide, transformers' MusicGen has "
                        "no text projection, and this model's is not the identity")
    if cfg.text_dim == cfg.dim:
        state = {k: v for k, v in state.items() if not k.startswith("enc_to_dec_proj.")}
    frames = int(round(pretrained.segment_duration * pretrained.frame_rate))
    decoder = MusicgenForCausalLM(MusicgenDecoderConfig(
        vocab_size=cfg.codebook_size, max_position_embeddings=max(2048, frames + cfg.num_codebooks + 1),
        num_hidden_layers=cfg.num_layers, ffn_dim=cfg.ffn_dim, num_attention_heads=cfg.num_heads,
        hidden_size=cfg.dim, num_codebooks=cfg.num_codebooks, audio_channels=1, activation_function="gelu",
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, layerdrop=0.0, scale_embedding=False,
        pad_token_id=cfg.codebook_size, bos_token_id=cfg.codebook_size, tie_word_embeddings=False))
    musicgen = MusicgenForConditionalGeneration(text_encoder=t5.model, audio_encoder=codec.model, decoder=decoder)
    missing, unexpected = musicgen.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(("text_encoder.", "audio_encoder."))]
    if missing or unexpected:
        raise RuntimeError(f"MusicGen layout mismatch: missing {missing[:4]}, unexpected {unexpected[:4]}")
    _generation_config(musicgen.generation_config, pretrained, frames)
    return musicgen.eval(), t5.tokenizer


def _is_identity(model: CodebookTransformer) -> bool:
    proj = model.text_proj
    return torch.equal(proj.weight, torch.eye(proj.weight.shape[0])) and not proj.bias.any()


def _generation_config(gen, pretrained: Pretrained, frames: int) -> None:
    """Our decoding defaults as transformers' generation config (audiocraft's MusicGen defaults where unset)."""
    decoding, special = pretrained.decoding, pretrained.model.cfg.codebook_size
    sampling = bool(decoding.get("use_sampling", True))
    gen.update(decoder_start_token_id=special, pad_token_id=special, bos_token_id=special,
               max_length=frames + pretrained.model.cfg.num_codebooks,
               guidance_scale=float(decoding.get("cfg_coef", 3.0)), do_sample=sampling)
    if sampling:  # transformers refuses sampling settings on a greedy config
        gen.update(top_k=int(decoding.get("top_k", 250)), temperature=float(decoding.get("temperature", 1.0)))


def _card(pretrained: Pretrained, license: str, origin: Origin, notes: list[str], adapter_only: bool) -> str:
    cfg = pretrained.model.cfg
    load = ["from transformers import MusicgenForConditionalGeneration", ""]
    if adapter_only:
        load += ["from peft import PeftModel", "",
                 'base = MusicgenForConditionalGeneration.from_pretrained("BASE_IN_TRANSFORMERS_FORMAT")',
                 'model = PeftModel.from_pretrained(base, "PATH_OR_REPO_ID")']
    else:
        load += ['model = MusicgenForConditionalGeneration.from_pretrained("PATH_OR_REPO_ID")']
    return model_card(CardInfo(
        format="peft LoRA adapter for transformers MusicGen" if adapter_only else "transformers MusicGen",
        library="peft" if adapter_only else "transformers", family=model_family(pretrained.model.family).label,
        license=license, origin=origin, usage=load, notes=notes, tags=("text-to-audio", "musicgen"),
        summary=(f"{cfg.num_parameters() / 1e6:.1f} M decoder parameters ({cfg.num_layers} layers x {cfg.dim}), "
                 f"{cfg.num_codebooks} codebooks of {cfg.codebook_size}, text encoder `{pretrained.text_encoder}`, "
                 f"codec `{pretrained.codec}` ({pretrained.sample_rate} Hz).")))


def export_transformers(ckpt: Path, out: Path, *, license: str | None, dtype: str, adapter: str | Path | None,
                        adapter_only: bool, force: bool) -> Exported:
    check_target(out, force)
    read = read_adapter(hub.expand(adapter)) if adapter else None
    origin = read_origin(ckpt, read)
    chosen = choose_license(ckpt, license, origin)
    if adapter_only:
        base = load_pretrained(ckpt, device="cpu")
        check_family(base.model, ckpt)
        attach_adapter(base.model, read, str(ckpt))  # the adapter's base, by its weights' fingerprint
        with staged_folder(out, force, "an adapter") as tmp:
            names = write_peft_adapter(read, tmp)
            (tmp / CARD_NAME).write_text(_card(base, chosen, origin, [], adapter_only=True))
        return Exported(out, sorted([*names, CARD_NAME]))
    pretrained = load_pretrained(ckpt, device="cpu", adapter=adapter)
    check_family(pretrained.model, ckpt)
    musicgen, tokenizer = build_musicgen(pretrained)
    notes = random_notes(pretrained.random_parts)
    with staged_folder(out, force) as tmp:
        musicgen.to(DTYPES[dtype]).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _feature_extractor(pretrained).save_pretrained(tmp)
        (tmp / CARD_NAME).write_text(_card(pretrained, chosen, origin, notes, adapter_only=False))
        names = sorted(p.name for p in tmp.iterdir())
    return Exported(out, names, notes)


def _feature_extractor(pretrained: Pretrained) -> Any:
    from transformers import EncodecFeatureExtractor

    return EncodecFeatureExtractor(feature_size=1, sampling_rate=pretrained.sample_rate, padding_value=0.0)
