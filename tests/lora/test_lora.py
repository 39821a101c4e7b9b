"""LoRA for every registered family: zero-B adapters compute the base's outputs, merged and unmerged logits agree,
training leaves the base bit-identical and stores the adapters only (small checkpoints), resume is exact, a wrong
base is refused in one line, and base + adapter generates the same greedy tokens as the merged export and as the
adapter folder."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from support.helpers import FixedBatches, loader, save_base, tiny_module

from magnet_lightning.checkpoint.pretrained import load_pretrained
from magnet_lightning.cli.export import main as export_main
from magnet_lightning.errors import CheckpointError
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.lora import LoraConfig, apply_lora, merge_lora
from magnet_lightning.lora.files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, read_adapter
from magnet_lightning.models.registry import MODEL_FAMILIES

FAMILY_NAMES = list(MODEL_FAMILIES)

LORA = dict(rank=4, alpha=8.0, dropout=0.0)


def fit(module, root, max_steps, ckpt_path=None):
    """Train; checkpoints root/step=2.ckpt, root/step=4.ckpt, ... (written during training, EMA live and averaged)."""
    saver = L.pytorch.callbacks.ModelCheckpoint(dirpath=root, filename="{step}", every_n_train_steps=2, save_top_k=-1)
    trainer = L.Trainer(accelerator="cpu", max_steps=max_steps, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[saver], default_root_dir=root, limit_val_batches=0)
    trainer.fit(module, loader(FixedBatches(2, vary=True)), ckpt_path=ckpt_path)  # epochs end at checkpoints
    return trainer


def inputs(module, batch=2, frames=12):
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 16, (batch, 4, frames), generator=g)
    states, mask = module.encode_text([f"calm piano {i}" for i in range(batch)])
    return codes, states, mask


def logits(model, codes, states, mask):
    """The trunk every family shares, end to end (embeddings, every projection of every layer, the heads) with
    plain full attention: logits [B, K, T, V]."""
    def attend(_layer, q, k, v):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    return model.all_logits(model.transformer(model.embed(codes), model.prepare_text(states, mask), attend))


def tensor_numel(tree) -> int:
    """Elements of every tensor of more than one element in a nested checkpoint (step counters left out)."""
    if isinstance(tree, torch.Tensor):
        return tree.numel() if tree.numel() > 1 else 0
    if isinstance(tree, dict):
        return sum(tensor_numel(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(tensor_numel(v) for v in tree)
    return 0


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora_bases")
    fast = {"decoding_steps": [2, 1, 1, 1]}  # MAGNeT's stages (the autoregressive family does not read it)
    return {family: save_base(tiny_module(family=family, decoding=fast), root / f"{family}.ckpt")
            for family in FAMILY_NAMES}


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_zero_b_equals_base_and_merge_equals_unmerged(family, bases):
    base = tiny_module(family=family, init_from=str(bases[family])).eval()
    adapted = tiny_module(family=family, init_from=str(bases[family]), lora=LORA).eval()
    args = inputs(base)
    with torch.no_grad():
        reference = logits(base.model, *args)
        assert torch.equal(logits(adapted.model, *args), reference)  # B = 0: exactly the base
        for name, param in adapted.model.named_parameters():
            if ".lora_B." in name:
                param.normal_(0, 0.1)
        unmerged = logits(adapted.model, *args)
        assert (unmerged - reference).abs().max() > 1e-3  # the adapters now change the output
        merged = logits(merge_lora(adapted.model), *args)
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-5)
    assert not any(".lora_" in n for n in adapted.model.state_dict())  # a plain model again


def test_targets_and_extra_trainable_choose_what_trains(bases):
    module = tiny_module(init_from=str(bases[FAMILY_NAMES[0]]),
                         lora=dict(LORA, targets=["self_attn.q", "feed_forward"], extra_trainable=["heads"]))
    names = [n for n, p in module.model.named_parameters() if p.requires_grad]
    assert "heads" in names and all(".q." in n or "linear" in n for n in names if n != "heads")
    assert not any(".k." in n or "cross_attention" in n for n in names)
    with pytest.raises(ValueError, match="unknown 'self_attn.x'"):
        LoraConfig(targets=["self_attn.x"])
    with pytest.raises(ValueError, match="init_from"):
        tiny_module(lora=LORA)
    with pytest.raises(ValueError, match="no parameter 'nope'"):
        apply_lora(tiny_module().model, LoraConfig(extra_trainable=["nope"]))


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_training_keeps_the_base_and_checkpoints_only_adapters(family, bases, tmp_path):
    module = tiny_module(family=family, init_from=str(bases[family]), lora=LORA, ema_every_n_steps=2)
    base_state = {k: v.clone() for k, v in tiny_module(family=family, init_from=str(bases[family])).model
                  .state_dict().items()}
    trainer = fit(module, tmp_path, 4)
    state = module.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in base_state.items())  # the base is bit-identical
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    optimized = [p for group in trainer.optimizers[0].param_groups for p in group["params"]]
    assert {id(p) for p in optimized} == trainable
    assert len(trainer.optimizers[0].state) == len(trainable)  # optimiser state for the adapters only
    assert not any(p.requires_grad for n, p in module.model.named_parameters() if ".lora_" not in n)
    raw = torch.load(tmp_path / "step=4.ckpt", weights_only=True)
    assert raw["state_dict"] and all(".lora_" in k for k in raw["state_dict"])
    assert all(".lora_" in k for k in raw["current_model_state"])  # the EMA's live copy: adapters only too
    assert any(not torch.equal(raw["state_dict"][k], raw["current_model_state"][k]) for k in raw["state_dict"])
    # What it holds: the adapters 4 times (EMA, live, AdamW's two moments) and nothing of the base.
    assert tensor_numel(raw) == 4 * sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_resume_is_exact_and_a_wrong_base_is_refused(family, bases, tmp_path):
    def module(init_from=bases[family]):
        return tiny_module(family=family, init_from=str(init_from), lora=LORA, ema_every_n_steps=2)

    straight = module()
    fit(straight, tmp_path / "a", 4)
    half = tmp_path / "a" / "step=2.ckpt"
    fit(module(), tmp_path / "b", 4, ckpt_path=half)
    a, b = (torch.load(tmp_path / run / "step=4.ckpt", weights_only=True) for run in "ab")
    for entry in ("state_dict", "current_model_state"):  # the EMA and the live adapters
        assert a[entry].keys() == b[entry].keys() and all(torch.equal(a[entry][k], b[entry][k]) for k in a[entry])
    assert all(torch.equal(x["exp_avg"], y["exp_avg"]) for x, y in zip(a["optimizer_states"][0]["state"].values(),
                                                                     b["optimizer_states"][0]["state"].values()))

    other = save_base(tiny_module(family=family, seed=7), tmp_path / "other.ckpt")
    torch.manual_seed(123)
    wrong = tiny_module(family=family, init_from=str(other), lora=LORA)
    with pytest.raises(CheckpointError, match="was trained on the base") as err:
        fit(wrong, tmp_path / "c", 4, ckpt_path=half)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="was trained on the base"):
        load_pretrained(other, adapter=half)
    with pytest.raises(CheckpointError, match="holds LoRA adapters only"):
        load_pretrained(half)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_base_plus_adapter_generates_as_the_merged_export(family, bases, tmp_path, capsys):
    module = tiny_module(family=family, init_from=str(bases[family]), lora=LORA, segment_duration=0.3)
    fit(module, tmp_path, 4)
    adapter = tmp_path / "step=4.ckpt"
    assert export_main([str(bases[family]), str(tmp_path / "merged"), "--adapter", str(adapter),
                        "--license", "mit"]) == 0
    assert export_main([str(bases[family]), str(tmp_path / "folder"), "--adapter", str(adapter),
                        "--adapter-only"]) == 0
    folder = tmp_path / "folder"
    assert sorted(p.name for p in folder.iterdir()) == [ADAPTER_CONFIG, ADAPTER_WEIGHTS]
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["base_model_name_or_path"]
    assert read_adapter(folder).state.keys() == read_adapter(adapter).state.keys()

    def tokens(ckpt, adapter=None):
        gen = MagnetGenerator.from_pretrained(ckpt, device="cpu", codec=False, text_encoder=module.text_encoder,
                                              adapter=adapter, fast=False)
        return gen.generate(["calm piano", "fast drums"], duration=0.3, seed=0, decode_audio=False,
                            use_sampling=False).tokens

    merged = tokens(tmp_path / "merged")
    assert torch.equal(tokens(bases[family], adapter), merged)
    assert torch.equal(tokens(bases[family], folder), merged)
    assert not torch.equal(tokens(bases[family]), merged) or family != FAMILY_NAMES[0]
    other = save_base(tiny_module(family=family, seed=7), tmp_path / "other.ckpt")
    with pytest.raises(SystemExit):
        export_main([str(other), str(tmp_path / "bad"), "--adapter", str(folder), "--adapter-only"])
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: adapter") and "was trained on the base" in message and "\n" not in message
    assert not (tmp_path / "bad").exists()


def test_adapter_size_of_a_demo_sized_model():
    """The demo's model (dim 256, 4 layers) with rank 8 on every projection: the adapters are a small fraction."""
    model = tiny_module(model=dict(dim=256, num_heads=4, num_layers=4, ffn_dim=1024, num_codebooks=4,
                                   codebook_size=2048, text_dim=32)).model
    base = sum(p.numel() for p in model.parameters())
    apply_lora(model, LoraConfig(rank=8))
    adapters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert adapters == 4 * (8 * 8 * (256 + 256) + 2 * 8 * (256 + 1024))  # 4 layers x (8 square + 2 FFN) x r (I + O)
    assert adapters / base < 0.05


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_activation_checkpointing_gives_the_same_adapter_gradients(family, bases):
    module = tiny_module(family=family, init_from=str(bases[family]), lora=LORA)
    for name, param in module.model.named_parameters():
        if ".lora_B." in name:
            torch.nn.init.normal_(param, 0, 0.1)
    args = inputs(module)
    grads = []
    for recompute in (False, True):
        module.model.transformer.activation_checkpointing = recompute
        module.model.zero_grad()
        logits(module.model, *args).logsumexp(-1).mean().backward()
        grads.append({n: p.grad.clone() for n, p in module.model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)
