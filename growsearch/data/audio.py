"""Reading audio files and cutting them to a fixed length.

Decisions (documented for users):

- Audio is read with ``soundfile`` as float32 in [-1, 1].
- Channels: mono is used as is; **stereo is downmixed** (mean of the two channels);
  more than two channels is a :class:`~growsearch.errors.DataError` (no guess about
  which channel holds the speech).
- Sample rate: 16 kHz is used as is; any rate in [:data:`MIN_RATE`, :data:`MAX_RATE`]
  is resampled to 16 kHz with ``torchaudio.functional.resample``; other rates are a
  DataError.
- Fixed length L as the public baselines do it (``shared/docs/DATA.md``): a clip longer
  than L is cropped (train: random start ``randint(len - L + 1)``; dev/eval: the first L
  samples); a shorter one is repeated (tiled) and truncated. Never zero-padded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from growsearch.errors import DataError
from growsearch.vocabulary import SAMPLE_RATE

MIN_RATE = 4_000
MAX_RATE = 192_000
MAX_CHANNELS = 2


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says."""

    frames: int
    sample_rate: int
    channels: int


def check_audio(path: str | Path) -> AudioInfo:
    """Read a file's header and check it can be used (cheap; no decoding).

    Raises:
        DataError: missing, unreadable or not audio, empty, more than two channels, or a
            sample rate outside [MIN_RATE, MAX_RATE]. The message names the file.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: audio file is missing")
    try:
        with sf.SoundFile(str(p)) as h:  # header only; ~3x faster than sf.info
            out = AudioInfo(frames=int(h.frames), sample_rate=int(h.samplerate), channels=int(h.channels))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise DataError(f"{p}: cannot read audio: {_short(exc)}") from None
    _check_info(p, out)
    return out


def _check_info(p: Path, info: AudioInfo) -> None:
    if info.frames <= 0:
        raise DataError(f"{p}: audio file is empty (0 samples)")
    if info.channels < 1 or info.channels > MAX_CHANNELS:
        raise DataError(f"{p}: {info.channels} channels; expected mono (1) or stereo (2, downmixed)")
    if not MIN_RATE <= info.sample_rate <= MAX_RATE:
        raise DataError(
            f"{p}: sample rate {info.sample_rate} Hz cannot be handled; expected 16000 Hz or "
            f"a rate in [{MIN_RATE}, {MAX_RATE}] to resample"
        )


def read_audio(path: str | Path) -> np.ndarray:
    """Decode a file to a mono 16 kHz float32 waveform.

    Returns:
        ``(samples,)`` float32 array at 16 kHz.

    Raises:
        DataError: as :func:`check_audio`, or the data cannot be decoded (corrupt or
            truncated file).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: audio file is missing")
    try:
        h = sf.SoundFile(str(p))
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        raise DataError(f"{p}: cannot decode audio: {_short(exc)}") from None
    with h:
        expected, rate = int(h.frames), int(h.samplerate)
        try:
            data = h.read(dtype="float32", always_2d=True)  # (frames, channels)
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:  # header fine, data not
            raise DataError(f"{p}: cannot decode audio: the audio data is truncated or corrupt ({_short(exc)})") from None
    if 0 < data.shape[0] < expected:  # cut at a frame boundary: decodes, but short of the header's count
        raise DataError(f"{p}: cannot decode audio: truncated (the header says {expected} samples, "
                        f"{data.shape[0]} could be decoded)")
    _check_info(p, AudioInfo(frames=data.shape[0], sample_rate=int(rate), channels=data.shape[1]))
    wave = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    if not np.all(np.isfinite(wave)):
        raise DataError(f"{p}: audio contains NaN or Inf samples")
    if rate != SAMPLE_RATE:
        wave = resample(wave, int(rate))
    return np.ascontiguousarray(wave, dtype=np.float32)


def resample(wave: np.ndarray, rate: int) -> np.ndarray:
    """Resample ``(samples,)`` from ``rate`` to 16 kHz (band-limited sinc interpolation)."""
    t = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), rate, SAMPLE_RATE)
    return t.numpy()


def fix_length(wave: np.ndarray, length: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Cut or tile a waveform to exactly ``length`` samples.

    Args:
        wave: ``(samples,)``, at least one sample.
        length: L, the output length.
        rng: for training, a generator that draws the crop start
            ``rng.integers(len - L + 1)``; None takes the first L samples (dev/eval).

    Returns:
        ``(length,)``: a crop of ``wave`` if it is at least L long, else ``wave`` repeated
        and truncated (never zero-padded).
    """
    n = wave.shape[0]
    if n == 0:
        raise ValueError("fix_length: empty waveform")
    if n < length:
        reps = -(-length // n)
        return np.tile(wave, reps)[:length]
    start = int(rng.integers(n - length + 1)) if rng is not None else 0
    return wave[start : start + length]


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
