"""Front-ends: waveform ``(batch, samples)`` at 16 kHz -> features, on the input's device.

- :class:`LogMel`: 64-bin log-Mel as in the paper's ResNet (n_fft 1024, hop 512, padded
  with zeros to 224 frames) -> ``(batch, n_mels, frames)``.
- :class:`LFCC`: the LFCC of the ASVspoof 2019 baseline, exactly as ``shared/docs/DATA.md``
  states it (pre-emphasis 0.97, 320/160 frames without centring, symmetric Hamming,
  |FFT 512|^2, 20 linear filters over 0-8 kHz, log10(x + eps), orthonormal DCT-II keeping
  all 20 coefficients, deltas and delta-deltas) -> ``(batch, 60, frames)``; 403 frames for
  64,600 samples. This is *not* ``torchaudio.transforms.LFCC`` with its defaults.
- :class:`Cepstrum`: the LC-GRNN authors' cepstral features: the orthonormal DCT-II of the
  log power spectrum (Hann window, n_fft 1024, hop 512, centred; all 513 bins, no
  filterbank), first 20 coefficients, no deltas -> ``(batch, 20, frames)``; about 31 frames
  per second (127 for 64,600 samples).
- :class:`Raw`: the waveform itself.

Front-ends hold no parameters and are part of each backbone (``backbone.frontend``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torchaudio
from torch import nn

from growsearch.errors import ConfigError
from growsearch.vocabulary import SAMPLE_RATE

EPS = 2.220446049250313e-16  # float64 machine epsilon, as Matlab's eps in the baseline


class LogMel(nn.Module):
    """Log-Mel spectrogram. Shapes: ``(batch, samples)`` -> ``(batch, n_mels, frames)``."""

    def __init__(self, *, n_mels: int = 64, n_fft: int = 1024, hop_length: int = 512, pad_frames: int | None = 224) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.pad_frames = pad_frames
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = torch.log(self.mel(wave) + 1e-6)
        if self.pad_frames is not None:
            t = x.shape[-1]
            if t < self.pad_frames:
                x = nn.functional.pad(x, (0, self.pad_frames - t))
            elif t > self.pad_frames:
                x = x[..., : self.pad_frames]
        return x


class LFCC(nn.Module):
    """ASVspoof 2019 baseline LFCC with deltas. ``(batch, samples)`` -> ``(batch, 60, frames)``."""

    window: torch.Tensor  # buffers (registered in __init__)
    fbank: torch.Tensor
    dct: torch.Tensor

    def __init__(self, *, n_filter: int = 20, n_lfcc: int = 20, win_length: int = 320, hop_length: int = 160,
                 n_fft: int = 512, preemphasis: float = 0.97, deltas: bool = True) -> None:
        super().__init__()
        self.win_length, self.hop_length, self.n_fft = win_length, hop_length, n_fft
        self.preemphasis = preemphasis
        self.deltas = deltas
        self.register_buffer("window", torch.hamming_window(win_length, periodic=False), persistent=False)
        fb = torchaudio.functional.linear_fbanks(n_fft // 2 + 1, 0.0, SAMPLE_RATE / 2, n_filter, SAMPLE_RATE)
        self.register_buffer("fbank", fb, persistent=False)  # (freqs, n_filter)
        dct = torchaudio.functional.create_dct(n_lfcc, n_filter, norm="ortho")  # (n_filter, n_lfcc)
        self.register_buffer("dct", dct, persistent=False)

    @staticmethod
    def n_frames(samples: int, win_length: int = 320, hop_length: int = 160) -> int:
        return max(1, math.ceil((samples - win_length) / hop_length) + 1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = torch.cat([wave[..., :1], wave[..., 1:] - self.preemphasis * wave[..., :-1]], dim=-1)
        t = self.n_frames(x.shape[-1], self.win_length, self.hop_length)
        need = (t - 1) * self.hop_length + self.win_length
        if need > x.shape[-1]:
            x = nn.functional.pad(x, (0, need - x.shape[-1]))
        frames = x.unfold(-1, self.win_length, self.hop_length) * self.window  # (B, T, win)
        power = torch.fft.rfft(frames, n=self.n_fft).abs() ** 2  # (B, T, freqs)
        spec = torch.log10(power @ self.fbank + EPS)  # (B, T, n_filter)
        c = (spec @ self.dct).transpose(-1, -2)  # (B, n_lfcc, T)
        if not self.deltas:
            return c
        d = _delta(c)
        return torch.cat([c, d, _delta(d)], dim=-2)


def _delta(c: torch.Tensor) -> torch.Tensor:
    """c[t+1] - c[t-1] along the last dim, edges replicated."""
    p = torch.cat([c[..., :1], c, c[..., -1:]], dim=-1)
    return p[..., 2:] - p[..., :-2]


class Cepstrum(nn.Module):
    """DCT of the log power spectrum. ``(batch, samples)`` -> ``(batch, n_ceps, frames)``."""

    dct: torch.Tensor  # buffer (registered in __init__)

    def __init__(self, *, n_ceps: int = 20, n_fft: int = 1024, hop_length: int = 512) -> None:
        super().__init__()
        self.n_ceps, self.n_fft, self.hop_length = n_ceps, n_fft, hop_length
        self.spec = torchaudio.transforms.Spectrogram(n_fft=n_fft, hop_length=hop_length, power=2.0)
        dct = torchaudio.functional.create_dct(n_ceps, n_fft // 2 + 1, norm="ortho")  # (bins, n_ceps)
        self.register_buffer("dct", dct, persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.log(self.spec(wave) + 1e-6)  # (B, bins, T)
        return (spec.transpose(-1, -2) @ self.dct).transpose(-1, -2)  # (B, n_ceps, T)


class Raw(nn.Module):
    """The waveform unchanged: ``(batch, samples)`` -> ``(batch, samples)``."""

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return wave


_FRONTENDS = {"logmel": LogMel, "lfcc": LFCC, "cepstrum": Cepstrum, "raw": Raw}


def create_frontend(kind: str, **kwargs: Any) -> nn.Module:
    """Build a front-end by name (``logmel``, ``lfcc``, ``cepstrum``, ``raw``).

    Front-ends have no parameters and are always built on the CPU (their filterbanks are
    computed, which a ``meta`` device cannot do), so a backbone can be built on ``meta`` to
    count its parameters without allocating them.

    Raises:
        ConfigError: unknown name or option.
    """
    if kind not in _FRONTENDS:
        raise ConfigError(f"unknown front-end {kind!r}; valid: {', '.join(sorted(_FRONTENDS))}")
    try:
        with torch.device("cpu"):
            return _FRONTENDS[kind](**kwargs)
    except TypeError as exc:
        raise ConfigError(f"front-end {kind!r}: bad option: {exc}") from None
