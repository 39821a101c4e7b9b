"""Frozen audio codecs that turn waveforms into RVQ token ids and back.

Two EnCodec families sit behind one interface (`Codec`):

- `HFEncodecCodec`: `transformers.EncodecModel`, e.g. ``facebook/encodec_32khz`` (the codec of music MAGNeT:
  32 kHz mono, hop 640, 50 Hz, 4 codebooks x 2048), loaded by hub id (HF cache) or local directory.
- `EncodecPackageCodec`: the ``encodec`` pip package's own 24 kHz / 48 kHz models (weights in the torch hub cache).

audiocraft-format codecs (``compression_state_dict.bin``, e.g. Audio-MAGNeT's 16 kHz one) are rebuilt as
`transformers.EncodecModel` (codec/audiocraft.py) and served by `HFEncodecCodec`. ``stereo:NAME`` wraps any mono
codec as audiocraft's interleaved stereo codec (stereo.py). The interface, `Codec` and `convert_audio`, is in
base.py.

Shapes: B batch, C channels, N samples, K codebooks, T frames, V codebook size.
Heavy libraries are imported inside the functions that need them.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from magnet_lightning.checkpoint import hub
from magnet_lightning.codec.audiocraft import build_encodec, read_compression_state
from magnet_lightning.codec.base import Codec, convert_audio  # noqa: F401  (re-exported: the public names)
from magnet_lightning.codec.stereo import InterleavedStereoCodec
from magnet_lightning.utils.codec_names import is_stereo, mono_name
from magnet_lightning.utils.provenance import is_random_folder, looks_local
from magnet_lightning.utils.safe_load import load_tensors

DEFAULT_CODEC = "facebook/encodec_32khz"

# File names the `encodec` package downloads through torch.hub for pretrained=True.
_ENCODEC_PKG_WEIGHTS = {
    "encodec_24khz": "encodec_24khz-d7cc33bc.th",
    "encodec_48khz": "encodec_48khz-7e698e3e.th",
}


class HFEncodecCodec(Codec):
    """`transformers.EncodecModel` at one bandwidth (the 32 kHz music codec has one: 2.2 kbps = 4 codebooks).

    Chunked models (config.chunk_length set, e.g. ``facebook/encodec_48khz``) produce overlapping 1-s frames with a
    scale each, which do not form one token stream; they are refused with a clear error.
    """

    def __init__(self, model, name: str, bandwidth: float | None = None):
        super().__init__()
        cfg = model.config
        if cfg.chunk_length is not None or cfg.normalize:
            raise ValueError(
                f"codec {name!r} encodes overlapping chunks with per-chunk scales (chunk_length={cfg.chunk_length}, "
                f"normalize={cfg.normalize}); its tokens are not one stream a language model can learn. "
                "Use a non-chunked EnCodec such as facebook/encodec_32khz or facebook/encodec_24khz."
            )
        self.model = model
        self.bandwidth = float(bandwidth if bandwidth is not None else cfg.target_bandwidths[0])
        if self.bandwidth not in [float(b) for b in cfg.target_bandwidths]:
            raise ValueError(f"bandwidth {self.bandwidth} not in {cfg.target_bandwidths} for {name!r}")
        self.name = name if bandwidth is None else f"{name}@{self.bandwidth:g}kbps"
        self.sample_rate = int(cfg.sampling_rate)
        self.channels = int(cfg.audio_channels)
        self.frame_rate = float(cfg.frame_rate)
        self.num_codebooks = int(model.quantizer.get_num_quantizers_for_bandwidth(self.bandwidth))
        self.codebook_size = int(cfg.codebook_size)
        self.latent_dim = int(cfg.hidden_size)
        self._freeze()

    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        out = self.model.encode(wav, bandwidth=self.bandwidth, return_dict=True)
        return out.audio_codes[0]  # (chunks=1, B, K, T) -> [B, K, T]

    def _latents(self, wav: torch.Tensor) -> torch.Tensor:
        return self.model.encoder(wav)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        codes = codes.to(self.device).long()
        out = self.model.decode(codes[None], [None], return_dict=True)
        return out.audio_values


class EncodecPackageCodec(Codec):
    """A model of the ``encodec`` pip package (`encodec.EncodecModel`) at one target bandwidth.

    The 24 kHz model (75 Hz, V=1024, K=2/4/8/16/32 for 1.5/3/6/12/24 kbps) is supported. The 48 kHz model encodes
    overlapping 1-s segments each with its own loudness scale; it is refused with a clear error.
    """

    def __init__(self, model, bandwidth: float | None = None):
        super().__init__()
        if model.segment is not None or model.normalize:
            raise ValueError(
                f"encodec model {model.name!r} uses {model.segment}-s segments with per-segment scales "
                "(normalize=True): its tokens are not one continuous stream and the scales are not stored in "
                "shards. Use encodec_24khz or an HF EnCodec such as facebook/encodec_32khz."
            )
        bandwidth = float(bandwidth if bandwidth is not None else model.target_bandwidths[-1])
        if bandwidth not in [float(b) for b in model.target_bandwidths]:
            raise ValueError(f"bandwidth {bandwidth} not in {model.target_bandwidths} for {model.name!r}")
        model.set_target_bandwidth(bandwidth)
        self.model = model
        self.bandwidth = bandwidth
        self.name = f"encodec-pkg:{model.name}@{bandwidth:g}kbps"
        self.sample_rate = int(model.sample_rate)
        self.channels = int(model.channels)
        self.frame_rate = float(model.frame_rate)
        self.num_codebooks = int(model.quantizer.get_num_quantizers_for_bandwidth(model.frame_rate, bandwidth))
        self.codebook_size = int(model.quantizer.bins)
        self.latent_dim = int(model.quantizer.dimension)
        self._freeze()

    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        (codes, _scale), = self.model.encode(wav)
        return codes

    def _latents(self, wav: torch.Tensor) -> torch.Tensor:
        return self.model.encoder(wav)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode([(codes.to(self.device).long(), None)])


def _load_hf_encodec(name_or_path: str, bandwidth: float | None, device: str | torch.device) -> HFEncodecCodec:
    from transformers import EncodecModel

    local = Path(name_or_path).expanduser()
    if not local.is_dir() and looks_local(name_or_path):
        raise FileNotFoundError(f"codec folder {name_or_path} not found (looked in {local.resolve()}): pass the "
                                "folder that holds the codec's config.json and model.safetensors")
    try:
        model = EncodecModel.from_pretrained(str(local) if local.is_dir() else name_or_path)
    except (OSError, ValueError) as e:
        hf_home = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
        raise FileNotFoundError(
            f"EnCodec weights for {name_or_path!r} are not available locally ({type(e).__name__}: {e}). "
            f"Download them on a machine with internet, e.g. `hf download {name_or_path}`, and copy "
            f"the HF cache to {hf_home}/hub (or set HF_HOME), or pass a local directory holding config.json and "
            "model.safetensors (from EncodecModel.save_pretrained)."
        ) from e
    name = local.name if local.is_dir() else name_or_path
    codec = HFEncodecCodec(model, name=f"hf-encodec:{name}", bandwidth=bandwidth)
    codec.source = str(local.resolve()) if local.is_dir() else name_or_path
    codec.random_weights = local.is_dir() and is_random_folder(local)
    return codec.to(device)


def _load_encodec_package(name: str, bandwidth: float | None, device: str | torch.device) -> EncodecPackageCodec:
    """The package's architecture with its weights read from the torch hub cache: never downloaded, data only."""
    import encodec


    builder = {"encodec_24khz": encodec.EncodecModel.encodec_model_24khz,
               "encodec_48khz": encodec.EncodecModel.encodec_model_48khz}[name]
    url = f"https://dl.fbaipublicfiles.com/encodec/v0/{_ENCODEC_PKG_WEIGHTS[name]}"
    ckpt = Path(torch.hub.get_dir()) / "checkpoints" / _ENCODEC_PKG_WEIGHTS[name]
    if not ckpt.is_file():
        raise FileNotFoundError(
            f"weights of the encodec package model {name!r} are missing (nothing is downloaded implicitly). "
            f"Download {url} and put it at {ckpt} (torch hub cache: $TORCH_HOME/hub/checkpoints)."
        )
    model = builder(pretrained=False)
    model.load_state_dict(load_tensors(ckpt, source=url))
    model.name = name
    return EncodecPackageCodec(model, bandwidth=bandwidth).to(device)


