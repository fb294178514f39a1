"""The ``bench`` profile of the generated corpus: a corpus where model capacity matters.

This corpus is synthetic, for demos and tests; results on it are not deepfake-detection
results.

The ``tiny`` and ``small`` profiles (:mod:`growsearch.data.synthetic`) give every spoofing
system one strong, easily seen artefact. Here the task is built so that a narrow model
cannot represent all of it:

- **Many systems, many kinds of cue.** 12 systems in train/dev (``A01`` .. ``A12``); each is
  a fixed "vocoder" made of two artefacts drawn from eight kinds that live in different
  features: a narrow spectral peak, a narrow notch, a comb ripple (a weak echo of 6-18
  samples), a slow amplitude modulation (6-14 Hz), a band-limited noise floor, a high-band
  roll-off, a low-band cut, and a quieter background (a noise gate). Each kind has its own
  system-specific frequency, rate or level, so detecting the spoofs needs many different
  detectors.
- **Graded.** Every artefact's size scales with :data:`STRENGTH` (at the default 2.4: peaks
  of 7-12 dB and notches of 10-17 dB with Q 1.5-3, echoes and modulations of 0.3-0.6, a
  noise floor 14-20 dB below the speech, 14-24 dB less background noise), varied by
  +-20 % per utterance, on top of the nuisances both classes share: a random broad channel
  EQ of +-3 dB and a spectral tilt of +-0.1 per utterance, coloured background noise at
  25-45 dB SNR, a level of -20..-16 dB (:data:`LEVEL_DB`), speaker. Version 2 narrowed the
  level (was -32..-12 dB) and the tilt (was +-0.3): the tiny LC-GRNN's raw cepstrum carries
  both unnormalised in c0 and c1, which made its training seed-dependent.
  Measured with ``bench/corpus_difficulty.py`` (3 seeds, 10 epochs; ``bench/results/CALIBRATION.md``):
  the tiny LC-GRNN (lr 3e-3) reaches 0.230 dev EER at its baseline width and 0.165 at the
  grown width (seed sd 0.020); the tiny ResNet18 (``tiny_authors`` widths 4/4/4/16, lr 3e-3)
  0.139 and 0.079 at 4/12/12/16 (gap 0.061, sd 0.014 on seeds 0-2; on seeds 3-5 one seed
  starts slowly and the sd is 0.089). With the earlier widths 4/8/8/16 at lr 1e-3: 0.135 and
  0.107 (version 1: 0.187 and 0.140).
- **Channel cues** (:data:`CUE_P`, off in version 2): a bona fide utterance may carry one
  artefact of a train/dev system alone, so only a system's pair of artefacts marks a spoof;
  a capacity requirement measured in ``CALIBRATION.md``, not yet calibrated.
- **Unseen attacks.** The eval split holds four of the train systems (``A03``, ``A06``,
  ``A09``, ``A12``) and four systems that never occur in train or dev (``A13`` .. ``A16``),
  drawn from the same artefact family, as ASVspoof 2019 LA's eval has seen and unseen attacks.
- **Short utterances** (1.05-1.5 s, little leading silence), so the 1 s clips of the tiny
  presets hold speech, and an epoch stays cheap.

The bona fide speech is that of the other profiles (:func:`growsearch.data.synthetic._speech`
with no artefact); a system's artefacts are applied to it afterwards. A system's parameters
come from ``(seed, system)``, every utterance's randomness from ``(seed, split, index)``: the
same seed gives byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

SR = 16_000
#: version of this profile's generator (written to ``SYNTHETIC.json`` as ``profile.version``)
VERSION = 2
#: utterances per split (train, dev, eval)
COUNTS: tuple[int, int, int] = (1000, 500, 500)
TRAIN_DEV_SYSTEMS: tuple[str, ...] = tuple(f"A{i:02d}" for i in range(1, 13))
SEEN_IN_EVAL: tuple[str, ...] = ("A03", "A06", "A09", "A12")
UNSEEN_SYSTEMS: tuple[str, ...] = ("A13", "A14", "A15", "A16")
EVAL_SYSTEMS: tuple[str, ...] = SEEN_IN_EVAL + UNSEEN_SYSTEMS
KINDS: tuple[str, ...] = ("peak", "notch", "ripple", "am", "floor", "rolloff", "lowcut", "gate")
#: artefact strength (scales every artefact's size; calibrated with bench/corpus_difficulty.py)
STRENGTH = 2.4
#: range of the utterance level (dB of the unit-RMS body re full scale), drawn per utterance. Narrow
#: (version 2; was -32..-12): the LC-GRNN's raw cepstrum carries the level in c0 unnormalised.
LEVEL_DB: tuple[float, float] = (-20.0, -16.0)
#: range of the shared channel's spectral tilt (first-order pre-emphasis coefficient), drawn per
#: utterance (version 2; was -0.3..0.3: the tilt lands in the raw cepstrum's c1)
TILT: tuple[float, float] = (-0.1, 0.1)
#: probability that a bona fide utterance carries one "channel cue": one artefact of a train/dev system,
#: alone, so that only a system's combination of artefacts marks a spoof (0: none, nothing drawn)
CUE_P = 0.0


@dataclass(frozen=True)
class Component:
    """One artefact of a system: its kind and its system-specific parameters."""

    kind: str
    freq: float = 0.0    # Hz: centre (peak, notch, floor), cutoff (rolloff, lowcut)
    gain: float = 0.0    # dB (peak, notch, floor level below speech, gate: noise reduction), mix (rolloff)
    q: float = 1.0       # quality factor (peak, notch, floor band)
    delay: int = 0       # samples (ripple)
    depth: float = 0.0   # echo gain (ripple), modulation depth (am)
    rate: float = 0.0    # Hz (am)


def system_components(seed: int, system: str) -> tuple[Component, ...]:
    """The two artefacts of ``system`` (``A01`` .. ``A16``) for corpus ``seed``."""
    number = int(system[1:])
    rng = np.random.default_rng([seed, number, 424_242])
    kinds = rng.choice(len(KINDS), size=2, replace=False)
    return tuple(_component(KINDS[int(k)], rng) for k in sorted(kinds))


def _component(kind: str, rng: np.random.Generator) -> Component:
    u = rng.uniform
    s = STRENGTH
    if kind == "peak":
        return Component(kind, freq=float(np.exp(u(np.log(300), np.log(7000)))), gain=s * u(3.0, 5.0), q=u(1.5, 3.0))
    if kind == "notch":
        return Component(kind, freq=float(np.exp(u(np.log(300), np.log(7000)))), gain=-s * u(4.0, 7.0), q=u(1.5, 3.0))
    if kind == "ripple":
        return Component(kind, delay=int(rng.integers(6, 19)), depth=s * u(0.12, 0.25))
    if kind == "am":
        return Component(kind, rate=u(6.0, 14.0), depth=s * u(0.12, 0.25))
    if kind == "floor":
        return Component(kind, freq=float(np.exp(u(np.log(500), np.log(6500)))), gain=u(22.0, 28.0) - 6 * (s - 1), q=u(1.5, 3.0))
    if kind == "rolloff":
        return Component(kind, freq=u(4500, 7000), gain=min(1.0, s * u(0.5, 0.8)))
    if kind == "lowcut":
        return Component(kind, freq=u(250, 450))
    if kind == "gate":
        return Component(kind, gain=s * u(6.0, 10.0))
    raise ValueError(f"unknown artefact kind {kind!r}")


def _peaking(x: np.ndarray, freq: float, gain_db: float, q: float) -> np.ndarray:
    """Peaking equaliser (a second-order section) of ``gain_db`` at ``freq``."""
    amp = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * min(freq, SR / 2 - 300) / SR
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * amp, -2 * np.cos(w0), 1 - alpha * amp])
    a = np.array([1 + alpha / amp, -2 * np.cos(w0), 1 - alpha / amp])
    return signal.lfilter(b / a[0], a / a[0], x)


def channel(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """The nuisance channel both classes share: a broad EQ of +-3 dB and a random tilt."""
    x = _peaking(x, float(np.exp(rng.uniform(np.log(200), np.log(7000)))), rng.uniform(-3.0, 3.0), rng.uniform(0.5, 1.2))
    c = rng.uniform(*TILT)
    return signal.lfilter([1.0, -c], [1.0], x)


def channel_cue(seed: int, rng: np.random.Generator) -> tuple[Component, ...]:
    """With probability :data:`CUE_P`, one artefact of a random train/dev system (a bona fide "channel cue").

    Draws three numbers for every utterance (none when ``CUE_P`` is 0), so the rest of an
    utterance's randomness does not depend on its class.
    """
    if CUE_P <= 0:
        return ()
    hit, which, part = rng.uniform(), int(rng.integers(len(TRAIN_DEV_SYSTEMS))), int(rng.integers(2))
    if hit >= CUE_P:
        return ()
    return (system_components(seed, TRAIN_DEV_SYSTEMS[which])[part],)


def apply(rng: np.random.Generator, x: np.ndarray, comps: tuple[Component, ...]) -> tuple[np.ndarray, float]:
    """Apply a system's artefacts to the speech body ``x`` (unit RMS), each varied a little per utterance.

    Returns:
        ``(body, gate_db)``: the processed body and how many dB quieter its background noise is.
    """
    n = x.shape[0]
    gate_db = 0.0
    for c in comps:
        v = rng.uniform(0.8, 1.2)  # per-utterance variation of the artefact's size
        if c.kind in ("peak", "notch"):
            x = _peaking(x, c.freq * rng.uniform(0.98, 1.02), c.gain * v, c.q)
        elif c.kind == "ripple":
            x = x.copy()
            x[c.delay:] += c.depth * v * x[:-c.delay]
        elif c.kind == "am":
            t = np.arange(n) / SR
            x = x * (1 + c.depth * v * np.sin(2 * np.pi * c.rate * t + rng.uniform(0, 2 * np.pi)))
        elif c.kind == "floor":
            f = c.freq
            band = signal.butter(2, [f / (1 + 0.5 / c.q) / (SR / 2), min(f * (1 + 0.5 / c.q), SR / 2 - 100) / (SR / 2)],
                                 btype="band", output="sos")
            noise = signal.sosfilt(band, rng.normal(0, 1, n))
            x = x + noise / (np.std(noise) + 1e-9) * 10 ** (-(c.gain / v) / 20)
        elif c.kind == "rolloff":
            sos = signal.butter(4, c.freq / (SR / 2), btype="low", output="sos")
            m = min(1.0, c.gain * v)
            x = (1 - m) * x + m * signal.sosfilt(sos, x)
        elif c.kind == "lowcut":
            sos = signal.butter(2, c.freq * v / (SR / 2), btype="high", output="sos")
            x = signal.sosfilt(sos, x)
        elif c.kind == "gate":
            gate_db = c.gain * v
    return x, gate_db


def utterance(seed: int, split_index: int, index: int, system: str, speaker: object) -> np.ndarray:
    """One utterance of the bench profile: ``(samples,)`` float64 in (-1, 1), 1.05-1.5 s at 16 kHz."""
    from growsearch.data.synthetic import (  # the shared speech generator
        _Artefact,
        _speech,
    )

    rng = np.random.default_rng([seed, split_index, index, 11])
    n = int(rng.uniform(1.05, 1.5) * SR)
    lead = int(rng.uniform(0.0, 0.05) * SR)
    trail = int(rng.uniform(0.0, 0.1) * SR)
    body = _speech(rng, speaker, n - lead - trail, _Artefact())  # type: ignore[arg-type]
    body = body / (np.sqrt(np.mean(body**2)) + 1e-9)
    body = channel(rng, body)
    gate_db = 0.0
    cue = channel_cue(seed, rng)
    if system != "bonafide":
        body, gate_db = apply(rng, body, system_components(seed, system))
    elif cue:
        body, gate_db = apply(rng, body, cue)
    body = body / (np.sqrt(np.mean(body**2)) + 1e-9)
    x = np.concatenate([np.zeros(lead), body, np.zeros(trail)])
    snr_db = rng.uniform(25, 45) + gate_db
    noise = signal.lfilter([1.0], [1.0, -rng.uniform(-0.3, 0.8)], rng.normal(0, 1, x.shape[0]))
    x = x + noise / (np.std(noise) + 1e-9) * 10 ** (-snr_db / 20)
    x = x * 10 ** (rng.uniform(*LEVEL_DB) / 20)
    return np.clip(x, -0.999, 0.999)
