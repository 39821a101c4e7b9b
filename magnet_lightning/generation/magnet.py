"""MAGNeT iterative decoding (magnet_spec.md §7): the one module of the algorithm.

Codebook stages are decoded in order k = 0..K-1, stage k in `decoding_steps[k]` steps. At step j of s
(tau_j = j / (s - 1)) a cosine-scheduled number of the least confident units (span chunks, or tokens in 'stride1'
mode) is re-masked, the model predicts stage k (conditional and null-text rows batched together, combined on the
logits with a guidance coefficient annealed from `max_cfg_coef` to `min_cfg_coef` as the mask rate falls), tokens are
sampled at an annealed temperature and written into the masked positions only.

By default every step is audiocraft's (`MagnetLMModel._generate_stage`), token for token in greedy mode: the mask
rate and mask counts are computed in float32 as the reference does, the temperature is T0 * (s - 1 - j) / s, greedy
tokens are the argmax of the guided logits, the confidence of a top-k sample is its renormalised truncated
probability, top-p takes precedence over top-k, a chunk's score covers all of its frames, and 'stride1' runs the
reference's binary search for the number of spans (so it may re-mask tokens decoded at an earlier step, as the
reference does). The departures this project offers are options, off by default:
- `anneal_from_initial`: the temperature starts at exactly `temperature` and reaches 0 at the last step;
- `confidence_before_top_k`: rank top-k samples by their untruncated probability;
- `stride1_cover="minimal"`: the fewest top spans that cover the count, never re-masking decoded tokens;
- `mask_upper_stages_in_prompt`: at stage k the stages above k are MASK on prompt frames too, as in training (the
  reference shows the prompt's tokens of every stage).
Always on, because they extend rather than change the reference:
- the output has the full requested length: in 'nonoverlap' mode the last chunk may be shorter than the span (the
  reference trims T to a multiple of the span; when T is a multiple, the tokens are the reference's);
- unconditional generation (no text) works, without CFG; prompts and infilling use any set of fixed frames;
- `decoding_steps` must have one entry per codebook (the reference silently leaves extra stages masked).
In sampling mode each token is drawn from the reference's distribution, but from a different random stream
(an exponential race on a caller's torch.Generator instead of torch.multinomial), so sampled tokens differ from the
reference's for the same seed.

Every step is a pure tensor function with static shapes (no host synchronisation): the fast path
(`fast.FastDecoder`) runs the same `decode_step` on static buffers inside CUDA graphs.

Shapes: B batch, K codebooks, T frames, N span chunks, U scoring units (N or T), S text tokens, E text width,
V codebook size.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import NamedTuple

import torch

from magnet_lightning.generation.common import (
    ProgressFn,
    StageFn,
    autocast_context,
    condition_memory,
    text_inputs,
)
from magnet_lightning.generation.long_form import decode_windows
from magnet_lightning.generation.magnet_config import DecodingConfig
from magnet_lightning.generation.request import DecodeRequest
from magnet_lightning.generation.sampling import draw_noise, sample_tokens
from magnet_lightning.generation.spans import (
    free_units,
    initial_scores,
    remask,
    stage_schedule,
    unit_scores,
)

# ----------------------------------------------------------------------------------------------------------------
# One step and one generation


def initial_codes(given: torch.Tensor, fixed: torch.Tensor, mask_id: int, config: DecodingConfig) -> torch.Tensor:
    """codes [B, K, T] before stage 0: the given tokens of every stage where fixed [B, K, T], MASK elsewhere (as the
    reference writes its prompt); all MASK with `mask_upper_stages_in_prompt` (each stage is revealed by init_stage)."""
    if config.mask_upper_stages_in_prompt:
        return torch.full_like(given, mask_id)
    return torch.where(fixed, given, mask_id)


def init_stage(codes: torch.Tensor, given: torch.Tensor, fixed: torch.Tensor, stage: int, mask_id: int) -> torch.Tensor:
    """codes [B, K, T] with stage `stage` set to the given tokens on its fixed frames (fixed [B, K, T]) and MASK
    elsewhere."""
    out = codes.clone()
    out[:, stage] = torch.where(fixed[:, stage], given[:, stage], mask_id)
    return out


class StepInputs(NamedTuple):
    """Per-generation constants of a stage, shared by the plain loop and the static buffers of the fast path."""

    fixed: torch.Tensor
    """bool [B, T]: given frames of the stage."""
    mask_counts: torch.Tensor
    """long [s, B]."""
    cfg_coef: torch.Tensor
    """float32 [s]."""
    temperature: torch.Tensor
    """float32 [s]."""


def decode_step(
    model,
    memory,
    codes: torch.Tensor,
    scores: torch.Tensor,
    step: torch.Tensor,
    inputs: StepInputs,
    noise: torch.Tensor | None,
    stage: int,
    config: DecodingConfig,
    use_cfg: bool,
    rescorer=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoding step of `stage`: re-mask, predict (with CFG), sample, write, re-score (with the rescorer's
    probabilities of the candidate when one is given and rescore_weight < 1).

    Args:
        model: MagnetTransformer; memory: its TextMemory for [cond; null] (2B rows) or B rows without CFG.
        codes: long [B, K, T], stages > `stage` MASK except on given frames; scores: float32 [B, U].
        step: long [1], the step index j (a tensor, so the fast path can keep it on the device).
        noise: Exp(1) noise [B, T, V] for sampling, None for greedy decoding.
    Returns:
        (codes, scores) after the step.
    """
    counts = inputs.mask_counts.index_select(0, step)[0]  # [B]
    row = codes[:, stage]
    # Predicted at this step: the re-masked frames and any still MASK (a 'stride1' union need not cover them all).
    masked = remask(scores, counts, inputs.fixed, config) | (row == model.mask_token_id)  # [B, T]
    row = row.masked_fill(masked, model.mask_token_id)
    codes = codes.clone()
    codes[:, stage] = row
    logits = model.forward_with_memory(torch.cat([codes, codes]) if use_cfg else codes, memory, stage, heads="stage")
    logits = logits.float()  # [B or 2B, T, V]
    if use_cfg:
        cond, null = logits.chunk(2)
        logits = null + inputs.cfg_coef.index_select(0, step) * (cond - null)
    sampled = sample_tokens(logits, inputs.temperature.index_select(0, step), noise, config.top_k, config.top_p,
                            config.confidence_before_top_k)
    codes[:, stage] = torch.where(masked, sampled.tokens, row)
    confidence = sampled.confidence
    if rescorer is not None and config.rescore_weight < 1.0:  # w = 1 ranks as if there were no rescorer
        w = config.rescore_weight
        confidence = w * confidence + (1.0 - w) * rescorer(codes, stage)
    return codes, unit_scores(confidence, masked, config)


