"""LoRA on the projections of every layer: y = W x + (alpha / r) B A dropout(x), A [r, I] random, B [O, r] zero at
the start (so an adapted model first computes exactly what its base does).

Which projections a family offers is declared once, in the family registry (`models.registry.ModelFamily.
lora_targets`: groups of projection names under a `Layer`; all three families share the trunk, so they offer the same
ten). A config names groups (``self_attention`` = q, k, v, out_proj; ``cross_attention``; ``feed_forward`` =
linear1, linear2) or single projections (``self_attn.q``, ``cross_attention.v``, ``linear2``).

The adapter's parameters live inside the model (``...self_attn.in_proj_adapter.q.lora_A.weight``,
``...linear1.lora.lora_B.weight``), so the base's own parameter names, and the checkpoints that hold them, do not
change. `merge_lora` folds the adapters into the base weights: a plain model of the family again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from magnet_lightning.models.base import CodebookTransformer
from magnet_lightning.models.layers import Attention
from magnet_lightning.models.registry import MODEL_FAMILIES, model_family


@dataclass(frozen=True)
class LoraTarget:
    """One projection of a transformer `Layer`: `module` (its path in the layer) and, for the fused q/k/v projection
    of an `Attention`, which third of it (`part` 'q', 'k' or 'v'); part None: the module is an nn.Linear."""

    module: str
    part: str | None = None

    @classmethod
    def parse(cls, name: str) -> LoraTarget:
        """A registry projection name: 'self_attn.q' -> ('self_attn', 'q'); 'linear1' -> ('linear1', None)."""
        module, _, last = name.rpartition(".")
        return cls(module, last) if module and last in PARTS else cls(name)


PARTS = ("q", "k", "v")


def all_target_groups() -> dict[str, tuple[str, ...]]:
    """Every family's LoRA target groups (the registry's `lora_targets`) merged: what a config may name."""
    groups: dict[str, tuple[str, ...]] = {}
    for family in MODEL_FAMILIES.values():
        for group, names in family.lora_targets.items():
            groups[group] = tuple(dict.fromkeys(groups.get(group, ()) + names))
    return groups


@dataclass
class LoraConfig:
    """LoRA adapters (``model.lora``): only they train; the base is frozen (no gradients, no optimiser state)."""

    rank: int = 16
    """r: rank of each adapter (B A has rank r)."""
    alpha: float = 32.0
    """Scale numerator: the adapter's term is (alpha / rank) B A x."""
    dropout: float = 0.05
    """Dropout on the adapter's input (training only)."""
    targets: list[str] = field(default_factory=lambda: ["self_attention", "cross_attention", "feed_forward"])
    """Projections to adapt: groups 'self_attention' (self_attn.q, .k, .v, .out_proj), 'cross_attention'
    (cross_attention.q, .k, .v, .out_proj), 'feed_forward' (linear1, linear2), or single projections."""
    extra_trainable: list[str] = field(default_factory=list)
    """Base parameters that train fully too, by name or prefix (e.g. 'heads', 'out_norm'); default none."""

    def __post_init__(self) -> None:
        if self.rank < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"model.lora needs rank >= 1, alpha > 0, 0 <= dropout < 1; got rank {self.rank}, "
                             f"alpha {self.alpha}, dropout {self.dropout}")
        self.targets = list(self.targets)
        self.extra_trainable = list(self.extra_trainable)
        self.expanded_targets()

    def expanded_targets(self, groups: dict[str, tuple[str, ...]] | None = None) -> list[str]:
        """The projections named by `targets` (groups expanded, registry order); `groups` default every family's."""
        groups = all_target_groups() if groups is None else groups
        known = [name for names in groups.values() for name in names]
        chosen = set()
        for name in self.targets:
            if name not in groups and name not in known:
                raise ValueError(f"model.lora.targets: unknown {name!r}; choose groups {sorted(groups)} or "
                                 f"projections {known}")
            chosen.update(groups.get(name, (name,)))
        if not chosen:
            raise ValueError("model.lora.targets is empty: name at least one (e.g. self_attention)")
        return [name for name in known if name in chosen]

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LowRank(nn.Module):
    """x [..., I] -> (alpha / r) B A dropout(x) [..., O]; A [r, I] Kaiming-uniform, B [O, r] zero (peft's init)."""

    def __init__(self, in_features: int, out_features: int, cfg: LoraConfig):
        super().__init__()
        self.lora_A = nn.Linear(in_features, cfg.rank, bias=False)
        self.lora_B = nn.Linear(cfg.rank, out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.scale = cfg.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lora_B(self.lora_A(self.dropout(x))) * self.scale

    def delta_weight(self) -> torch.Tensor:
        """The term as a weight [O, I]: (alpha / r) B A."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scale


class FusedProjectionLoRA(nn.Module):
    """Adapters of the q, k and/or v thirds of an `Attention`'s fused projection [3D, D] (its `in_proj_adapter`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.parts = nn.ModuleDict()

    def forward(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """x [B, L, D] -> the adapters' term of rows start:stop [B, L, stop - start] (zeros for an unadapted third)."""
        pieces = []
        for index in range(start // self.dim, stop // self.dim):
            part = PARTS[index]
            pieces.append(self.parts[part](x) if part in self.parts else x.new_zeros(*x.shape[:-1], self.dim))
        return torch.cat(pieces, dim=-1) if len(pieces) > 1 else pieces[0]


def _linear_hook(module: nn.Linear, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    """Forward hook of an adapted nn.Linear: its output plus its `lora` child's term."""
    return output + module.lora(args[0])


def apply_lora(model: CodebookTransformer, cfg: LoraConfig) -> CodebookTransformer:
    """Freeze `model` and attach fresh adapters (in place; returns it). Only the adapters and the parameters named
    by `cfg.extra_trainable` keep requires_grad."""
    if is_adapted(model):
        raise ValueError("this model already has LoRA adapters")
    projections = [LoraTarget.parse(n) for n in cfg.expanded_targets(model_family(model.family).lora_targets)]
    for param in model.parameters():
        param.requires_grad_(False)
    for layer in model.transformer.layers:
        for target in projections:
            if getattr(layer, target.module.split(".")[0], None) is None:
                raise ValueError(f"model.lora.targets: this model has no {target.module} (its text is prepended, "
                                 "text_fuse 'prepend'): leave cross_attention out of the targets")
            module = layer.get_submodule(target.module)
            if target.part is not None:
                if module.in_proj_adapter is None:
                    module.in_proj_adapter = FusedProjectionLoRA(module.out_proj.in_features)
                dim = module.in_proj_adapter.dim
                module.in_proj_adapter.parts[target.part] = LowRank(dim, dim, cfg)
            else:
                module.add_module("lora", LowRank(module.in_features, module.out_features, cfg))
                module.register_forward_hook(_linear_hook)
    names = dict(model.named_parameters())
    for prefix in cfg.extra_trainable:
        matched = [n for n in names if n == prefix or n.startswith(prefix + ".")]
        if not matched:
            raise ValueError(f"model.lora.extra_trainable: no parameter {prefix!r} in {type(model).__name__} "
                             f"(top-level names: {sorted({n.split('.')[0] for n in names})})")
        for n in matched:
            names[n].requires_grad_(True)
    model.lora_config = cfg
    return model


def is_adapted(model: nn.Module) -> bool:
    return getattr(model, "lora_config", None) is not None


def is_adapter_name(name: str) -> bool:
    """True for the name of an adapter's parameter (lora_A / lora_B of any projection)."""
    return ".lora_A." in name or ".lora_B." in name


def trainable_names(model: nn.Module) -> list[str]:
    """Names of what a LoRA run trains and stores: the adapters, then the extra trainable base parameters."""
    cfg: LoraConfig = model.lora_config
    names = [n for n, _ in model.named_parameters()]
    extra = [n for n in names if any(n == p or n.startswith(p + ".") for p in cfg.extra_trainable)]
    return [n for n in names if is_adapter_name(n)] + extra


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """{name: tensor} of `trainable_names(model)` (detached, on their device)."""
    params = dict(model.named_parameters())
    return {n: params[n].detach() for n in trainable_names(model)}


def load_lora_state(model: nn.Module, state: dict[str, torch.Tensor], source: str = "adapter") -> None:
    """Copy an adapter state into an adapted model; its names must be exactly `trainable_names(model)`."""
    expected = set(trainable_names(model))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"{source}: does not fit this model's LoRA layout (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}): were rank/targets/extra_trainable changed?")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            if params[name].shape != value.shape:
                raise ValueError(f"{source}: {name} has shape {tuple(value.shape)}, the model's is "
                                 f"{tuple(params[name].shape)} (another rank or base size)")
            params[name].copy_(value)


@torch.no_grad()
def merge_lora(model: CodebookTransformer) -> CodebookTransformer:
    """Fold every adapter into its base weight (W <- W + (alpha / r) B A) and remove it: a plain model of the
    family again, all parameters trainable (in place; returns it)."""
    for module in model.modules():
        if isinstance(module, Attention) and module.in_proj_adapter is not None:
            adapter = module.in_proj_adapter
            for part, low_rank in adapter.parts.items():
                rows = slice(PARTS.index(part) * adapter.dim, (PARTS.index(part) + 1) * adapter.dim)
                module.in_proj_weight[rows] += low_rank.delta_weight().to(module.in_proj_weight.dtype)
            module.in_proj_adapter = None
        if isinstance(module, nn.Linear) and isinstance(getattr(module, "lora", None), LowRank):
            module.weight += module.lora.delta_weight().to(module.weight.dtype)
            del module.lora
            for key in [k for k, hook in module._forward_hooks.items() if hook is _linear_hook]:
                del module._forward_hooks[key]
    for param in model.parameters():
        param.requires_grad_(True)
    model.lora_config = None
    return model
