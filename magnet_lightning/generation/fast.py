"""Fast MAGNeT decoding: the same `magnet.decode_step` on static buffers, each stage's whole step (forward over
[cond; null], CFG mix, sampling, token write, re-scoring, step counter) captured once in a CUDA graph and replayed.

Why (performance.md): at batch 1 a decoding step is bound by kernel-launch overhead on the CPU; replaying one graph
per step removes it. Other levers, all on by default on CUDA:
- text cross-attention keys/values computed once per generation (`model.prepare_text`), copied into static buffers;
- only the active stage's output head (`heads="stage"`); the model's windowed attention kernel (FlexAttention on
  CUDA) for stages >= 1;
- a bfloat16 copy of the weights under bf16 autocast (no per-step weight casts inside the graph);
- optionally `torch.compile` of the per-step forward (fused kernels inside the graph).
The only per-step host work is one kernel that draws the sampling noise from the caller's torch.Generator into a
static buffer, and the graph replay. Graphs are cached per (batch, frames, text length, structural options); the
schedule values (CFG coefficient, temperature, mask counts) live in device buffers, so changing them needs no new
capture.

Without CUDA graphs (CPU, or `cuda_graphs=False`) the same buffers and step run eagerly, which is how the CPU tests
check that this path gives exactly the tokens of the plain path for the same seed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from magnet_lightning.generation.common import ProgressFn, StageFn, autocast_context, guidance_batch, text_inputs
from magnet_lightning.generation.long_form import decode_windows
from magnet_lightning.generation.magnet import (
    StepInputs,
    check_rescorer,
    decode_step,
    init_stage,
    initial_codes,
    resolve_constraints,
)
from magnet_lightning.generation.magnet_config import DecodingConfig
from magnet_lightning.generation.options import declared_options
from magnet_lightning.generation.sampling import draw_noise
from magnet_lightning.generation.spans import free_units, initial_scores, stage_schedule


class _CompiledForward:
    """Duck-typed stand-in for the model in `decode_step` whose forward is compiled with static shapes."""

    def __init__(self, model):
        self.cfg = model.cfg
        self.mask_token_id = model.mask_token_id
        self.prepare_text = model.prepare_text
        self.forward_with_memory = torch.compile(model.forward_with_memory, dynamic=False)


@dataclass(frozen=True)
class _PlanKey:
    """What a set of static buffers and captured steps depends on: the shapes and the options the steps are traced
    with (every declared option but those fed to the steps as data, `Option.schedule`)."""

    batch: int
    num_frames: int
    text_len: int
    use_cfg: bool
    rescorer_text_len: int
    """0 without a rescorer."""
    options: tuple[tuple[str, Any], ...]

    @property
    def decoding_steps(self) -> tuple[int, ...]:
        return dict(self.options)["decoding_steps"]

    @property
    def use_sampling(self) -> bool:
        return dict(self.options)["use_sampling"]


def traced_options(config: DecodingConfig) -> tuple[tuple[str, Any], ...]:
    """(name, value) of the options a captured step is traced with, the model's span included."""
    return (("span_len", config.span_len),) + tuple(
        (d.name, getattr(config, d.name)) for d in declared_options(type(config)) if not d.option.schedule)


