"""Our LoRA adapters as peft adapters of transformers' MusicGen (`--format transformers --adapter-only`).

peft wraps `nn.Linear` modules by name; transformers' MusicGen has separate q / k / v projections, so our adapters
of the thirds of a fused `in_proj_weight` map one to one onto peft adapters of `q_proj` / `k_proj` / `v_proj`, and
ours of `linear1`, `out_proj`, ... onto `fc1`, `out_proj`, ... (transformers_names.py). peft computes the same term,
(lora_alpha / r) B A x, with the same A [r, in] and B [out, r]; the folder is what `PeftModel.save_pretrained` writes:

- ``adapter_config.json``: peft's LoRA config; `target_modules` a regular expression naming exactly the adapted
  projections of the decoder's layers (none of the T5's or EnCodec's modules);
- ``adapter_model.safetensors``: ``base_model.model.decoder.model.decoder.layers.L.<module>.lora_A.weight`` and
  ``lora_B``, float32, and in the file's metadata ours (``magnet_lightning``: format, family, the base's source
  and SHA-256) so the base can be checked where this project reads the adapter again.

Parameters trained fully beside the adapters (`extra_trainable`) have no peft form here: such a run exports merged.
MAGNeT has no peft-supported model class, so its adapters stay in this project's folder (lora/files.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from magnet_lightning.errors import UserError
from magnet_lightning.interop.transformers_names import DECODER, projection_name
from magnet_lightning.lora.files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, FORMAT, PEFT_PREFIX, VERSION, Adapter

_FUSED = re.compile(r"transformer\.layers\.(\d+)\.(self_attn|cross_attention)\.in_proj_adapter\.parts\.([qkv])\."
                    r"(lora_[AB])\.weight$")
_LINEAR = re.compile(r"transformer\.layers\.(\d+)\.(.+)\.lora\.(lora_[AB])\.weight$")
METADATA_KEY = "magnet_lightning"


def peft_name(name: str) -> str:
    """Our adapter parameter -> its name in a peft adapter of MusicgenForConditionalGeneration."""
    fused, linear = _FUSED.match(name), _LINEAR.match(name)
    if fused:
        layer, target, matrix = fused.group(1), f"{fused.group(2)}.{fused.group(3)}", fused.group(4)
    elif linear:
        layer, target, matrix = linear.groups()
    else:
        raise UserError(f"{name}: no peft form (only adapters of the layers' projections have one)")
    return f"{PEFT_PREFIX}{DECODER}layers.{layer}.{projection_name(target)}.{matrix}.weight"


def peft_config(adapter: Adapter) -> dict[str, Any]:
    """peft's adapter_config.json for `adapter` on MusicgenForConditionalGeneration."""
    cfg = adapter.config
    modules = "|".join(re.escape(projection_name(t)) for t in cfg.expanded_targets())
    return {"peft_type": "LORA", "task_type": None, "r": cfg.rank, "lora_alpha": cfg.alpha,
            "lora_dropout": cfg.dropout, "target_modules": rf"{re.escape(DECODER)}layers\.\d+\.({modules})",
            "bias": "none", "fan_in_fan_out": False, "modules_to_save": None, "init_lora_weights": True,
            "use_rslora": False, "use_dora": False, "inference_mode": True,
            "base_model_name_or_path": adapter.base.source}


def write_peft_adapter(adapter: Adapter, folder: Path) -> list[str]:
    """Write the peft adapter into `folder` (an empty staging folder); returns the names written."""
    if adapter.config.extra_trainable:
        raise UserError(f"the adapter also trains {', '.join(adapter.config.extra_trainable)} fully, which a peft "
                        "LoRA adapter cannot carry: export the merged model instead (leave out --adapter-only)")
    tensors = {peft_name(k): v.detach().to("cpu", torch.float32).contiguous() for k, v in adapter.state.items()}
    ours = {"format": FORMAT, "version": VERSION, "family": adapter.family, "base": adapter.base.source,
            "base_sha256": adapter.base.sha256, "lora": {"rank": adapter.config.rank, "alpha": adapter.config.alpha,
                                                         "targets": adapter.config.expanded_targets()}}
    save_file(tensors, str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt", METADATA_KEY: json.dumps(ours)})
    (folder / ADAPTER_CONFIG).write_text(json.dumps(peft_config(adapter), indent=2) + "\n")
    return [ADAPTER_CONFIG, ADAPTER_WEIGHTS]
