"""Two-model generation (paper §3.4's hybrid inference with two models, not in audiocraft; distinct from the
Hybrid-MAGNeT family, one model that does both): an autoregressive model generates the first
`prompt_seconds` token by token, and MAGNeT generates the rest with those frames fixed (its continuation path: the
prompt's chunks are never re-masked). Latency sits between the two models': the AR part costs one model step per
prompt frame, the MAGNeT part the usual sum of decoding steps.

Shapes: B batch, K codebooks, T frames.
"""

from __future__ import annotations

from collections.abc import Sequence

from magnet_lightning.generation.families import families_where
from magnet_lightning.generation.hybrid_magnet import DEFAULT_PROMPT_SECONDS
from magnet_lightning.generation.plan import GenerationPlan


def check_pair(magnet, ar) -> None:
    """Raise unless `ar` is an autoregressive generator whose tokens `magnet` reads (same codec layout)."""
    if not magnet.decoder.rescored or not ar.decoder.partner:
        raise ValueError(f"two-model generation needs a {' or '.join(families_where(rescored=True))} generator and an "
                         f"{' or '.join(families_where(partner=True))} one")
    mine, theirs = magnet.model.cfg, ar.model.cfg
    if (mine.num_codebooks, mine.codebook_size) != (theirs.num_codebooks, theirs.codebook_size) or \
            magnet.frame_rate != ar.frame_rate:
        raise ValueError(f"the autoregressive model (K={theirs.num_codebooks}, V={theirs.codebook_size}, "
                         f"{ar.frame_rate:g} Hz) and MAGNeT (K={mine.num_codebooks}, V={mine.codebook_size}, "
                         f"{magnet.frame_rate:g} Hz) must share one codec")


def two_model_generate(magnet, ar, texts: Sequence[str | None], *, duration: float | None = None,
                       prompt_seconds: float = DEFAULT_PROMPT_SECONDS, decoding=None, ar_decoding=None,
                       seed: int | None = None, decode_audio: bool = True, progress=None, rescorer=None,
                       extend_stride: float | None = None, plan: GenerationPlan | None = None):
    """Generate `duration` seconds: the first `prompt_seconds` by `ar`, the rest by `magnet` (both MagnetGenerator).

    decoding / ar_decoding: the two models' configs (None: each checkpoint's defaults); seed seeds both.
    A duration past MAGNeT's segment is long-form (extend_stride: MAGNeT's windows continue the AR prompt).
    plan: MAGNeT's plan with `ar` as its two-model partner, built beforehand (it covers duration, prompt_seconds,
    decoding and extend_stride).
    Returns MAGNeT's GenerationResult (tokens [B, K, T] of the whole clip, audio).
    """
    check_pair(magnet, ar)
    if plan is None:
        plan = magnet.plan(duration, extend_stride=extend_stride, decoding=decoding, rescorer=rescorer, two_model=ar,
                           prompt_seconds=prompt_seconds)
    partner = plan.two_model if ar_decoding is None else ar.plan(plan.two_model.duration, decoding=ar_decoding)
    texts = list(texts)
    steps = [0]

    def prompt_progress(done, total):
        steps[0] = done
        if progress is not None:
            progress(done, total)

    prompt = ar.generate(texts, plan=partner, seed=seed, decode_audio=False, progress=prompt_progress).tokens
    rest = None if progress is None else (lambda done, total: progress(steps[0] + done, total))
    return magnet.generate(texts, plan=plan, prompt=prompt, seed=seed, decode_audio=decode_audio, progress=rest,
                           rescorer=rescorer)


hybrid_generate = two_model_generate
"""The name of the README's first examples (the paper calls two-model generation "hybrid")."""