class _Plan:
    """Static buffers (and, on CUDA, one graph per stage) for one generation shape."""

    def __init__(self, decoder: FastDecoder, key: _PlanKey, config: DecodingConfig, memory, rescorer=None):
        model, device = decoder.model, decoder.device
        self.rescorer = rescorer  # its text memory is this plan's static buffer (ARRescorer.load refills it)
        cfg = model.cfg
        self.decoder, self.key, self.config = decoder, key, config
        self.memory = memory  # TextMemory whose tensors are the static keys/values
        self.codes = torch.full((key.batch, cfg.num_codebooks, key.num_frames), model.mask_token_id,
                                dtype=torch.long, device=device)
        self.fixed = torch.zeros(key.batch, cfg.num_codebooks, key.num_frames, dtype=torch.bool, device=device)
        self.scores = initial_scores(self.fixed[:, 0], config).clone()
        self.step = torch.zeros(1, dtype=torch.long, device=device)
        self.noise = None
        if key.use_sampling:
            self.noise = draw_noise((key.batch, key.num_frames, cfg.codebook_size), None, device)
        self.inputs = [
            StepInputs(self.fixed[:, stage], torch.ones(s, key.batch, dtype=torch.long, device=device),
                       torch.ones(s, device=device), torch.ones(s, device=device))
            for stage, s in enumerate(key.decoding_steps)
        ]
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}

    def load_memory(self, memory) -> None:
        for (k, v), (new_k, new_v) in zip(self.memory.keys_values, memory.keys_values):
            k.copy_(new_k)
            v.copy_(new_v)

    def load_stage(self, stage: int, given: torch.Tensor, config: DecodingConfig) -> None:
        """Initialise the buffers for `stage`: its row, scores, step counter and schedule."""
        mask_id = self.decoder.model.mask_token_id
        self.codes.copy_(init_stage(self.codes, given, self.fixed, stage, mask_id))
        self.scores.copy_(initial_scores(self.fixed[:, stage], config))
        self.step.zero_()
        sched = stage_schedule(config.decoding_steps[stage], free_units(self.fixed[:, stage], config), config)
        inputs = self.inputs[stage]
        inputs.mask_counts.copy_(sched.mask_counts)
        inputs.cfg_coef.copy_(sched.cfg_coef)
        inputs.temperature.copy_(sched.temperature)

    def run_step(self, stage: int) -> None:
        """decode_step on the static buffers, results written back in place."""
        decoder = self.decoder
        with autocast_context(decoder.device, decoder.autocast, cache_enabled=False):
            codes, scores = decode_step(decoder.step_model, self.memory, self.codes, self.scores, self.step,
                                        self.inputs[stage], self.noise, stage, self.config, self.key.use_cfg,
                                        self.rescorer)
        self.codes.copy_(codes)
        self.scores.copy_(scores)
        self.step.add_(1)

    def capture(self, stage: int, warmup: int = 2) -> None:
        """Warm up (compiles kernels, fills caches) on a side stream, then capture the step of `stage`.

        Warm-up changes the stage's buffers: the caller re-initialises them with `load_stage` afterwards.
        """
        stream = torch.cuda.Stream(self.decoder.device)
        stream.wait_stream(torch.cuda.current_stream(self.decoder.device))
        with torch.cuda.stream(stream):
            for _ in range(warmup):
                self.step.zero_()
                self.run_step(stage)
        torch.cuda.current_stream(self.decoder.device).wait_stream(stream)
        self.step.zero_()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.decoder.pool):
            self.run_step(stage)
        self.graphs[stage] = graph

    def advance(self, stage: int, generator: torch.Generator | None) -> None:
        if self.noise is not None:
            draw_noise(self.noise.shape, generator, self.noise.device, out=self.noise)
        graph = self.graphs.get(stage)
        if graph is None:
            self.run_step(stage)
        else:
            graph.replay()