def _load_audiocraft_codec(path: Path, name: str, bandwidth: float | None, device: str | torch.device) -> Codec:

    pkg = read_compression_state(path)
    if "pretrained" in pkg:  # the file only names a transformers model, e.g. facebook/encodec_32khz
        return load_codec(str(pkg["pretrained"]), bandwidth, device)
    model = build_encodec(pkg, str(path))
    return HFEncodecCodec(model, name=f"audiocraft-encodec:{name}", bandwidth=bandwidth).to(device)


def load_codec(name_or_path: str = DEFAULT_CODEC, bandwidth: float | None = None,
               device: str | torch.device = "cpu") -> Codec:
    """Load a frozen codec by name.

    Args:
        name_or_path: ``encodec_24khz`` / ``encodec_48khz`` (the ``encodec`` package; weights in the torch hub
            cache); an HF hub id (``facebook/encodec_32khz``, the default) or a local directory of an HF EnCodec;
            an audiocraft ``compression_state_dict.bin`` file, or a released audiocraft repo id whose
            ``compression_state_dict.bin`` holds the codec (e.g. ``facebook/audio-magnet-small``, the 16 kHz
            AudioGen EnCodec); ``stereo:NAME``: the mono codec NAME applied to the left and the right channel, its
            codebooks interleaved per channel (audiocraft's stereo models, e.g. ``stereo:facebook/encodec_32khz``).
        bandwidth: target bandwidth in kbps (chooses K); None = the HF model's first / the package model's largest.
        device: where to put the model.
    """

    if is_stereo(name_or_path):  # stereo:NAME, the mono codec NAME on each channel (codec/stereo.py)
        return InterleavedStereoCodec(load_codec(mono_name(name_or_path), bandwidth, device))
    if name_or_path in _ENCODEC_PKG_WEIGHTS:
        return _load_encodec_package(name_or_path, bandwidth, device)
    path = hub.expand(name_or_path)
    if path.is_file():
        return _load_audiocraft_codec(path, path.parent.name or path.stem, bandwidth, device)
    if name_or_path in hub.RELEASED:
        return _load_audiocraft_codec(hub.fetch(name_or_path, hub.CODEC_FILE), name_or_path, bandwidth, device)
    if path.suffix in (".bin", ".th", ".pt"):
        raise FileNotFoundError(
            f"codec file {path} not found. audiocraft's codecs are published as {hub.CODEC_FILE} beside the model's "
            f"state_dict.bin, e.g. `{hub.download_command('facebook/audio-magnet-small', hub.CODEC_FILE)}` for "
            f"Audio-MAGNeT's 16 kHz EnCodec; put it at {path} or pass its path with --codec"
        )
    return _load_hf_encodec(name_or_path, bandwidth, device)
