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
(`fast_decoding.FastDecoder`) runs the same `decode_step` on static buffers inside CUDA graphs.

Shapes: B batch, K codebooks, T frames, N span chunks, U scoring units (N or T), S text tokens, E text width,
V codebook size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F

from magnet_lightning.generation.long_form import decode_windows
from magnet_lightning.generation.sampling import draw_noise, sample_tokens

FIXED_SCORE = -1e4
"""Score of units that must never be re-masked (scores are 'unconfidence': the highest are re-masked)."""

SPAN_ARRANGEMENTS = ("nonoverlap", "stride1")
SPAN_SCORINGS = ("max", "prod")
STRIDE1_COVERS = ("reference", "minimal")


@dataclass(frozen=True)
class DecodingConfig:
    """Every option of MAGNeT decoding. Defaults are the music model's (audiocraft `MAGNeT.set_generation_params`)."""

    decoding_steps: tuple[int, ...] = (20, 10, 10, 10)
    """Steps per codebook stage; one entry per codebook ([60, 10, 10, 10] for 30-s models)."""
    span_len: int = 3
    """Span length L in frames (the model's training span)."""
    span_arrangement: str = "nonoverlap"
    """'nonoverlap': re-mask whole chunks [cL, cL + L); 'stride1': least probable overlapping spans."""
    span_scoring: str = "max"
    """Chunk unconfidence in 'nonoverlap' mode: 'max' = 1 - max token probability, 'prod' = sum of -log p."""
    max_cfg_coef: float = 10.0
    """Guidance coefficient at the first step (mask rate 1)."""
    min_cfg_coef: float = 1.0
    """Guidance coefficient at the last step (mask rate 0)."""
    temperature: float = 3.0
    """Sampling temperature at the first step of each stage."""
    anneal_temperature: bool = True
    """Linearly anneal the temperature to 0 at the last step of each stage."""
    top_k: int = 0
    """Keep the k most probable tokens (0: off)."""
    top_p: float = 0.9
    """Nucleus sampling mass (0: off)."""
    use_sampling: bool = True
    """False: greedy (argmax of the guided logits) at every step."""
    anneal_from_initial: bool = False
    """Departure: the annealed temperature starts at exactly `temperature` (the reference: temperature * (s-1)/s)."""
    confidence_before_top_k: bool = False
    """Departure: rank top-k samples by their untruncated probability (the reference: the renormalised top-k one)."""
    stride1_cover: str = "reference"
    """'stride1' span choice: 'reference' (audiocraft's binary search for the number of spans; may re-mask tokens
    decoded at an earlier step) or 'minimal' (departure: the fewest top spans covering the count, decoded tokens
    kept)."""
    mask_upper_stages_in_prompt: bool = False
    """Departure: at stage k, stages above k are MASK on prompt frames too (the reference shows them)."""
    rescore_weight: float = 1.0
    """Paper §3.3, Eq. 5 (not in audiocraft): spans are ranked by w * p_MAGNeT + (1 - w) * p_rescorer, w this weight;
    1.0 is no rescoring. Needs a rescorer (rescoring.py). The paper's Fig. 4 writes the weights the other way round."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "decoding_steps", tuple(int(s) for s in self.decoding_steps))
        if not self.decoding_steps or any(s < 1 for s in self.decoding_steps):
            raise ValueError(f"decoding_steps must be positive integers, got {list(self.decoding_steps)}")
        if self.span_len < 1:
            raise ValueError(f"span_len must be >= 1, got {self.span_len}")
        if self.span_arrangement not in SPAN_ARRANGEMENTS:
            raise ValueError(f"span_arrangement={self.span_arrangement!r}: choose one of {SPAN_ARRANGEMENTS}")
        if self.span_scoring not in SPAN_SCORINGS:
            raise ValueError(f"span_scoring={self.span_scoring!r}: choose one of {SPAN_SCORINGS}")
        if self.temperature < 0 or self.top_k < 0 or not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"need temperature >= 0, top_k >= 0, 0 <= top_p <= 1; got {self.temperature}, "
                             f"{self.top_k}, {self.top_p}")
        if self.top_k > 0 and self.top_p > 0:
            raise ValueError(f"top_k={self.top_k} and top_p={self.top_p} are both set: the reference samples with "
                             "top_p and ignores top_k; set one of them to 0")
        if not 0.0 <= self.rescore_weight <= 1.0:
            raise ValueError(f"rescore_weight must be in [0, 1] (1: no rescoring), got {self.rescore_weight}")
        if self.stride1_cover not in STRIDE1_COVERS:
            raise ValueError(f"stride1_cover={self.stride1_cover!r}: choose one of {STRIDE1_COVERS}")

    def check(self, num_codebooks: int) -> None:
        """Raise unless there is exactly one decoding_steps entry per codebook."""
        if len(self.decoding_steps) != num_codebooks:
            raise ValueError(f"decoding_steps has {len(self.decoding_steps)} entries "
                             f"{list(self.decoding_steps)} but the model has {num_codebooks} codebooks: "
                             f"give one number of steps per codebook")

    @property
    def uses_cfg(self) -> bool:
        return not (self.max_cfg_coef == 1.0 and self.min_cfg_coef == 1.0)

    def replace(self, **changes) -> DecodingConfig:
        return replace(self, **changes)


DECODING_PRESETS: dict[str, dict] = {
    # magnet_spec.md §7.1: text-to-music (MAGNeT) and text-to-audio (Audio-MAGNeT) defaults.
    "music": {"top_k": 0, "top_p": 0.9, "temperature": 3.0, "max_cfg_coef": 10.0, "min_cfg_coef": 1.0},
    "audio": {"top_k": 0, "top_p": 0.8, "temperature": 3.5, "max_cfg_coef": 20.0, "min_cfg_coef": 1.0},
}


def default_decoding_steps(duration: float, num_codebooks: int = 4) -> tuple[int, ...]:
    """[20, 10, ...] up to 10 s, [60, 10, ...] for longer (30-s) generations; one entry per codebook."""
    first = 20 if duration <= 10.0 + 1e-6 else 60
    return (first,) + (10,) * (num_codebooks - 1)


def decoding_preset(name: str = "music", duration: float = 10.0, num_codebooks: int = 4, **overrides) -> DecodingConfig:
    """A DecodingConfig from DECODING_PRESETS with steps for `duration`, then `overrides`."""
    if name not in DECODING_PRESETS:
        raise ValueError(f"unknown decoding preset {name!r}: choose one of {sorted(DECODING_PRESETS)}")
    values = {**DECODING_PRESETS[name], "decoding_steps": default_decoding_steps(duration, num_codebooks)}
    return DecodingConfig(**{**values, **overrides})


# ----------------------------------------------------------------------------------------------------------------
# Schedules


@dataclass
class StageSchedule:
    """Per-step values of one stage (s steps), precomputed once so a step only gathers them by index."""

    mask_counts: torch.Tensor
    """long [s, B]: units to re-mask at each step (between 1 and the free units; 0 if nothing is free)."""
    cfg_coef: torch.Tensor
    """float32 [s]: guidance coefficient, max_cfg_coef at step 0, min_cfg_coef at the last step."""
    temperature: torch.Tensor
    """float32 [s]: temperature, `temperature` at step 0, 0 at the last step when annealed."""
    mask_rate: torch.Tensor = field(default=None)
    """float32 [s]: gamma_j = cos(pi tau_j / 2)."""

    @property
    def num_steps(self) -> int:
        return self.cfg_coef.shape[0]


def reference_mask_rates(steps: int) -> torch.Tensor:
    """gamma_j = cos(pi/2 * tau_j), tau = linspace(0, 1, s), in float32 one step at a time, as the reference computes
    it (its mask counts truncate gamma_j * units in float32, so the rounding matters). float32 [s] on the CPU."""
    tau = torch.linspace(0.0, 1.0, steps)
    return torch.stack([torch.cos(t * math.pi * 0.5) for t in tau])


def stage_schedule(steps: int, free_units: torch.Tensor, config: DecodingConfig) -> StageSchedule:
    """Schedule of a stage decoded in `steps` steps with free_units [B] (long) maskable units per item.

    Mask counts max(trunc(gamma_j * units), 1) (float32 as the reference), at most the free units; the CFG
    coefficient gamma_j * max + (1 - gamma_j) * min; the temperature T0 * (s - 1 - j) / s (or T0 * (1 - tau_j) with
    `anneal_from_initial`).
    """
    gamma = reference_mask_rates(steps)  # float32 [s]
    free = free_units.to("cpu")
    counts = torch.trunc(gamma[:, None] * free[None, :].float()).clamp(min=1.0).long()  # [s, B]
    counts = torch.minimum(counts, free[None, :])
    g64 = gamma.double()
    cfg = g64 * config.max_cfg_coef + (1.0 - g64) * config.min_cfg_coef
    left = torch.arange(steps - 1, -1, -1, dtype=torch.float64)  # steps left after each step: s-1 .. 0
    if not config.anneal_temperature:
        temp = torch.full((steps,), float(config.temperature), dtype=torch.float64)
    elif config.anneal_from_initial:
        temp = config.temperature * left / max(steps - 1, 1)
    else:
        temp = config.temperature * (left / steps)
    device = free_units.device
    return StageSchedule(counts.to(device), cfg.float().to(device), temp.float().to(device), gamma)


# ----------------------------------------------------------------------------------------------------------------
# Units (chunks or tokens), re-masking and scoring


def num_chunks(num_frames: int, span_len: int) -> int:
    """N = ceil(T / L): the last chunk is shorter when L does not divide T (the output keeps the full length)."""
    return -(-num_frames // span_len)


def chunks_to_frames(chunk_values: torch.Tensor, span_len: int, num_frames: int) -> torch.Tensor:
    """[B, N] -> [B, T]: each chunk's value on its frames (expand + flatten: no host synchronisation)."""
    expanded = chunk_values[..., None].expand(*chunk_values.shape, span_len)  # [B, N, L]
    return expanded.flatten(-2)[:, :num_frames]


