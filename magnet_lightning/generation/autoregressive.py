"""Autoregressive decoding of the MusicGen-style family: the counterpart of `magnet.decode`, the one module of the
algorithm (audiocraft `LMModel.generate` with `two_step_cfg=False`).

The codes to generate are laid out in the delay pattern (delay_pattern.py): a sequence [B, K, S] with S = T +
max_delay + 1 holding the start token, the prompt's codes, the special token where the pattern has no code, and
UNKNOWN where a code is still to be generated. From the first step that holds an unknown code to the last, the model
predicts step s from steps 0 .. s-1 (conditional and null-text rows batched together, combined as
null + cfg_coef * (cond - null)), a token is chosen for each of the K streams, and written where the step is still
UNKNOWN (prompt codes and special tokens are kept). The codes are then read back from the pattern: the output always
has the full requested T frames.

Each step feeds only the new step to the model and keeps the keys/values of the earlier ones in a static-shape cache
(models/kv_cache.py), so a step has the same shapes at every position (a CUDA graph can capture it); the prompt (the
start token and the prompt frames) is fed in one call first. `cache=False` runs the model on the whole prefix at
every step instead (same tokens; for checks).

As the reference: greedy decoding is the argmax of the guided logits (also when temperature is 0); sampling draws
from softmax(logits / temperature) restricted by top-p when top_p > 0, else by top-k when top_k > 0 (ties with the
k-th probability kept). In sampling mode each token is drawn from the reference's distribution but from a different
random stream (an exponential race on the caller's torch.Generator, sampling.py), so sampled tokens differ from the
reference's for the same seed. Departures, always on because they extend the reference: unconditional generation
(no text) runs without CFG, and CFG is skipped when cfg_coef is 1 (the guided logits are then the conditional ones).

Shapes: B batch, K codebooks, T frames, Tp prompt frames, S sequence steps, V codebook size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import torch

from magnet_lightning.generation.common import ProgressFn, autocast_context, condition_memory, text_inputs
from magnet_lightning.generation.long_form import extend
from magnet_lightning.generation.options import check_fields, option
from magnet_lightning.generation.request import DecodeRequest
from magnet_lightning.generation.sampling import draw_noise, sample_next_tokens
from magnet_lightning.models.ar import ARTransformer
from magnet_lightning.models.delay_pattern import DelayPattern
from magnet_lightning.models.kv_cache import KVCache
from magnet_lightning.models.layers import TextMemory

UNKNOWN = -1
"""Sequence value of a code not generated yet."""


@dataclass(frozen=True)
class ARDecodingConfig:
    """Every option of autoregressive decoding, declared once (generation/options.py); defaults are the reference's
    (audiocraft `MusicGen`, `generate.lm` of the released configs)."""

    use_sampling: bool = option(True, "sample (false: greedy, the argmax of the guided logits at every step)",
                                negate="--greedy", negate_help="argmax instead of sampling (greedy decoding)")
    cfg_coef: float = option(3.0, "classifier-free guidance coefficient of the autoregressive family "
                             "(classifier_free_guidance.inference_coef; 1: no guidance)", minimum=0)
    top_k: int = option(250, "sample among the k most probable tokens (0: off; ignored when top_p > 0, as the "
                        "reference)", minimum=0)
    top_p: float = option(0.0, "nucleus sampling mass (0: off); takes precedence over top_k", minimum=0, maximum=1)
    temperature: float = option(1.0, "softmax temperature (0: greedy, as the reference)", minimum=0)

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def greedy(self) -> bool:
        return not self.use_sampling or self.temperature == 0.0

    @property
    def uses_cfg(self) -> bool:
        return self.cfg_coef != 1.0

    def replace(self, **changes) -> ARDecodingConfig:
        return replace(self, **changes)


def check_prompt(prompt: torch.Tensor | None, batch: int, model: ARTransformer, num_frames: int,
                 device: torch.device) -> torch.Tensor:
    """The prompt codes long [B, K, Tp] (Tp = 0 when None), checked: Tp <= T, ids in [0, V)."""
    cfg = model.cfg
    if prompt is None:
        return torch.zeros(batch, cfg.num_codebooks, 0, dtype=torch.long, device=device)
    if prompt.dim() != 3 or prompt.shape[:2] != (batch, cfg.num_codebooks) or torch.is_floating_point(prompt):
        raise ValueError(f"prompt must be integer codes [{batch}, {cfg.num_codebooks}, Tp], got "
                         f"{prompt.dtype} {tuple(prompt.shape)}")
    if prompt.shape[-1] > num_frames:
        raise ValueError(f"the prompt has {prompt.shape[-1]} frames, more than the {num_frames} to generate")
    if bool(((prompt < 0) | (prompt >= cfg.codebook_size)).any()):
        raise ValueError(f"prompt codes must be in [0, {cfg.codebook_size})")
    return prompt.to(device).long()


def initial_sequence(model: ARTransformer, prompt: torch.Tensor, num_frames: int) -> torch.Tensor:
    """The delayed sequence [B, K, S] before decoding: prompt codes, special tokens, UNKNOWN elsewhere."""
    batch, num_codebooks, prompt_len = prompt.shape
    codes = torch.full((batch, num_codebooks, num_frames), UNKNOWN, dtype=torch.long, device=prompt.device)
    codes[..., :prompt_len] = prompt
    return model.pattern.build(codes, model.special_token_id)


def choose_tokens(logits: torch.Tensor, use_cfg: bool, config: ARDecodingConfig,
                  noise: torch.Tensor | None) -> torch.Tensor:
    """Logits [R, K, V] of one step (R = 2B with CFG: conditional rows, then null rows) -> tokens long [B, K]."""
    logits = logits.float()
    if use_cfg:
        cond, null = logits.chunk(2)
        logits = null + (cond - null) * config.cfg_coef
    if config.greedy:
        return logits.argmax(dim=-1)
    return sample_next_tokens(logits, config.temperature, noise, config.top_k, config.top_p)


def write_step(sequence: torch.Tensor, tokens: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """Write tokens [B, K] at sequence step `step` (long [1]) where it is still UNKNOWN; in place, static shapes."""
    current = sequence.index_select(-1, step)  # [B, K, 1]
    sequence.index_copy_(-1, step, torch.where(current == UNKNOWN, tokens[..., None], current))
    return sequence


def _rows(x: torch.Tensor, use_cfg: bool) -> torch.Tensor:
    """[cond; null] rows of the model input: x twice with CFG."""
    return torch.cat([x, x]) if use_cfg else x


def decode_step(model: ARTransformer, memory: TextMemory, cache: KVCache, sequence: torch.Tensor,
                step: torch.Tensor, use_cfg: bool, config: ARDecodingConfig,
                noise: torch.Tensor | None) -> torch.Tensor:
    """One cached step: feed step `step` (long [1]) of sequence [B, K, S], predict step + 1 and write it.
    Every shape is the same at every step. Returns the sequence (written in place)."""
    logits = model.forward_cached(_rows(sequence.index_select(-1, step), use_cfg), memory, cache, step)
    return write_step(sequence, choose_tokens(logits[:, :, -1], use_cfg, config, noise), step + 1)


def _cache(model: ARTransformer, memory: TextMemory, rows: int, steps: int, device: torch.device) -> KVCache:
    """A static KV cache of `steps` steps (after the memory's prefix, which it holds first) for `rows` rows, in the
    autocast dtype when autocast is on."""
    dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
    cache = KVCache.for_model(model, rows, steps + memory.prefix_length, dtype)
    model.cache_prefix(memory, cache)
    return cache


def _uncached_step(model: ARTransformer, memory: TextMemory, kv: KVCache | None, sequence: torch.Tensor, step: int,
                   first: int, use_cfg: bool, config: ARDecodingConfig, noise: torch.Tensor | None) -> None:
    """Predict step + 1 of sequence [B, K, S] without a cached prefix: the whole prefix (no cache), or the prompt
    (start token and prompt frames, steps 0 .. first - 1) in one call that fills the cache."""
    if kv is None:  # the whole prefix, causal
        logits = model.forward_sequence(_rows(sequence[..., : step + 1], use_cfg), memory)
    else:
        logits = model.forward_cached(_rows(sequence[..., :first], use_cfg), memory, kv,
                                      torch.arange(first, device=sequence.device))
    position = torch.tensor([step + 1], device=sequence.device)
    write_step(sequence, choose_tokens(logits[:, :, -1], use_cfg, config, noise), position)


@torch.no_grad()  # not inference_mode: callers may edit the returned tokens in place
def generate(
    model: ARTransformer,
    text_states: torch.Tensor | None,
    text_mask: torch.Tensor | None,
    num_frames: int,
    config: ARDecodingConfig = ARDecodingConfig(),
    prompt: torch.Tensor | None = None,
    *,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    progress: ProgressFn | None = None,
    cache: bool = True,
    autocast: bool | None = None,
    window_frames: int | None = None,
    stride_frames: int | None = None,
    melody=None,
) -> torch.Tensor:
    """Generate codes autoregressively.

    Args:
        model: ARTransformer (eval mode).
        text_states: [B, S, E] text-encoder states, or None (unconditional; give batch_size); text_mask: bool [B, S].
        num_frames: T, the full output length (prompt included).
        config: ARDecodingConfig (greedy / sampling, cfg_coef, top_k, top_p, temperature).
        prompt: long [B, K, Tp] codes to continue (kept as they are in the output), Tp <= T.
        generator: a torch.Generator on the model's device, for reproducible sampling.
        progress: progress(done_steps, total_steps) after every step.
        cache: keep earlier steps' keys/values in a static KV cache (False: rerun the whole prefix every step).
        autocast: bf16 autocast (default: on CUDA).
        window_frames, stride_frames: long-form generation in windows of W frames, stride S (`generate_windows`).
        melody: the melody condition (models.melody.ChromaCondition) of a melody-conditioned model, or None.
    Returns: long [B, K, T] token ids in [0, V).
    """
    if window_frames is not None or stride_frames is not None:
        return generate_windows(partial(generate, model, text_states, text_mask, config=config, batch_size=batch_size,
                                        generator=generator, cache=cache, autocast=autocast),
                                model, config, num_frames, prompt, window_frames, stride_frames, progress, melody)
    cfg = model.cfg
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    device = next(model.parameters()).device
    states, mask, batch, conditioned = text_inputs(text_states, text_mask, batch_size, cfg.text_dim, device, melody)
    prompt = check_prompt(prompt, batch, model, num_frames, device)
    use_cfg = conditioned and config.uses_cfg
    sequence = initial_sequence(model, prompt, num_frames)  # [B, K, S]
    first, last = model.pattern.first_step(prompt.shape[-1]), sequence.shape[-1] - 1
    with autocast_context(device, autocast):
        memory = condition_memory(model, states, mask, use_cfg, None if melody is None else melody.to(device))
        kv = _cache(model, memory, 2 * batch if use_cfg else batch, last, device) if cache else None
        for index, step in enumerate(range(first - 1, last)):
            noise = None if config.greedy else draw_noise((batch, cfg.num_codebooks, cfg.codebook_size), generator,
                                                          device)
            position = torch.tensor([step], device=device)
            if kv is not None and index > 0:
                decode_step(model, memory, kv, sequence, position, use_cfg, config, noise)
            else:
                _uncached_step(model, memory, kv, sequence, step, first, use_cfg, config, noise)
            if progress is not None:
                progress(index + 1, last - first + 1)
    return model.pattern.revert(sequence, num_frames)


def generate_windows(generate_window, model: ARTransformer, config: ARDecodingConfig, num_frames: int,
                     prompt: torch.Tensor | None, window_frames: int | None, stride_frames: int | None,
                     progress: ProgressFn | None, melody=None) -> torch.Tensor:
    """Long-form generation (long_form.py): audiocraft's `_generate_tokens` extension with max_duration W and
    extend_stride S, token for token; a user prompt [B, K, Tp] (Tp < W) comes back in front; a melody's part per
    window (models.melody.ChromaCondition.window). Returns [B, K, T]."""
    def window(window_prompt, w, window_progress):
        part = {} if melody is None else {"melody": melody.window(w.index, w.start, w.length)}
        return generate_window(w.length, prompt=window_prompt, progress=window_progress, **part)

    return extend(window, num_frames, window_frames, stride_frames, prompt, progress=progress,
                  window_steps=lambda w: num_steps(model.pattern, config, w.length, 0, w.prompt))


def decode_request(model: ARTransformer, request: DecodeRequest) -> torch.Tensor:
    """The autoregressive decoder for the family table (a prompt is continued). Returns long [B, K, T]."""
    return generate(model, request.text_states, request.text_mask, request.num_frames, request.config,
                    request.prompt, batch_size=request.batch_size, generator=request.generator,
                    progress=request.progress, window_frames=request.window_frames,
                    stride_frames=request.stride_frames, melody=request.melody)


def num_steps(pattern: DelayPattern, config: ARDecodingConfig | None, num_frames: int, prompt_frames: int = 0,
              given_frames: int = 0) -> int:
    """Model steps of one generation of T frames after `given_frames` given ones (what `progress` counts): one per
    sequence step of the pattern from the first unknown code on (`prompt_frames`: a hybrid's own prompt, unused)."""
    return pattern.sequence_length(num_frames) - pattern.first_step(given_frames)
