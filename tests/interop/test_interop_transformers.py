"""transformers' MusicGen and peft as the clients: a tiny `MusicgenForConditionalGeneration` built from transformers'
own config classes (random weights, no download) converts in (from its folder, and by repo id from the Hugging Face
cache offline) with greedy tokens equal to its `generate` (guidance 3.0); our export loads with `from_pretrained`
and gives our logits; a LoRA adapter exported with --adapter-only loads with `PeftModel.from_pretrained` and gives
our base + adapter logits; another base or another architecture is one line."""

from __future__ import annotations

import os

import pytest
import torch
from support.audiocraft_files import hub_cache
from support.cli_runs import assert_one_line

from magnet_lightning.checkpoint.pretrained import load_pretrained
from magnet_lightning.cli.convert import main as convert_main
from magnet_lightning.cli.export import main as export_main
from magnet_lightning.codec.codecs import load_codec
from magnet_lightning.generation.autoregressive import ARDecodingConfig, generate
from magnet_lightning.lora.adapters import LoraConfig, apply_lora, lora_state_dict
from magnet_lightning.lora.files import Adapter, BaseIdentity, base_fingerprint, write_adapter_folder
from magnet_lightning.models.conditioning import TextEncoder

pytestmark = pytest.mark.usefixtures("one_thread")
V, K = 64, 4
PROMPTS = ["calm piano", "rainy days"]  # one length in bytes: no padding, where the two libraries agree