def frames_to_chunks(frame_values: torch.Tensor, span_len: int, pad_value) -> torch.Tensor:
    """[B, T] -> [B, N, L], the tail of the last chunk filled with pad_value."""
    num_frames = frame_values.shape[-1]
    pad = num_chunks(num_frames, span_len) * span_len - num_frames
    return F.pad(frame_values, (0, pad), value=pad_value).unflatten(-1, (-1, span_len))


def initial_scores(fixed: torch.Tensor, config: DecodingConfig) -> torch.Tensor:
    """Scores [B, U] at a stage's start: 0 for free units, FIXED_SCORE for units whose frames are all given."""
    if config.span_arrangement == "nonoverlap":
        fixed = frames_to_chunks(fixed, config.span_len, True).all(dim=-1)  # [B, N]
    return torch.where(fixed, FIXED_SCORE, 0.0).float()


def free_units(fixed: torch.Tensor, config: DecodingConfig) -> torch.Tensor:
    """Number of maskable units per item, long [B]."""
    return (initial_scores(fixed, config) > FIXED_SCORE / 2).sum(dim=-1)


def _descending_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Rank of each entry when its row is sorted by descending score. long [B, U].

    Ties are broken as torch's default (unstable) sort breaks them, because that is what the reference's `argsort`
    does: spans of decoded tokens all score about -L * 1e4 and their order decides which of them a late 'stride1'
    step re-masks.
    """
    order = scores.argsort(dim=-1, descending=True)
    positions = torch.arange(scores.shape[-1], device=scores.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, positions)


def _nonoverlap_remask(scores: torch.Tensor, counts: torch.Tensor, span_len: int, num_frames: int) -> torch.Tensor:
    """The `counts[b]` chunks with the highest scores, as a frame mask [B, T]."""
    chosen = _descending_ranks(scores) < counts[:, None]  # [B, N]
    return chunks_to_frames(chosen, span_len, num_frames)


def _first_cover(scores: torch.Tensor, span_len: int) -> torch.Tensor:
    """Rank of the first span covering each token, when the spans [s, s + L) are sorted by descending span score
    (the sum of their token scores; stable for ties). scores [B, T] -> float32 [B, T], T >= L.

    A token's first covering span is the best ranked of the L spans starting in [t - L + 1, t]: a sliding minimum.
    The union of the u best spans is then exactly the tokens whose first cover is < u.
    """
    num_frames = scores.shape[-1]
    span_scores = scores.unfold(-1, span_len, 1).sum(dim=-1)  # [B, T - L + 1]
    ranks = _descending_ranks(span_scores).float()
    padded = F.pad(ranks, (span_len - 1, span_len - 1), value=math.inf)  # [B, T + L - 1]
    return padded.unfold(-1, span_len, 1).amin(dim=-1)[:, :num_frames]


def _stride1_minimal(scores: torch.Tensor, counts: torch.Tensor, span_len: int) -> torch.Tensor:
    """The union of the fewest top spans that covers at least `counts[b]` maskable tokens (those not fixed by an
    earlier step), never re-masking a decoded token. scores [B, T] -> bool [B, T]."""
    maskable = scores > FIXED_SCORE / 2
    first_cover = _first_cover(scores, span_len).masked_fill(~maskable, math.inf)
    index = (counts - 1).clamp(min=0)[:, None]
    threshold = first_cover.sort(dim=-1).values.gather(-1, index)  # [B, 1]
    return maskable & (first_cover <= threshold) & (counts[:, None] > 0)


def _half_even(x: torch.Tensor) -> torch.Tensor:
    """round(x / 2) with ties to even (Python's round), on long tensors."""
    return torch.round(x.double() / 2).long()


def _stride1_reference(scores: torch.Tensor, counts: torch.Tensor, span_len: int) -> torch.Tensor:
    """audiocraft's least-probable-span masking (magnet_spec.md §7.3) with static shapes. scores [B, T] -> bool [B, T].

    For a target n = max(count, L) the reference binary-searches the number u of top spans in [n // L, n - L + 1]:
    mid = round((lo + hi) / 2); while lo < mid < hi it evaluates the union of the first mid spans, moving hi to mid
    when the union covers more than n tokens and lo otherwise; it returns the union of the last evaluated mid. Here
    the union's size for every u is one cumulative histogram of first-cover ranks, and the search runs a fixed number
    of masked iterations (enough for any T), so no step depends on data on the host.
    """
    batch, num_frames = scores.shape
    first_cover = _first_cover(scores, span_len)  # [B, T], finite values in [0, T - L]
    num_spans = num_frames - span_len + 1
    histogram = torch.zeros(batch, num_spans + 1, device=scores.device)
    histogram.scatter_add_(-1, first_cover.long(), torch.ones_like(first_cover))
    covered = torch.cumsum(histogram, dim=-1) - histogram  # covered[u]: tokens in the union of the first u spans
    target = counts.clamp(min=span_len)
    lo, hi = target // span_len, target - span_len + 1
    mid = _half_even(lo + hi)
    chosen = mid.clone()
    active = (mid > lo) & (mid < hi)
    for _ in range(num_frames.bit_length() + 1):
        chosen = torch.where(active, mid, chosen)
        over = covered.gather(-1, mid.clamp(0, num_spans)[:, None])[:, 0] > target
        hi = torch.where(active & over, mid, hi)
        lo = torch.where(active & ~over, mid, lo)
        mid = torch.where(active, _half_even(lo + hi), mid)
        active = active & (mid > lo) & (mid < hi)
    return (first_cover < chosen[:, None]) & (counts[:, None] > 0)


def _stride1_remask(scores: torch.Tensor, counts: torch.Tensor, config: DecodingConfig) -> torch.Tensor:
    span_len = min(config.span_len, scores.shape[-1])
    if config.stride1_cover == "minimal":
        return _stride1_minimal(scores, counts, span_len)
    return _stride1_reference(scores, counts, span_len)


def remask(scores: torch.Tensor, counts: torch.Tensor, fixed: torch.Tensor, config: DecodingConfig) -> torch.Tensor:
    """Frames of the current stage to (re-)mask at this step: bool [B, T], never a given (fixed) frame."""
    if config.span_arrangement == "nonoverlap":
        chosen = _nonoverlap_remask(scores, counts, config.span_len, fixed.shape[-1])
    else:
        chosen = _stride1_remask(scores, counts, config)
    return chosen & ~fixed


def unit_scores(confidence: torch.Tensor, masked: torch.Tensor, config: DecodingConfig) -> torch.Tensor:
    """Scores [B, U] for the next step: unconfidence of the units predicted now, FIXED_SCORE for all others.

    confidence [B, T]: probability of each frame's sampled token (written or not); masked [B, T]: frames predicted
    at this step. As in the reference, a chunk's score covers all of its frames ('max': 1 - the largest
    probability, 'prod': the sum of -log p), and a chunk counts as predicted when any of its frames was masked.
    """
    neg_log = -confidence.log()
    if config.span_arrangement == "stride1":
        return torch.where(masked, neg_log, FIXED_SCORE)
    chunk_masked = frames_to_chunks(masked, config.span_len, False).any(dim=-1)  # [B, N]
    if config.span_scoring == "max":
        score = 1.0 - frames_to_chunks(confidence, config.span_len, 0.0).amax(dim=-1)
    else:
        score = frames_to_chunks(neg_log, config.span_len, 0.0).sum(dim=-1)
    return torch.where(chunk_masked, score, FIXED_SCORE)


# ----------------------------------------------------------------------------------------------------------------
# One step and one generation


def null_condition(text_states: torch.Tensor, text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The CFG null condition with the same padding length: zero states, all-False mask."""
    return torch.zeros_like(text_states), torch.zeros_like(text_mask)


def guidance_batch(text_states: torch.Tensor, text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[cond; null] batched together: states [2B, S, E], mask [2B, S]."""
    null_states, null_mask = null_condition(text_states, text_mask)
    return torch.cat([text_states, null_states]), torch.cat([text_mask, null_mask])


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
    if rescorer is not None and config.rescore_weight < 1.0:
        w = config.rescore_weight
        confidence = w * confidence + (1.0 - w) * rescorer(codes, stage)
    return codes, unit_scores(confidence, masked, config)


def check_rescorer(rescorer, model, config: DecodingConfig) -> None:
    """A rescore_weight below 1 needs a rescorer that reads the model's tokens."""
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


def text_inputs(
    text_states: torch.Tensor | None, text_mask: torch.Tensor | None, batch_size: int | None, text_dim: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
    """(states [B, S, E], mask [B, S], B, conditioned). No text -> one all-masked zero token per item."""
    if text_states is None:
        if batch_size is None:
            raise ValueError("unconditional generation needs batch_size")
        states = torch.zeros(batch_size, 1, text_dim, device=device)
        return states, torch.zeros(batch_size, 1, dtype=torch.bool, device=device), batch_size, False
    if text_states.dim() != 3 or text_states.shape[-1] != text_dim:
        raise ValueError(f"text_states must be [B, S, {text_dim}], got {tuple(text_states.shape)}")
    if text_mask is None:
        text_mask = torch.ones(text_states.shape[:2], dtype=torch.bool, device=device)
    if batch_size is not None and batch_size != text_states.shape[0]:
        raise ValueError(f"batch_size={batch_size} but text_states has {text_states.shape[0]} rows")
    return text_states.to(device).float(), text_mask.to(device).bool(), text_states.shape[0], True


ProgressFn = Callable[[int, int], None]
"""progress(done_steps, total_steps)."""
StageFn = Callable[[int, torch.Tensor], None]
"""on_stage_end(stage, codes [B, K, T]) after the last step of each stage (inspection, tests)."""


def autocast_context(device: torch.device, enabled: bool | None, cache_enabled: bool = True):
    """bf16 autocast on CUDA by default, nothing elsewhere (the weight-cast cache must be off in CUDA graphs)."""
    enabled = device.type == "cuda" if enabled is None else enabled
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled, cache_enabled=cache_enabled)


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
) -> torch.Tensor:
    """Generate codes with MAGNeT's iterative decoding (the plain path: a Python loop of `decode_step`); past
    `window_frames`, window by window (long_form.decode_windows: continuations of the previous window's tail).

    Args:
        model: MagnetTransformer.
        text_states: [B, S, E] text-encoder states (null rows: zeros with mask False), or None (unconditional).
        text_mask: bool [B, S].
        num_frames: T, the full output length.
        batch_size: B for unconditional generation.
        given, fixed: tokens [B, K, T] kept where fixed ([B, T], or [B, K, T] per stage) is True (prompt,
            infilling context); see `continuation` and `infilling`.
        generator: a torch.Generator on the model's device, for reproducible sampling.
        progress: called after every step; on_stage_end: called with the codes after every stage.
        rescorer: e.g. rescoring.ARRescorer for the same batch; used when config.rescore_weight < 1 (per window).
        window_frames, stride_frames: W and S (1 <= S < W) of long-form generation; None: one window of T frames.
    Returns:
        long [B, K, T] token ids in [0, V).
    """
    if window_frames is not None or stride_frames is not None:
        def window(frames, **constraints):
            return decode(model, text_states, text_mask, frames, config, batch_size=batch_size, generator=generator,
                          on_stage_end=on_stage_end, autocast=autocast, rescorer=rescorer, **constraints)

        return decode_windows(window, num_frames, window_frames, stride_frames, model.mask_token_id, given=given,
                              fixed=fixed, progress=progress)
    cfg = model.cfg
    config.check(cfg.num_codebooks)
    check_rescorer(rescorer, model, config)
    device = next(model.parameters()).device
    states, mask, batch, conditioned = text_inputs(text_states, text_mask, batch_size, cfg.text_dim, device)
    given, fixed = resolve_constraints(batch, cfg.num_codebooks, num_frames, model.mask_token_id, device, given, fixed)
    use_cfg = conditioned and config.uses_cfg
    with autocast_context(device, autocast):
        memory = model.prepare_text(*guidance_batch(states, mask)) if use_cfg else model.prepare_text(states, mask)
        codes = initial_codes(given, fixed, model.mask_token_id, config)
        total, done = sum(config.decoding_steps), 0
        for stage, steps in enumerate(config.decoding_steps):
            sched = stage_schedule(steps, free_units(fixed[:, stage], config), config)
            inputs = StepInputs(fixed[:, stage], sched.mask_counts, sched.cfg_coef, sched.temperature)
            codes = init_stage(codes, given, fixed, stage, model.mask_token_id)
            scores = initial_scores(fixed[:, stage], config)
            for j in range(steps):
                noise = None
                if config.use_sampling:
                    noise = draw_noise((batch, num_frames, cfg.codebook_size), generator, device)
                step = torch.tensor([j], device=device)
                codes, scores = decode_step(model, memory, codes, scores, step, inputs, noise, stage, config, use_cfg,
                                            rescorer)
                done += 1
                if progress is not None:
                    progress(done, total)
            if on_stage_end is not None:
                on_stage_end(stage, codes)
    return codes


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
