"""Front-ends against an independent numpy implementation of the DATA.md LFCC spec."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import scipy.signal
import torch

from growsearch.data.features import LFCC, LogMel, Raw, create_frontend
from growsearch.errors import ConfigError


def reference_lfcc(x: np.ndarray) -> np.ndarray:
    """The ASVspoof 2019 baseline LFCC as DATA.md states it, written from scratch in numpy.

    Args:
        x: ``(samples,)`` float64 at 16 kHz.

    Returns:
        ``(60, frames)``: 20 LFCC (c0 kept), 20 deltas, 20 delta-deltas.
    """
    sr, win, hop, nfft, nfilt = 16_000, 320, 160, 512, 20
    y = np.empty_like(x)
    y[0] = x[0]
    y[1:] = x[1:] - 0.97 * x[:-1]  # pre-emphasis
    t = max(1, math.ceil((len(y) - win) / hop) + 1)  # no centring; the last frame is zero-padded
    y = np.concatenate([y, np.zeros(max(0, (t - 1) * hop + win - len(y)))])
    frames = np.stack([y[i * hop : i * hop + win] for i in range(t)])  # (T, 320)
    window = scipy.signal.windows.hamming(win, sym=True)
    power = np.abs(np.fft.rfft(frames * window, n=nfft, axis=1)) ** 2  # (T, 257)
    edges = np.linspace(0, 8000, nfilt + 2)
    freqs = np.arange(nfft // 2 + 1) * sr / nfft
    fb = np.zeros((nfft // 2 + 1, nfilt))
    for m in range(nfilt):
        lo, c, hi = edges[m], edges[m + 1], edges[m + 2]
        for k, f in enumerate(freqs):
            if lo <= f <= c:
                fb[k, m] = (f - lo) / (c - lo)
            elif c < f <= hi:
                fb[k, m] = (hi - f) / (hi - c)
    spec = np.log10(power @ fb + np.finfo(np.float64).eps)  # (T, 20)
    c = scipy.fft.dct(spec, type=2, norm="ortho", axis=1)[:, :20].T  # (20, T)

    def delta(a: np.ndarray) -> np.ndarray:
        p = np.concatenate([a[:, :1], a, a[:, -1:]], axis=1)
        return p[:, 2:] - p[:, :-2]

    d = delta(c)
    return np.concatenate([c, d, delta(d)], axis=0)


@pytest.mark.parametrize("samples", [64_600, 16_000, 4_321, 320, 200])
def test_lfcc_matches_independent_reference(samples: int) -> None:
    rng = np.random.default_rng(samples)
    x = rng.uniform(-0.5, 0.5, (2, samples))
    got = LFCC()(torch.tensor(x, dtype=torch.float32)).double().numpy()
    for b in range(2):
        ref = reference_lfcc(x[b])
        assert got[b].shape == ref.shape
        np.testing.assert_allclose(got[b], ref, rtol=1e-4, atol=1e-4)  # float32 vs float64: ~6e-6 seen


def test_lfcc_frames_for_the_paper_clip_length() -> None:
    assert LFCC()(torch.zeros(1, 64_600) + 0.1).shape == (1, 60, 403)
    assert LFCC.n_frames(64_600) == 403
    assert LFCC(deltas=False)(torch.randn(3, 64_600)).shape == (3, 20, 403)


def test_lfcc_on_a_tone_peaks_in_the_right_filter() -> None:
    """A 3 kHz tone: the filter centred nearest 3 kHz carries the most energy (analytic)."""
    t = np.arange(16_000) / 16_000
    x = torch.tensor(np.sin(2 * np.pi * 3000 * t), dtype=torch.float32)[None]
    m = LFCC()
    c = m(x)[0, :20]  # (20, T) cepstra; invert the orthonormal DCT to get log filter energies
    logspec = (m.dct @ c).T  # (T, 20) == spec @ dct @ dct.T; dct is orthonormal
    centres = np.linspace(0, 8000, 22)[1:-1]
    assert int(logspec.mean(0).argmax()) == int(np.argmin(np.abs(centres - 3000)))


def test_logmel_shape() -> None:
    assert LogMel()(torch.randn(2, 64_600)).shape == (2, 64, 224)
    assert LogMel()(torch.randn(1, 16_000)).shape == (1, 64, 224)


def test_cepstrum_is_the_dct_of_the_log_power_spectrum() -> None:
    """The LC-GRNN authors' features: 20 orthonormal DCT-II coefficients of the 513-bin log power
    spectrum (Hann, n_fft 1024, hop 512, centred), no filterbank, no deltas; ~31 frames/s."""
    from growsearch.data.features import Cepstrum

    x = torch.randn(2, 64_600, generator=torch.Generator().manual_seed(0))
    c = create_frontend("cepstrum")
    assert isinstance(c, Cepstrum) and c(x).shape == (2, 20, 127) and c(x[:1, :16_000]).shape == (1, 20, 32)
    spec = torch.stft(x, 1024, 512, window=torch.hann_window(1024), return_complex=True).abs() ** 2  # (2, 513, T)
    logp = torch.log(spec + 1e-6).double()
    n = torch.arange(513, dtype=torch.float64)
    basis = torch.cos(math.pi / 513 * (n.view(-1, 1) + 0.5) * torch.arange(20, dtype=torch.float64))  # DCT-II
    basis[:, 0] *= math.sqrt(1 / 513)
    basis[:, 1:] *= math.sqrt(2 / 513)
    want = torch.einsum("bft,fk->bkt", logp, basis).float()
    torch.testing.assert_close(c(x), want, rtol=1e-4, atol=1e-3)


def test_raw_and_registry() -> None:
    x = torch.randn(2, 100)
    assert torch.equal(Raw()(x), x)
    assert isinstance(create_frontend("lfcc"), LFCC)
    with pytest.raises(ConfigError, match=r"unknown front-end 'mfcc'; valid: cepstrum, lfcc, logmel, raw"):
        create_frontend("mfcc")