class FastDecoder:
    """Decoding with static buffers and CUDA graphs; `decode` has the signature of `magnet.decode`.

    Args:
        model: MagnetTransformer (left untouched; a bf16 copy is made when `dtype` differs from its own).
        cuda_graphs: capture each stage's step in a CUDA graph; default: on when the model is on CUDA.
        compile: torch.compile the per-step forward (static shapes) before capture.
        dtype: weight dtype of the decoding copy; default bfloat16 on CUDA, unchanged elsewhere.
        autocast: bf16 autocast; default on CUDA.
    """

    def __init__(self, model, *, cuda_graphs: bool | None = None, compile: bool = False,
                 dtype: torch.dtype | None = None, autocast: bool | None = None):
        self.device = next(model.parameters()).device
        on_cuda = self.device.type == "cuda"
        self.cuda_graphs = on_cuda if cuda_graphs is None else cuda_graphs
        if self.cuda_graphs and not on_cuda:
            raise ValueError(f"cuda_graphs=True needs a model on a CUDA device, not {self.device}")
        dtype = (torch.bfloat16 if on_cuda else None) if dtype is None else dtype
        param_dtype = next(model.parameters()).dtype
        self.model = model if dtype in (None, param_dtype) else copy.deepcopy(model).to(dtype).eval()
        self.step_model = _CompiledForward(self.model) if compile else self.model
        self.autocast = autocast
        self.pool = torch.cuda.graph_pool_handle() if self.cuda_graphs else None
        self._plans: dict[_PlanKey, _Plan] = {}

    def _plan(self, config: DecodingConfig, batch: int, num_frames: int, use_cfg: bool, memory, rescorer) -> _Plan:
        text_len = memory.keys_values[0][0].shape[-2]
        rescoring = rescorer is not None and config.rescore_weight < 1.0
        rescorer_len = rescorer.memory.keys_values[0][0].shape[-2] if rescoring else 0
        key = _PlanKey(batch, num_frames, text_len, use_cfg, rescorer_len, traced_options(config))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _Plan(self, key, config, memory, rescorer if rescoring else None)
        else:
            plan.load_memory(memory)
            if rescoring:
                plan.rescorer.load(rescorer)
        plan.config = config
        return plan

    @torch.no_grad()  # not inference_mode: callers may edit the returned tokens in place
    def decode(
        self,
        text_states: torch.Tensor | None,
        text_mask: torch.Tensor | None,
        num_frames: int,
        config: DecodingConfig | None = None,
        *,
        batch_size: int | None = None,
        given: torch.Tensor | None = None,
        fixed: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        progress: ProgressFn | None = None,
        on_stage_end: StageFn | None = None,
        rescorer=None,
        window_frames: int | None = None,
        stride_frames: int | None = None,
    ) -> torch.Tensor:
        """Same contract as `magnet.decode` (long-form too): long [B, K, T]."""
        config = config or DecodingConfig()
        if window_frames is not None or stride_frames is not None:
            def window(frames, **constraints):
                return self.decode(text_states, text_mask, frames, config, batch_size=batch_size, generator=generator,
                                   on_stage_end=on_stage_end, rescorer=rescorer, **constraints)

            return decode_windows(window, num_frames, window_frames, stride_frames, self.model.mask_token_id,
                                  given=given, fixed=fixed, progress=progress)
        model, device = self.model, self.device
        config.check(model.cfg.num_codebooks)
        check_rescorer(rescorer, model, config)
        states, mask, batch, conditioned = text_inputs(text_states, text_mask, batch_size, model.cfg.text_dim, device)
        given, fixed = resolve_constraints(batch, model.cfg.num_codebooks, num_frames, model.mask_token_id, device,
                                           given, fixed)
        use_cfg = conditioned and config.uses_cfg
        with autocast_context(device, self.autocast):
            memory = model.prepare_text(*guidance_batch(states, mask)) if use_cfg else model.prepare_text(states, mask)
        plan = self._plan(config, batch, num_frames, use_cfg, memory, rescorer)
        plan.fixed.copy_(fixed)
        plan.codes.copy_(initial_codes(given, fixed, model.mask_token_id, config))
        total, done = sum(config.decoding_steps), 0
        for stage, steps in enumerate(config.decoding_steps):
            plan.load_stage(stage, given, config)
            if self.cuda_graphs and stage not in plan.graphs:
                plan.capture(stage)
                plan.load_stage(stage, given, config)
            for _ in range(steps):
                plan.advance(stage, generator)
                done += 1
                if progress is not None:
                    progress(done, total)
            if on_stage_end is not None:
                on_stage_end(stage, plan.codes.clone())
        return plan.codes.clone()
