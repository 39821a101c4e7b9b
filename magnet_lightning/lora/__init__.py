"""LoRA adapters for every model family: low-rank trainable terms on the attention and feed-forward projections of a
frozen base (`adapters`: the config, which projections each family offers, attach / merge; `files`: the base's
identity and the adapter folder `adapter_config.json` + `adapter_model.safetensors`).

Layering: above `models` (it wraps their layers), below `checkpoint` (exports merge adapters), `generation` (loads a
base with an adapter) and `training` (trains the adapters only).

Why not `peft`: its LoRA replaces `nn.Linear` modules by name, but the query/key/value projections here are one fused
parameter `in_proj_weight` [3D, D] (audiocraft's layout, kept so release checkpoints load as they are) of which
cross-attention uses row slices (queries from the music, keys and values from the text). Separate q/k/v adapters on
that parameter need the attention's own hook (`Attention.in_proj_adapter`); the adapter folder keeps peft's file
names, config fields and `lora_A` / `lora_B` tensor names.
"""

from magnet_lightning.lora.adapters import (
    LoraConfig,
    apply_lora,
    lora_state_dict,
    merge_lora,
    trainable_names,
)

__all__ = ["LoraConfig", "apply_lora", "lora_state_dict", "merge_lora", "trainable_names"]
