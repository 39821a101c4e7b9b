"""Procedural music for the CPU demo: melodies, chord pads, bass and drum patterns, each track with a caption that
states its instrument, tempo, key and mood (numpy only, deterministic in its seed).

A track is drawn from a `TrackSpec` (the musical choices) and rendered to a mono float32 waveform [N] in [-1, 1].
Moods steer the choices (major/minor, tempo range, drums or not, brightness), so captions and audio agree: a model
trained on these pairs can learn that "sad ... minor ... slow" sounds different from "energetic ... drums ...".
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import numpy as np

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
# Chord progressions as scale degrees (0-based) of the mode.
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 0), (0, 5, 3, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 4)),
}
MELODY_INSTRUMENTS = ("piano", "organ", "synth lead", "bells", "plucked guitar", "flute")
PAD_INSTRUMENTS = ("strings", "warm pad", "electric piano")
# mood -> (mode, bpm range, drum probability, genre words)
MOODS = {
    "happy": ("major", (110, 140), 0.8, ("pop", "upbeat")),
    "calm": ("major", (66, 90), 0.1, ("ambient", "lullaby")),
    "sad": ("minor", (60, 84), 0.2, ("ballad", "melancholic")),
    "energetic": ("minor", (124, 150), 1.0, ("electronic", "dance")),
    "mysterious": ("minor", (80, 104), 0.5, ("cinematic", "dark")),
}


@dataclass
class TrackSpec:
    """The musical choices of one track (all captions and metadata derive from it)."""

    mood: str
    mode: str
    tonic: int
    bpm: int
    melody: str
    pad: str
    drums: bool
    genre: str
    progression: tuple[int, ...]
    seed: int

    @property
    def key(self) -> str:
        return f"{NOTE_NAMES[self.tonic]} {self.mode}"

    def caption(self, mix: str = "full") -> str:
        if mix == "melody":
            return f"{self.mood} {self.genre} music: a solo {self.melody} melody, {self.bpm} bpm, in {self.key}"
        drums = "with a steady drum beat" if self.drums else "without drums"
        return (f"{self.mood} {self.genre} music: a {self.melody} melody over {self.pad} chords and bass, {drums}, "
                f"{self.bpm} bpm, in {self.key}")

    def metadata(self) -> dict:
        """Fields read by the music text augmentation (key, bpm, genre, moods, instrument, keywords)."""
        return {"key": self.key, "bpm": self.bpm, "genre": self.genre, "moods": [self.mood],
                "instrument": [self.melody, self.pad] + (["drums"] if self.drums else []),
                "keywords": ["synthetic", "demo"], "spec": asdict(self)}


def draw_spec(seed: int) -> TrackSpec:
    """A random but mood-consistent TrackSpec from an integer seed."""
    rng = random.Random(seed)
    mood = rng.choice(sorted(MOODS))
    mode, (lo, hi), drum_p, genres = MOODS[mood]
    return TrackSpec(mood=mood, mode=mode, tonic=rng.randrange(12), bpm=rng.randrange(lo, hi + 1, 2),
                     melody=rng.choice(MELODY_INSTRUMENTS), pad=rng.choice(PAD_INSTRUMENTS),
                     drums=rng.random() < drum_p, genre=rng.choice(genres),
                     progression=rng.choice(PROGRESSIONS[mode]), seed=seed)


def _midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _tone(instrument: str, hz: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One note of `instrument` at `hz`, `n` samples, with its envelope: [n] float32."""
    t = np.arange(n) / sr
    if instrument == "piano":
        wave = sum(np.sin(2 * np.pi * hz * h * t) / h**1.5 for h in range(1, 7))
        env = np.exp(-3.0 * t)
    elif instrument == "organ":
        wave = sum(np.sin(2 * np.pi * hz * h * t) * a for h, a in ((1, 1), (2, 0.6), (3, 0.4), (4, 0.25), (8, 0.1)))
        env = np.minimum(1.0, t / 0.02)
    elif instrument == "synth lead":  # band-limited saw
        wave = sum(np.sin(2 * np.pi * hz * h * t) / h for h in range(1, int(min(20, 12000 / hz))))
        env = np.minimum(1.0, t / 0.01) * np.exp(-1.0 * t)
    elif instrument == "bells":  # two-operator FM, inharmonic
        wave = np.sin(2 * np.pi * hz * t + 2.5 * np.exp(-2 * t) * np.sin(2 * np.pi * hz * 3.5 * t))
        env = np.exp(-2.2 * t)
    elif instrument == "plucked guitar":  # Karplus-Strong
        period = max(2, int(sr / hz))
        buf = rng.uniform(-1, 1, period)
        periods = []
        for _ in range(n // period + 1):  # each period is the previous one averaged with its neighbour (low-pass)
            periods.append(buf)
            buf = 0.498 * (buf + np.roll(buf, -1))
        wave = np.concatenate(periods)[:n]
        env = np.ones(n)
    elif instrument == "flute":
        vib = 1 + 0.004 * np.sin(2 * np.pi * 5 * t)
        wave = np.sin(2 * np.pi * hz * vib * t) + 0.15 * np.sin(4 * np.pi * hz * t) + 0.03 * rng.standard_normal(n)
        env = np.minimum(1.0, t / 0.06)
    elif instrument in ("strings", "warm pad"):
        detune = (1.0, 1.004, 0.996)
        wave = sum(np.sin(2 * np.pi * hz * d * h * t) / h**(2 if instrument == "warm pad" else 1.2)
                   for d in detune for h in range(1, 5))
        env = np.minimum(1.0, t / 0.25)
    elif instrument == "electric piano":
        wave = np.sin(2 * np.pi * hz * t + 0.8 * np.exp(-4 * t) * np.sin(2 * np.pi * hz * t))
        env = np.exp(-1.5 * t)
    elif instrument == "bass":
        wave = np.sin(2 * np.pi * hz * t) + 0.3 * np.sin(4 * np.pi * hz * t)
        env = np.minimum(1.0, t / 0.01) * np.exp(-1.2 * t)
    else:
        raise ValueError(f"unknown instrument {instrument!r}")
    release = np.minimum(1.0, (n - np.arange(n)) / max(1, int(0.01 * sr)))  # no clicks at note ends
    return (wave * env * release).astype(np.float32)


def _drum(kind: str, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.25 * sr)
    t = np.arange(n) / sr
    if kind == "kick":
        phase = 2 * np.pi * np.cumsum(50 + 100 * np.exp(-30 * t)) / sr
        return (np.sin(phase) * np.exp(-12 * t)).astype(np.float32)
    if kind == "snare":
        noise = rng.standard_normal(n) * np.exp(-18 * t)
        return (0.6 * noise + 0.5 * np.sin(2 * np.pi * 190 * t) * np.exp(-25 * t)).astype(np.float32)
    noise = np.diff(rng.standard_normal(n + 1))  # hi-hat: differenced noise = high-passed
    return (0.3 * noise * np.exp(-60 * t)).astype(np.float32)


def _add(track: np.ndarray, sound: np.ndarray, start: int, gain: float) -> None:
    end = min(len(track), start + len(sound))
    if end > start:
        track[start:end] += gain * sound[: end - start]


MIXES = ("full", "melody")
"""What a track holds: 'full' (melody, chords, bass, drums) or 'melody' (the melody line alone)."""


def render(spec: TrackSpec, duration: float, sample_rate: int = 32000, mix: str = "full") -> np.ndarray:
    """Render `spec` for `duration` seconds: float32 [N], peak-normalised to 0.9. `mix` 'melody' renders the melody
    line alone (the same notes as in the full mix)."""
    if mix not in MIXES:
        raise ValueError(f"mix={mix!r}: choose one of {MIXES}")
    rng = np.random.default_rng(spec.seed)
    pick = random.Random(spec.seed + 1)
    n = int(duration * sample_rate)
    track = np.zeros(n, dtype=np.float32)
    beat = 60.0 / spec.bpm
    scale = MAJOR if spec.mode == "major" else MINOR
    root = 48 + spec.tonic  # C3 + tonic
    num_beats = int(np.ceil(duration / beat))
    for bar in range(num_beats // 4 + 1 if mix == "full" else 0):  # one chord per 4-beat bar
        degree = spec.progression[bar % len(spec.progression)]
        start = int(bar * 4 * beat * sample_rate)
        length = int(4 * beat * sample_rate)
        for i in (0, 2, 4):  # triad
            note = root + 12 + scale[(degree + i) % 7] + 12 * ((degree + i) // 7)
            _add(track, _tone(spec.pad, _midi_hz(note), length, sample_rate, rng), start, 0.08)
        _add(track, _tone("bass", _midi_hz(root - 12 + scale[degree]), length // 2, sample_rate, rng), start, 0.3)
    step = 0.5 if spec.bpm < 100 else 1.0  # melody note length in beats: 8ths at slow tempi, quarters at fast
    position, degree = 0.0, 0
    while position < num_beats:
        degree = max(-3, min(10, degree + pick.choice((-2, -1, -1, 0, 1, 1, 2, 3))))
        note = root + 24 + scale[degree % 7] + 12 * (degree // 7)
        length = step * pick.choice((1, 1, 2))
        if pick.random() > 0.15:  # some rests
            samples = int(length * beat * sample_rate)
            _add(track, _tone(spec.melody, _midi_hz(note), samples, sample_rate, rng),
                 int(position * beat * sample_rate), 0.25)
        position += length
    if spec.drums and mix == "full":
        sounds = {k: _drum(k, sample_rate, rng) for k in ("kick", "snare", "hat")}
        for b in range(num_beats):
            start = int(b * beat * sample_rate)
            _add(track, sounds["kick" if b % 2 == 0 else "snare"], start, 0.5)
            _add(track, sounds["hat"], start, 1.0)
            _add(track, sounds["hat"], start + int(beat * sample_rate / 2), 0.7)
    peak = float(np.abs(track).max())
    return (track * (0.9 / peak) if peak > 0 else track).astype(np.float32)