def tiny_musicgen(folder, seed=0):
    """A MusicgenForConditionalGeneration of tiny sizes (T5 24 wide, decoder 16, EnCodec of the 32 kHz layout) with
    random weights large enough that every projection shows in the logits, greedy generation with guidance 3.0, saved
    with its (byte-level) tokenizer and a model card naming its license."""
    from transformers import (
        ByT5Tokenizer,
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    torch.manual_seed(seed)
    config = MusicgenConfig(
        text_encoder=T5Config(vocab_size=384, d_model=24, d_kv=8, d_ff=32, num_layers=1, num_heads=2),
        audio_encoder=EncodecConfig(sampling_rate=32000, audio_channels=1, codebook_size=V, num_filters=4,
                                    hidden_size=8, codebook_dim=8, upsampling_ratios=[8, 5, 4, 4],
                                    target_bandwidths=[2.2], num_lstm_layers=1, use_causal_conv=False,
                                    normalize=False, use_conv_shortcut=False),
        decoder=MusicgenDecoderConfig(vocab_size=V, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                      ffn_dim=32, num_codebooks=K, max_position_embeddings=256, pad_token_id=V,
                                      bos_token_id=V))
    model = MusicgenForConditionalGeneration(config).eval()
    with torch.no_grad():  # transformers' init (std 0.02) leaves attention near uniform: make it matter
        for param in [*model.decoder.parameters(), *model.enc_to_dec_proj.parameters()]:
            if param.dim() == 2:
                param.normal_(0, 0.4)
    model.generation_config.update(decoder_start_token_id=V, pad_token_id=V, max_length=54, guidance_scale=3.0,
                                   do_sample=False)
    model.save_pretrained(folder)
    ByT5Tokenizer().save_pretrained(folder)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# a tiny MusicGen\n")
    return model


@pytest.fixture(scope="module")
def musicgen(tmp_path_factory):
    root = tmp_path_factory.mktemp("musicgen")
    model = tiny_musicgen(root / "src")
    assert convert_main(["transformers", str(root / "src"), str(root / "ours.ckpt")]) is None
    return model, root


def text_inputs(texts=PROMPTS):
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer()(texts, return_tensors="pt", padding=True)


def generated_codes(model, max_new_tokens=20):
    """Greedy tokens of transformers' generate (guidance 3.0): the codes it hands to its codec [B, K, T]."""
    captured, decode = [], model.audio_encoder.decode
    model.audio_encoder.decode = lambda codes, *a, **k: captured.append(codes) or decode(codes, *a, **k)
    with torch.no_grad():
        model.generate(**text_inputs(), max_new_tokens=max_new_tokens, do_sample=False, guidance_scale=3.0)
    model.audio_encoder.decode = decode
    return captured[0][0]


def transformers_logits(model, codes, pattern):
    sequence = pattern.build(codes, V)  # [B, K, S]: the delay layout both libraries feed the decoder
    with torch.no_grad():
        out = model(**text_inputs(), decoder_input_ids=sequence.reshape(-1, sequence.shape[-1]))
    return sequence, out.logits.reshape(len(PROMPTS), K, -1, V)


def our_logits(model, pretrained, sequence):
    states, mask = TextEncoder.from_pretrained(pretrained.text_encoder)(PROMPTS)
    with torch.no_grad():
        return model.forward_sequence(sequence, model.prepare_text(states, mask))


def refused(err, capsys, needle):
    """Exit code 2 and one `error:` line holding `needle`."""
    assert err.value.code == 2
    assert_one_line(capsys.readouterr().err, needle)


def relative(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_convert_in_gives_transformers_greedy_tokens_and_logits(musicgen, tmp_path, monkeypatch):
    model, root = musicgen
    ckpt = load_pretrained(root / "ours.ckpt")
    assert ckpt.model.family == "musicgen" and ckpt.decoding == {"cfg_coef": 3.0, "use_sampling": False}
    theirs = generated_codes(model)
    states, mask = TextEncoder.from_pretrained(ckpt.text_encoder)(PROMPTS)
    ours = generate(ckpt.model, states, mask, theirs.shape[-1], ARDecodingConfig(use_sampling=False, cfg_coef=3.0))
    assert torch.equal(ours, theirs)
    sequence, logits = transformers_logits(model, theirs, ckpt.model.pattern)
    assert relative(our_logits(ckpt.model, ckpt, sequence), logits) < 1e-4
    codec = load_codec(ckpt.codec)  # the repo's EnCodec, saved beside the checkpoint, decodes its tokens
    assert codec.sample_rate == 32000 and codec.decode(theirs).shape[-1] == theirs.shape[-1] * 640
    # by repo id, offline, from a Hugging Face cache laid out as `hf download` leaves it
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    hub_cache(tmp_path / "hf", "someone/musicgen-tiny", {"model": root / "src"})
    assert convert_main(["transformers", "someone/musicgen-tiny", str(tmp_path / "by_id.ckpt")]) is None
    by_id = load_pretrained(tmp_path / "by_id.ckpt")
    assert all(torch.equal(v, ckpt.model.state_dict()[k]) for k, v in by_id.model.state_dict().items())
    assert torch.load(tmp_path / "by_id.ckpt", weights_only=True)["license"] == "mit"


def test_export_out_loads_with_from_pretrained_and_gives_our_logits(musicgen, tmp_path):
    from transformers import MusicgenForConditionalGeneration

    model, root = musicgen
    out = tmp_path / "tf"
    assert export_main([str(root / "ours.ckpt"), str(out), "--format", "transformers"]) == 0  # license: the card's
    loaded = MusicgenForConditionalGeneration.from_pretrained(out).eval()
    ckpt = load_pretrained(root / "ours.ckpt")
    codes = torch.randint(0, V, (len(PROMPTS), K, 12), generator=torch.Generator().manual_seed(1))
    sequence, logits = transformers_logits(loaded, codes, ckpt.model.pattern)
    assert relative(our_logits(ckpt.model, ckpt, sequence), logits) < 1e-4
    assert torch.equal(generated_codes(loaded), generated_codes(model))  # generation config: greedy, guidance 3
    card = (out / "README.md").read_text()
    assert "license: mit" in card and "| transformers MusicGen | autoregressive |" in card


def _adapter(ckpt, folder, seed=0):
    """A 'fine-tuned' LoRA adapter of `ckpt` (B away from zero) as this project's folder; returns the adapted model."""
    model = load_pretrained(ckpt).model
    identity = BaseIdentity(str(ckpt), base_fingerprint(model))
    lora = LoraConfig(rank=4, alpha=8.0, dropout=0.0)  # every projection: q / k / v thirds, out_proj, FFN
    apply_lora(model, lora)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)
    write_adapter_folder(Adapter(lora, lora_state_dict(model), identity, model.family, "test"), folder)
    return model.eval()


def test_adapter_only_is_a_peft_adapter_with_our_logits(musicgen, tmp_path, capsys):
    from peft import PeftModel
    from transformers import MusicgenForConditionalGeneration

    _, root = musicgen
    adapted = _adapter(root / "ours.ckpt", tmp_path / "adapter")
    assert export_main([str(root / "ours.ckpt"), str(tmp_path / "base"), "--format", "transformers"]) == 0
    umask = os.umask(0o022)
    try:
        assert export_main([str(root / "ours.ckpt"), str(tmp_path / "peft"), "--format", "transformers",
                            "--adapter-only", "--adapter", str(tmp_path / "adapter")]) == 0
    finally:
        os.umask(umask)
    assert (tmp_path / "peft" / "adapter_model.safetensors").stat().st_mode & 0o777 == 0o644
    base = MusicgenForConditionalGeneration.from_pretrained(tmp_path / "base").eval()
    peft_model = PeftModel.from_pretrained(base, tmp_path / "peft").eval()
    ckpt = load_pretrained(root / "ours.ckpt")
    codes = torch.randint(0, V, (len(PROMPTS), K, 12), generator=torch.Generator().manual_seed(2))
    sequence, logits = transformers_logits(peft_model, codes, ckpt.model.pattern)
    ours = our_logits(adapted, ckpt, sequence)
    assert relative(ours, logits) < 1e-4 and relative(our_logits(ckpt.model, ckpt, sequence), logits) > 1e-2
    # the adapter on another base (its fingerprint) is one line, nothing written
    other = tmp_path / "other"
    tiny_musicgen(other, seed=5)
    convert_main(["transformers", str(other), str(tmp_path / "other.ckpt")])
    capsys.readouterr()
    with pytest.raises(SystemExit) as err:
        export_main([str(tmp_path / "other.ckpt"), str(tmp_path / "wrong"), "--format", "transformers",
                     "--adapter-only", "--adapter", str(tmp_path / "adapter")])
    refused(err, capsys, "was trained on the base")
    assert not (tmp_path / "wrong").exists()


def test_another_architecture_is_one_line(tmp_path, capsys):
    from transformers import T5Config, T5EncoderModel

    T5EncoderModel(T5Config(vocab_size=300, d_model=16, d_kv=8, d_ff=16, num_layers=1, num_heads=2)) \
        .save_pretrained(tmp_path / "t5")
    with pytest.raises(SystemExit) as err:
        convert_main(["transformers", str(tmp_path / "t5"), str(tmp_path / "x.ckpt")])
    refused(err, capsys, "is a transformers 't5' model")
    assert not (tmp_path / "x.ckpt").exists()


@pytest.mark.usefixtures("fake_hub")
def test_push_to_hub_uploads_the_transformers_folder_and_the_peft_adapter(musicgen, tmp_path, fake_hub):
    _, root = musicgen
    _adapter(root / "ours.ckpt", tmp_path / "adapter")
    assert export_main([str(root / "ours.ckpt"), str(tmp_path / "tf"), "--format", "transformers",
                        "--push-to-hub", "me/tf"]) == 0
    assert export_main([str(root / "ours.ckpt"), str(tmp_path / "peft"), "--format", "transformers",
                        "--adapter-only", "--adapter", str(tmp_path / "adapter"), "--push-to-hub", "me/peft"]) == 0
    uploads = {call[1]: call[2] for call in fake_hub if call[0] == "upload_folder"}
    assert {"config.json", "model.safetensors", "generation_config.json", "preprocessor_config.json",
            "README.md"} <= set(uploads["me/tf"])
    assert uploads["me/peft"] == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    card = (tmp_path / "peft" / "README.md").read_text()
    assert "library_name: peft" in card and "LoRA adapters (rank 4" in card and "PeftModel.from_pretrained" in card
