"""A generated corpus in the ASVspoof 2019 LA layout, for demos and tests.

This corpus is synthetic, for demos and tests; results on it are not deepfake-detection
results.

It is written exactly in the LA layout (FLAC, 16 kHz, 16-bit, mono, the three CM
protocols), so the real loader reads it. The output folder plays the role of ``LA/``::

    OUT/ASVspoof2019_LA_{train,dev,eval}/flac/LA_{T,D,E}_*.flac
    OUT/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt
    OUT/SYNTHETIC.json        (generator version, seed, size)

Bona fide utterances are speech-like: a harmonic source with a moving f0 (declination,
slow intonation, small jitter) and breath noise, shaped per syllable by four formant
resonators, a syllable-rate envelope and occasional fricative noise bursts. Spoofed
utterances come from the same generator with vocoder-like artefacts of different
difficulty, one kind per system: A01..A06 in train/dev, A07..A10 only in eval (unseen
attacks). Nuisances shared by both classes (level, leading/trailing silence, background
noise, duration 1-4 s, speaker) carry no label information.

The same seed and size give byte-identical files. Every utterance has its own random
generator seeded with ``(seed, split, index)``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from growsearch.errors import DataError

log = logging.getLogger(__name__)

DISCLAIMER = "This corpus is synthetic, for demos and tests; results on it are not deepfake-detection results."
GENERATOR_VERSION = 2
SR = 16_000
#: utterances per split (train, dev, eval)
SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (24, 12, 12),
    "small": (200, 100, 100),
    "medium": (1000, 500, 500),
    "large": (4000, 2000, 2000),
}
BONAFIDE_FRACTION = 0.4
TRAIN_DEV_SYSTEMS: tuple[str, ...] = ("A01", "A02", "A03", "A04", "A05", "A06")
EVAL_SYSTEMS: tuple[str, ...] = ("A07", "A08", "A09", "A10")
_SPLIT_CODE = {"train": ("T", "train.trn", 0), "dev": ("D", "dev.trl", 1), "eval": ("E", "eval.trl", 2)}
MARKER = "SYNTHETIC.json"

# vowel formants (Hz), an average adult voice
_VOWELS = np.array([
    [730, 1090, 2440, 3400],
    [530, 1840, 2480, 3500],
    [270, 2290, 3010, 3700],
    [570, 840, 2410, 3300],
    [300, 870, 2240, 3350],
    [660, 1720, 2410, 3450],
], dtype=float)
_BANDWIDTHS = np.array([80.0, 100.0, 140.0, 180.0])


@dataclass(frozen=True)
class Speaker:
    """Voice parameters of one synthetic speaker."""

    name: str
    f0: float
    formant_scale: float
    tilt: float
    breath: float


def _speakers(rng: np.random.Generator, split_index: int, n: int) -> list[Speaker]:
    out = []
    for i in range(n):
        out.append(Speaker(
            name=f"LA_{split_index * 100 + i + 1:04d}",
            f0=float(rng.uniform(85, 250)),
            formant_scale=float(rng.uniform(0.85, 1.18)),
            tilt=float(rng.uniform(0.9, 1.2)),
            breath=float(rng.uniform(0.02, 0.12)),
        ))
    return out


def _resonators(x: np.ndarray, formants: np.ndarray, bws: np.ndarray) -> np.ndarray:
    y = x
    for f, bw in zip(formants, bws):
        f = min(float(f), SR / 2 - 200)
        r = np.exp(-np.pi * bw / SR)
        a = [1.0, -2 * r * np.cos(2 * np.pi * f / SR), r * r]
        b = [1 - r]  # rough gain normalisation
        y = signal.lfilter(b, a, y)
    return y


def _harmonic_source(rng: np.random.Generator, f0: np.ndarray, tilt: float, *, phase_jumps: float = 0.0) -> np.ndarray:
    """Sum of harmonics of the (time-varying) f0 ``(n,)``, amplitude 1/k^tilt."""
    n = f0.shape[0]
    phase = 2 * np.pi * np.cumsum(f0) / SR
    if phase_jumps > 0:
        # frame-wise phase resets, as in a frame-based vocoder (every 5 ms)
        hop = 80
        jumps = np.repeat(rng.normal(0, phase_jumps, size=n // hop + 1), hop)[:n]
        phase = phase + jumps
    out = np.zeros(n)
    kmax = int((SR / 2 - 300) / max(float(f0.max()), 50.0))
    for k in range(1, max(kmax, 1) + 1):
        amp = 1.0 / k**tilt
        # suppress harmonics that would alias where f0 is high
        mask = (k * f0) < (SR / 2 - 300)
        out += amp * np.sin(k * phase + k) * mask
    return out


@dataclass(frozen=True)
class _Artefact:
    jitter: float = 0.005          # relative f0 jitter per 10 ms
    tilt_delta: float = 0.0        # added to the source's spectral tilt exponent
    breath_mul: float = 1.0        # times the speaker's breath noise
    lowpass: float | None = None   # cutoff in Hz
    vocoder_band: float | None = None  # gentle roll-off above this (Hz): the cue all systems share
    phase_jumps: float = 0.0       # std of frame-wise phase jumps (radians)
    frame_am: float = 0.0          # depth of amplitude modulation at the frame rate
    pitch_steps: bool = False      # f0 held constant per 40 ms frame
    random_phase: float = 0.0      # mix of an STFT with random phase (0..1)
    quantise_bits: int | None = None


def _artefact(system: str, rng: np.random.Generator) -> _Artefact:
    art = _system_artefact(system, rng)
    if system != "bonafide":
        art = dataclasses.replace(art, vocoder_band=float(rng.uniform(6600, 7800)))
    return art


def _system_artefact(system: str, rng: np.random.Generator) -> _Artefact:
    u = rng.uniform
    if system == "bonafide":
        return _Artefact()
    if system == "A01":  # irregular periodicity, noisy excitation
        return _Artefact(jitter=u(0.08, 0.15), phase_jumps=u(1.0, 2.0), breath_mul=u(2.0, 3.0))
    if system == "A02":  # band-limited
        return _Artefact(lowpass=u(2500, 4500))
    if system == "A03":  # wrong spectral tilt, breathless
        return _Artefact(tilt_delta=u(0.8, 1.2), breath_mul=u(0.1, 0.4))
    if system == "A04":  # noisy excitation
        return _Artefact(breath_mul=u(8.0, 14.0), jitter=u(0.005, 0.015))
    if system == "A05":  # frame-rate buzz
        return _Artefact(frame_am=u(0.5, 0.8))
    if system == "A06":  # stepped, over-regular pitch, dull
        return _Artefact(pitch_steps=True, jitter=0.0, breath_mul=u(0.1, 0.3), tilt_delta=u(0.4, 0.7))
    if system == "A07":  # phase reconstruction artefacts
        return _Artefact(random_phase=u(0.8, 1.0), frame_am=u(0.3, 0.5))
    if system == "A08":  # band-limited + opposite tilt
        return _Artefact(lowpass=u(4000, 5500), tilt_delta=-u(0.5, 0.8))
    if system == "A09":  # irregularity + noise
        return _Artefact(jitter=u(0.05, 0.1), breath_mul=u(6.0, 10.0), phase_jumps=u(0.5, 1.0))
    if system == "A10":  # low-resolution waveform coding
        return _Artefact(quantise_bits=int(rng.integers(5, 8)), tilt_delta=u(0.2, 0.4))
    raise DataError(f"unknown synthetic system {system!r}; valid: {', '.join(TRAIN_DEV_SYSTEMS + EVAL_SYSTEMS)}")


def _speech(rng: np.random.Generator, spk: Speaker, n: int, art: _Artefact) -> np.ndarray:
    """Speech-like signal of ``n`` samples (before level and noise nuisances)."""
    t = np.arange(n) / SR
    # f0: declination, slow intonation, jitter per 10 ms
    f0 = spk.f0 * (1.0 + 0.12 * (0.5 - t / max(t[-1], 1e-3)) * rng.uniform(0.3, 1.0)
                   + rng.uniform(0.03, 0.1) * np.sin(2 * np.pi * rng.uniform(0.4, 2.0) * t + rng.uniform(0, 6.3)))
    if art.jitter > 0:
        hop = 160
        jit = rng.normal(0, art.jitter, size=n // hop + 2)
        f0 = f0 * (1 + np.interp(np.arange(n) / hop, np.arange(jit.shape[0]), jit))
    if art.pitch_steps:
        hop = 640
        f0 = np.repeat(f0[::hop], hop)[:n]
    source = _harmonic_source(rng, f0, spk.tilt + art.tilt_delta, phase_jumps=art.phase_jumps)
    source = source / (np.std(source) + 1e-9)
    source = source + spk.breath * art.breath_mul * rng.normal(0, 1, n) * 3.0
    out = np.zeros(n)
    hp_b, hp_a = signal.butter(2, 3500 / (SR / 2), btype="high")
    pos = int(rng.integers(0, SR // 20))
    rate = rng.uniform(3.0, 6.0)  # syllables per second
    while pos < n:
        length = int(SR / rate * rng.uniform(0.6, 1.3))
        end = min(n, pos + length)
        seg_len = end - pos
        if seg_len < 64:
            break
        if rng.uniform() < 0.3:  # fricative: high-passed noise
            b, a = signal.butter(2, rng.uniform(2500, 4000) / (SR / 2), btype="high")
            seg = signal.lfilter(b, a, rng.normal(0, 1, seg_len)) * rng.uniform(0.15, 0.3)
        else:
            formants = _VOWELS[int(rng.integers(len(_VOWELS)))] * spk.formant_scale * rng.uniform(0.95, 1.05, 4)
            seg = _resonators(source[pos:end], formants, _BANDWIDTHS * rng.uniform(0.8, 1.3, 4))
            seg = seg / (np.std(seg) + 1e-9)
            # aspiration above the formants, scaled with the voice's breathiness
            seg = seg + signal.lfilter(hp_b, hp_a, rng.normal(0, 1, seg_len)) * 0.4 * spk.breath * art.breath_mul
        env = np.sin(np.pi * np.linspace(0, 1, seg_len)) ** rng.uniform(0.5, 1.5)
        out[pos:end] += seg * env * rng.uniform(0.5, 1.0)
        pos = end + int(rng.uniform(0, 0.12) * SR)  # pause
    if art.frame_am > 0:
        period = int(rng.choice([80, 100, 160]))
        out = out * (1 + art.frame_am * np.sign(np.sin(2 * np.pi * np.arange(n) / period)))
    if art.random_phase > 0:
        out = _random_phase(rng, out, art.random_phase)
    if art.vocoder_band is not None:
        sos = signal.butter(4, art.vocoder_band / (SR / 2), btype="low", output="sos")
        out = signal.sosfilt(sos, out)
    if art.lowpass is not None:
        sos = signal.butter(8, art.lowpass / (SR / 2), btype="low", output="sos")
        out = signal.sosfilt(sos, out)
    if art.quantise_bits is not None:
        peak = np.max(np.abs(out)) + 1e-9
        q = 2.0 ** (art.quantise_bits - 1)
        out = np.round(out / peak * q) / q * peak
    return out


def _random_phase(rng: np.random.Generator, x: np.ndarray, mix: float) -> np.ndarray:
    n = x.shape[0]
    _, _, z = signal.stft(x, nperseg=512, noverlap=384)
    ph = np.exp(1j * rng.uniform(0, 2 * np.pi, z.shape))
    zz = np.abs(z) * ((1 - mix) * np.exp(1j * np.angle(z)) + mix * ph)
    _, y = signal.istft(zz, nperseg=512, noverlap=384)
    y = y[:n]
    if y.shape[0] < n:
        y = np.pad(y, (0, n - y.shape[0]))
    return y


def synth_utterance(seed: int, split: str, index: int, system: str, spk: Speaker) -> np.ndarray:
    """One utterance: ``(samples,)`` float64 in (-1, 1), 1-4 s at 16 kHz."""
    rng = np.random.default_rng([seed, _SPLIT_CODE[split][2], index, 7])
    dur = rng.uniform(1.0, 4.0)
    n = int(dur * SR)
    lead = int(rng.uniform(0.0, 0.3) * SR)
    trail = int(rng.uniform(0.0, 0.3) * SR)
    body_n = max(SR // 2, n - lead - trail)
    art = _artefact(system, rng)
    body = _speech(rng, spk, body_n, art)
    body = body / (np.sqrt(np.mean(body**2)) + 1e-9)
    x = np.concatenate([np.zeros(lead), body, np.zeros(trail)])
    # background noise: shared nuisance (coloured by a random one-pole filter)
    snr_db = rng.uniform(30, 45)
    noise = signal.lfilter([1.0], [1.0, -rng.uniform(0.0, 0.6)], rng.normal(0, 1, x.shape[0]))
    noise = noise / (np.std(noise) + 1e-9) * 10 ** (-snr_db / 20)
    x = x + noise
    level_db = rng.uniform(-32, -12)
    x = x * 10 ** (level_db / 20)
    return np.clip(x, -0.999, 0.999)


def _plan(seed: int, split: str, n: int) -> list[tuple[str, str, Speaker]]:
    """(utt, system, speaker) of every utterance of a split, in protocol order."""
    code, _, sidx = _SPLIT_CODE[split]
    rng = np.random.default_rng([seed, sidx, 1_000_003])
    speakers = _speakers(rng, sidx, max(4, n // 20))
    systems = TRAIN_DEV_SYSTEMS if split != "eval" else EVAL_SYSTEMS
    n_bona = max(1, round(BONAFIDE_FRACTION * n))
    labels = ["bonafide"] * n_bona + [systems[i % len(systems)] for i in range(n - n_bona)]
    order = rng.permutation(n)
    plan = []
    for i, j in enumerate(order):
        spk = speakers[int(rng.integers(len(speakers)))]
        plan.append((f"LA_{code}_{i + 1:07d}", labels[j], spk))
    return plan


def generate(out: str | Path, *, seed: int = 0, size: str = "small") -> dict[str, dict[str, int]]:
    """Write the corpus into ``out`` (created; must not hold a corpus already).

    Returns:
        ``{split: {"bonafide": n, "spoof": m}}``.

    Raises:
        DataError: unknown size, or ``out`` cannot be created.
    """
    if size not in SIZES:
        raise DataError(f"unknown synthetic size {size!r}; valid: {', '.join(SIZES)}")
    out = Path(out)
    try:
        return _write(out, seed, size)
    except OSError as exc:
        raise DataError(f"{out}: cannot write the synthetic corpus: {exc.strerror or exc}") from None


def _write(out: Path, seed: int, size: str) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    (out / "ASVspoof2019_LA_cm_protocols").mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "dev", "eval"), SIZES[size]):
        _, proto_name, _ = _SPLIT_CODE[split]
        fdir = out / f"ASVspoof2019_LA_{split}" / "flac"
        fdir.mkdir(parents=True, exist_ok=True)
        lines = []
        c = {"bonafide": 0, "spoof": 0}
        for i, (utt, system, spk) in enumerate(_plan(seed, split, n)):
            wave = synth_utterance(seed, split, i, system, spk)
            sf.write(str(fdir / f"{utt}.flac"), wave, SR, subtype="PCM_16", format="FLAC")
            key = "bonafide" if system == "bonafide" else "spoof"
            lines.append(f"{spk.name} {utt} - {'-' if key == 'bonafide' else system} {key}")
            c[key] += 1
        counts[split] = c
        (out / "ASVspoof2019_LA_cm_protocols" / f"ASVspoof2019.LA.cm.{proto_name}.txt").write_text("\n".join(lines) + "\n")
    marker = {"generator": "growsearch.data.synthetic", "version": GENERATOR_VERSION, "seed": seed,
              "size": size, "counts": counts, "note": DISCLAIMER}
    (out / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
    return counts


def read_marker(root: Path) -> dict | None:
    """The ``SYNTHETIC.json`` of a generated corpus, or None."""
    p = Path(root) / MARKER
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def ensure_corpus(root: str | Path, *, seed: int = 0, size: str = "small") -> bool:
    """Make sure a synthetic corpus of ``seed`` and ``size`` is at ``root``; generate it if not.

    Safe when several processes call it at once: an advisory lock file next to ``root``
    makes the others wait for the first instead of generating too, and the corpus is
    written into a temporary folder and renamed into place atomically (so even without
    working locks, e.g. on some network file systems, no one ever reads a half-written
    corpus; the losers of the rename discard theirs).

    Returns:
        True if this call generated the corpus.

    Raises:
        DataError: ``root`` holds something else (another seed or size, or not a
            synthetic corpus), or cannot be written.
    """
    root = Path(root)
    if _check_existing(root, seed, size):
        return False
    parent = root.parent if str(root.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{root}: cannot create the folder for the synthetic corpus: {exc.strerror or exc}") from None
    lock_path = parent / f".{root.name}.lock"
    try:
        lock = open(lock_path, "a")  # noqa: SIM115 - held until generation ends
    except OSError:
        lock = None
    try:
        if lock is not None:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
            except OSError:
                pass
        if _check_existing(root, seed, size):  # another process generated it meanwhile
            return False
        return _generate_and_rename(root, parent, seed, size)
    finally:
        if lock is not None:
            lock.close()


def _generate_and_rename(root: Path, parent: Path, seed: int, size: str) -> bool:
    tmp = parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    log.warning("generating the synthetic corpus (seed %d, size %s) in %s", seed, size, root)
    try:
        if size not in SIZES:
            raise DataError(f"unknown synthetic size {size!r}; valid: {', '.join(SIZES)}")
        try:
            _write(tmp, seed, size)
        except OSError as exc:
            raise DataError(f"{root}: cannot write the synthetic corpus: {exc.strerror or exc}") from None
        try:
            os.rename(tmp, root)  # atomic; fails if another process got there first
        except OSError:
            if _check_existing(root, seed, size):
                return False
            raise DataError(f"{root}: cannot move the generated synthetic corpus into place") from None
        return True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _check_existing(root: Path, seed: int, size: str) -> bool:
    if not root.exists():
        return False
    if not root.is_dir():
        raise DataError(f"{root}: exists and is not a folder; cannot hold the synthetic corpus")
    marker = read_marker(root)
    if marker is None:
        if any(root.iterdir()):
            raise DataError(f"{root}: exists but is not a generated synthetic corpus (no {MARKER}); choose another data.root")
        return False
    if marker.get("seed") != seed or marker.get("size") != size:
        raise DataError(
            f"{root}: holds the synthetic corpus of seed {marker.get('seed')}, size {marker.get('size')!r}, "
            f"not seed {seed}, size {size!r}; delete it or set another data.root"
        )
    if marker.get("version") != GENERATOR_VERSION:
        log.warning("%s was written by synthetic generator version %s (current %d); delete it to regenerate "
                    "the current corpus", root, marker.get("version"), GENERATOR_VERSION)
    return True