def check_rescorer(rescorer, model, config: DecodingConfig) -> None:
    """The decoder's invariant: a rescore_weight below 1 needs a rescorer that reads the model's tokens (a rescorer
    given with weight 1 ranks as if there were none)."""
    if config.rescore_weight < 1.0 and rescorer is None:
        raise ValueError(f"rescore_weight={config.rescore_weight} needs a rescorer (an autoregressive model, "
                         "rescoring.ARRescorer); 1.0 means no rescoring")
    if rescorer is not None:
        rescorer.check_compatible(model)


def resolve_constraints(
    batch: int, num_codebooks: int, num_frames: int, mask_id: int, device: torch.device,
    given: torch.Tensor | None, fixed: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check or create the given tokens [B, K, T] and the fixed mask, returned per stage as [B, K, T] (none fixed by
    default). `fixed` may be [B, T] (the same frames for every stage) or [B, K, T] (e.g. a delayed prompt)."""
    if (given is None) != (fixed is None):
        raise ValueError("pass both `given` codes and the `fixed` frame mask, or neither")
    if given is None:
        return (torch.full((batch, num_codebooks, num_frames), mask_id, dtype=torch.long, device=device),
                torch.zeros(batch, num_codebooks, num_frames, dtype=torch.bool, device=device))
    shape = (batch, num_codebooks, num_frames)
    if tuple(given.shape) != shape or tuple(fixed.shape) not in (shape, (batch, num_frames)):
        raise ValueError(f"given must be [{batch}, {num_codebooks}, {num_frames}] and fixed [{batch}, {num_frames}] "
                         f"or [{batch}, {num_codebooks}, {num_frames}], got {tuple(given.shape)} and "
                         f"{tuple(fixed.shape)}")
    given, fixed = given.to(device).long(), fixed.to(device).bool()
    if fixed.dim() == 2:
        fixed = fixed[:, None, :].expand(shape)
    bad = fixed & ((given < 0) | (given >= mask_id))
    if bool(bad.any()):
        raise ValueError(f"given tokens on fixed frames must be in [0, {mask_id}) (found MASK or out-of-range ids)")
    return given, fixed


@torch.no_grad()  # not inference_mode: callers may edit the returned tokens in place
def decode(
    model,
    text_states: torch.Tensor | None,
    text_mask: torch.Tensor | None,
    num_frames: int,
    config: DecodingConfig = DecodingConfig(),
    *,
    batch_size: int | None = None,
    given: torch.Tensor | None = None,
    fixed: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: ProgressFn | None = None,
    on_stage_end: StageFn | None = None,
    autocast: bool | None = None,
    rescorer=None,
    window_frames: int | None = None,
    stride_frames: int | None = None,
    melody=None,
) -> torch.Tensor:
    """Generate codes with MAGNeT's iterative decoding (the plain path: a Python loop of `decode_step`).

    Args (model: a MagnetTransformer):
        text_states: [B, S, E] text-encoder states (null rows: zeros with mask False), or None (unconditional).
        text_mask: bool [B, S]. num_frames: T, the full output length. batch_size: B for unconditional generation.
        given, fixed: tokens [B, K, T] kept where fixed ([B, T], or [B, K, T] per stage) is True (prompt,
            infilling context); see `continuation` and `infilling`.
        generator: a torch.Generator on the model's device, for reproducible sampling.
        progress: called after every step; on_stage_end: called with the codes after every stage.
        rescorer: e.g. rescoring.ARRescorer for the same batch; used when config.rescore_weight < 1 (per window).
        window_frames, stride_frames: long-form generation in windows of W frames, stride S (`decode_windows`).
        melody: the melody condition (models.melody.ChromaCondition) of a melody-conditioned model, or None.
    Returns: long [B, K, T] token ids in [0, V).
    """
    if window_frames is not None or stride_frames is not None:
        window = partial(decode, model, text_states, text_mask, config=config, batch_size=batch_size,
                         generator=generator, on_stage_end=on_stage_end, autocast=autocast, rescorer=rescorer)
        return decode_windows(window, num_frames, window_frames, stride_frames, model.mask_token_id, given=given,
                              fixed=fixed, progress=progress, melody=melody)
    cfg = model.cfg
    config.check(cfg.num_codebooks)
    check_rescorer(rescorer, model, config)
    device = next(model.parameters()).device
    states, mask, batch, conditioned = text_inputs(text_states, text_mask, batch_size, cfg.text_dim, device, melody)
    given, fixed = resolve_constraints(batch, cfg.num_codebooks, num_frames, model.mask_token_id, device, given, fixed)
    use_cfg = conditioned and config.uses_cfg
    melody = None if melody is None else melody.to(device)
    with autocast_context(device, autocast):
        memory = condition_memory(model, states, mask, use_cfg, melody)
        codes = initial_codes(given, fixed, model.mask_token_id, config)
        total, done = sum(config.decoding_steps), 0
        for stage, steps in enumerate(config.decoding_steps):
            codes = init_stage(codes, given, fixed, stage, model.mask_token_id)
            for _ in _decode_stage(model, memory, codes, fixed, stage, config, use_cfg, generator, rescorer):
                done += 1
                if progress is not None:
                    progress(done, total)
            if on_stage_end is not None:
                on_stage_end(stage, codes)
    return codes


def _decode_stage(model, memory, codes: torch.Tensor, fixed: torch.Tensor, stage: int, config: DecodingConfig,
                  use_cfg: bool, generator: torch.Generator | None, rescorer) -> Iterator[int]:
    """The steps of one stage on codes [B, K, T] (updated in place); yields after each step."""
    batch, _, num_frames = codes.shape
    steps = config.decoding_steps[stage]
    sched = stage_schedule(steps, free_units(fixed[:, stage], config), config)
    inputs = StepInputs(fixed[:, stage], sched.mask_counts, sched.cfg_coef, sched.temperature)
    scores = initial_scores(fixed[:, stage], config)
    for j in range(steps):
        noise = None
        if config.use_sampling:
            noise = draw_noise((batch, num_frames, model.cfg.codebook_size), generator, codes.device)
        step = torch.tensor([j], device=codes.device)
        new, scores = decode_step(model, memory, codes, scores, step, inputs, noise, stage, config, use_cfg, rescorer)
        codes.copy_(new)
        yield j


# ----------------------------------------------------------------------------------------------------------------
# Prompts and editing


def continuation(prompt: torch.Tensor, num_frames: int, mask_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Constraints to continue prompt codes [B, K, Tp]: (given [B, K, T], fixed [B, T]), first Tp frames fixed."""
    batch, num_codebooks, prompt_len = prompt.shape
    if prompt_len > num_frames:
        raise ValueError(f"the prompt has {prompt_len} frames, more than the {num_frames} to generate")
    given = torch.full((batch, num_codebooks, num_frames), mask_id, dtype=torch.long, device=prompt.device)
    given[..., :prompt_len] = prompt
    fixed = torch.zeros(batch, num_frames, dtype=torch.bool, device=prompt.device)
    fixed[:, :prompt_len] = True
    return given, fixed


def infilling(codes: torch.Tensor, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Constraints to regenerate frames [start, end) of codes [B, K, T]: everything else is fixed."""
    num_frames = codes.shape[-1]
    if not 0 <= start < end <= num_frames:
        raise ValueError(f"infill range [{start}, {end}) must satisfy 0 <= start < end <= {num_frames}")
    fixed = torch.ones(codes.shape[0], num_frames, dtype=torch.bool, device=codes.device)
    fixed[:, start:end] = False
    return codes.long(), fixed


def decode_request(model, request: DecodeRequest) -> torch.Tensor:
    """MAGNeT's decoder for the family table: a continuation or an infill becomes fixed frames; the fast path when
    the request carries one. Returns long [B, K, T]."""
    given = fixed = None
    if request.infill is not None:
        given, fixed = infilling(request.prompt, *request.infill)
    elif request.prompt is not None:
        given, fixed = continuation(request.prompt, request.num_frames, model.mask_token_id)
    kwargs = {"batch_size": request.batch_size, "given": given, "fixed": fixed, "generator": request.generator,
              "progress": request.progress, "rescorer": request.rescorer, "window_frames": request.window_frames,
              "stride_frames": request.stride_frames}
    if request.melody is not None:
        kwargs["melody"] = request.melody
    run = request.fast.decode if request.fast is not None else partial(decode, model)
    return run(request.text_states, request.text_mask, request.num_frames, request.config, **kwargs)


def num_steps(pattern, config: DecodingConfig, num_frames: int, prompt_frames: int = 0, given_frames: int = 0) -> int:
    """Model steps of one generation (one window; what `progress` counts): the sum of the stages' decoding steps."""
    return sum(config.decoding_steps)
