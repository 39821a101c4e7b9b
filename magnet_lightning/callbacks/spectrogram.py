"""Mel-spectrogram pictures for experiment loggers, without matplotlib: torchaudio's MelSpectrogram in dB, a small
colour map (dark violet -> red -> yellow, interpolated between five anchor colours defined here) and, for
`spectrogram_figure`, axes drawn with Pillow: a title, a time axis in seconds, a frequency axis in Hz and a dB
colour bar, on a canvas of one fixed size whatever the clip's length (loggers show lists of pictures side by side,
and W&B refuses a list whose sizes differ)."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

# Anchor colours (RGB, 0-255) from silence to the loudest bin.
_ANCHORS = np.array([[0, 0, 4], [80, 18, 123], [182, 54, 121], [251, 136, 97], [252, 253, 191]], dtype=np.float64)
FIGURE_SIZE = (720, 300)
"""(width, height) of every `spectrogram_figure` picture."""
_MARGINS = (58, 26, 74, 38)  # left (Hz labels), top (title), right (colour bar), bottom (time labels)
_BACKGROUND, _INK = (255, 255, 255), (30, 30, 30)


def colorize(values: np.ndarray) -> np.ndarray:
    """values [H, W] in [0, 1] -> uint8 RGB [H, W, 3] (piecewise-linear between the anchor colours)."""
    scaled = np.clip(values, 0.0, 1.0) * (len(_ANCHORS) - 1)
    low = np.minimum(np.floor(scaled).astype(np.int64), len(_ANCHORS) - 2)
    frac = (scaled - low)[..., None]
    rgb = _ANCHORS[low] * (1 - frac) + _ANCHORS[low + 1] * frac
    return np.round(rgb).astype(np.uint8)


def mel_db(wav: Tensor, sample_rate: int, n_mels: int = 80, top_db: float = 80.0,
           hop_seconds: float = 0.01) -> np.ndarray:
    """wav [C, L] or [L] -> mono mel spectrogram [n_mels, frames] in dB relative to the clip's peak, clipped to
    [-top_db, 0]; row 0 is the lowest band."""
    import torchaudio

    mono = wav.detach().float().cpu()
    mono = mono.mean(0) if mono.dim() == 2 else mono
    if mono.dim() != 1:
        raise ValueError(f"Expected audio [C, L] or [L], got shape {tuple(wav.shape)}.")
    hop = max(1, int(sample_rate * hop_seconds))
    n_fft = 1 << max(8, int(np.ceil(np.log2(4 * hop))))
    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels,
                                               f_max=sample_rate / 2)(mono)  # [n_mels, frames]
    db = 10 * torch.log10(mel.clamp_min(1e-10))
    return (db - db.max()).clamp_min(-top_db).numpy()


def mel_image(wav: Tensor, sample_rate: int, n_mels: int = 80, top_db: float = 80.0,
              hop_seconds: float = 0.01) -> np.ndarray:
    """wav [C, L] or [L] -> uint8 RGB picture [n_mels, frames, 3] of the mono mel spectrogram (low bands at the
    bottom, dB scaled to the clip's own peak and clipped ``top_db`` below it); no axes."""
    db = mel_db(wav, sample_rate, n_mels, top_db, hop_seconds)
    return colorize(np.flip((db + top_db) / top_db, 0))


def _nice_step(span: float, ticks: int = 6) -> float:
    raw = span / max(ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def _hz_to_mel(hz: float) -> float:  # the HTK formula, torchaudio's default mel scale
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def spectrogram_figure(wav: Tensor, sample_rate: int, title: str = "", n_mels: int = 80,
                       top_db: float = 80.0, size: tuple[int, int] = FIGURE_SIZE) -> np.ndarray:
    """wav [C, L] or [L] -> uint8 RGB picture [height, width, 3] of `size`: the mel spectrogram stretched over a
    fixed plot area, with `title`, a time axis (s), a frequency axis (Hz, mel-spaced) and a colour bar in dB
    relative to the clip's peak."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = size
    left, top, right, bottom = _MARGINS
    plot_w, plot_h = width - left - right, height - top - bottom
    seconds = wav.shape[-1] / sample_rate
    picture = Image.fromarray(mel_image(wav, sample_rate, n_mels, top_db)).resize((plot_w, plot_h),
                                                                                    Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    canvas.paste(picture, (left, top))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=11)
    draw.rectangle((left - 1, top - 1, left + plot_w, top + plot_h), outline=_INK)
    _title(draw, font, title, width)
    _time_axis(draw, font, seconds, left, top + plot_h, plot_w)
    _frequency_axis(draw, font, sample_rate / 2, left, top, plot_h)
    _colour_bar(canvas, draw, font, top_db, left + plot_w + 12, top, plot_h)
    return np.asarray(canvas)


def _title(draw, font, title: str, width: int) -> None:
    text, cut = title.strip(), False
    while text and draw.textlength(text + ("…" if cut else ""), font=font) > width - 16:
        text, cut = text[:-1], True
    draw.text((8, 6), text + ("…" if cut else ""), fill=_INK, font=font)


def _time_axis(draw, font, seconds: float, x0: int, y0: int, plot_w: int) -> None:
    step = _nice_step(seconds)
    for i in range(int(seconds / step + 1e-6) + 1):
        t = i * step
        x = x0 + round(t / seconds * (plot_w - 1)) if seconds > 0 else x0
        draw.line((x, y0, x, y0 + 4), fill=_INK)
        label = f"{t:g}"
        draw.text((x - draw.textlength(label, font=font) / 2, y0 + 6), label, fill=_INK, font=font)
    caption = "time (s)"
    draw.text((x0 + plot_w - draw.textlength(caption, font=font), y0 + 20), caption, fill=_INK, font=font)


def _frequency_axis(draw, font, nyquist: float, x0: int, y0: int, plot_h: int) -> None:
    top_mel = _hz_to_mel(nyquist)
    for hz in (100, 500, 1000, 2000, 4000, 8000, 16000):
        if hz >= nyquist:
            break
        y = y0 + plot_h - 1 - round(_hz_to_mel(hz) / top_mel * (plot_h - 1))
        draw.line((x0 - 5, y, x0 - 1, y), fill=_INK)
        label = f"{hz // 1000}k" if hz >= 1000 else str(hz)
        draw.text((x0 - 8 - draw.textlength(label, font=font), y - 6), label, fill=_INK, font=font)
    draw.text((4, y0 + plot_h + 6), "Hz", fill=_INK, font=font)


def _colour_bar(canvas, draw, font, top_db: float, x0: int, y0: int, plot_h: int, bar_w: int = 12) -> None:
    from PIL import Image

    ramp = colorize(np.linspace(1.0, 0.0, plot_h)[:, None].repeat(bar_w, 1))
    canvas.paste(Image.fromarray(ramp), (x0, y0))
    draw.rectangle((x0 - 1, y0 - 1, x0 + bar_w, y0 + plot_h), outline=_INK)
    step = _nice_step(top_db, 4)
    for i in range(int(top_db / step + 1e-6) + 1):
        y = y0 + round(i * step / top_db * (plot_h - 1))
        draw.line((x0 + bar_w, y, x0 + bar_w + 3, y), fill=_INK)
        draw.text((x0 + bar_w + 5, y - 6), f"{-i * step:g}", fill=_INK, font=font)
    draw.text((x0 - 4, y0 + plot_h + 6), "dB re peak", fill=_INK, font=font)
