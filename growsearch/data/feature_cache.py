"""A feature cache shared by all trials: decode and featurize each utterance once.

Every trial of a study trains on the same corpus with the same front-end, so decoding the
audio and computing LFCC / log-Mel in every epoch of every trial repeats the same work.
:func:`cached_splits` replaces the datasets of a :class:`~growsearch.data.dataset.Splits` by
:class:`CachedClipDataset` views of one cache *entry* per split, built once and read by
every trial (memory-mapped, so trials on one machine share the page cache).

**What is stored (exactness).** Training crops stay what they are today: a random start
``randint(len - L + 1)`` in the *waveform* domain, drawn from the same per-item generator
``(seed, epoch, index)``. A feature of an arbitrary waveform crop is not a slice of the
full-length features (frames hop 160 or 512 samples, pre-emphasis restarts at the crop), so
features are stored only for the clips that do not depend on the crop: every dev/eval clip
(the first L samples) and every training utterance of at most L samples (tiled, never
cropped). For the other training utterances the entry stores the decoded full-length 16 kHz
mono waveform; the crop is cut from it exactly as from the file and featurized on the fly by
the model's own front-end. Front-ends give bit-identical results for one item and for a
batch (checked by the tests), so a cached epoch yields bit-identical batches and a cached
run trains bit-identically to an uncached one. Modes:

- ``features`` (CPU training of a backbone whose front-end is not ``raw``): as above.
- ``wave`` (raw-waveform backbones such as wav2vec2, and any backbone trained on CUDA, whose
  front-end then runs on the GPU as before): the decoded waveform of every utterance.

**Entries.** ``<cache dir>/<key[:2]>/<key>/``: ``data.bin`` (all arrays, float32, one flat
file), ``index.npz`` (per item: offset, shape, kind, CRC-32), ``meta.json`` (what the key
hashes, counts, sizes) and ``COMPLETE``, written last, holding the sha256 of ``index.npz``
and ``meta.json``. The key is the sha256 of: :data:`CACHE_VERSION`, the decode rules
(:data:`~growsearch.data.decode_check.CHECK_VERSION`), the torch version, the mode, the
split and L, the front-end's fingerprint (class, settings and filterbank buffers) and, per
item in order, its protocol fields (utterance, attack, key) and the audio file's absolute
path, size and modification time (ns). Size + mtime + path is what the decode-verdict cache
uses too: it costs one ``stat`` per file (25k files: well under a second) where a content
hash would read the whole corpus in every trial, i.e. the work the cache saves. A file
rewritten in place with the same size within the file system's timestamp resolution would
go unnoticed; anything else (a changed file, protocol, split subset, L or front-end setting)
gives a new key.

**Safety.** An entry is built in a temporary folder under an advisory lock per key (so
trials starting together build it once; the others wait and read it) and renamed into place
atomically, as the generated corpus is. An entry is trusted only if ``COMPLETE`` matches
the index and meta files and ``data.bin`` has exactly the recorded size; each item's CRC-32 is
checked when it is read (about 0.1 ms per clip). An entry failing any check is moved aside
and rebuilt; an item failing its CRC during training is recomputed from the audio file and
the entry is moved aside so that the next trial rebuilds it. The decode check of
:mod:`growsearch.data.decode_check` runs once per build (``build_splits`` records the verdicts
of the corpus state in the cache folder, see :func:`load_verdicts`), not once per trial.

A cache folder that cannot be written costs nothing but speed: the run goes on uncached
with a warning.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import uuid
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from growsearch.atomic import exclusive_lock
from growsearch.data.audio import fix_length, read_audio
from growsearch.data.dataset import ClipDataset, Item, Splits, listed_at
from growsearch.data.decode_check import CHECK_VERSION
from growsearch.data.machine_cache import cache_dir as machine_cache_dir
from growsearch.errors import DataError

log = logging.getLogger(__name__)

#: Bump when the layout or what an entry holds changes.
CACHE_VERSION = 1
COMPLETE = "COMPLETE"
FEATURE, WAVE, WAVE16 = 0, 1, 2  # WAVE16: a waveform stored as int16 (exactly x / 32768)
_DTYPES: dict[int, np.dtype[Any]] = {FEATURE: np.dtype(np.float32), WAVE: np.dtype(np.float32), WAVE16: np.dtype(np.int16)}
_CHUNK = 32

__all__ = ["CACHE_VERSION", "CachedClipDataset", "Features", "cache_mode", "cached_splits", "default_cache_dir",
           "entry_key", "ensure_entry", "frontend_fingerprint", "load_verdicts", "open_entry", "resolved_cache_dir",
           "store_verdicts", "with_feature_cache"]


class Features(torch.Tensor):
    """A tensor of front-end outputs computed by the cache: a backbone given one skips its
    front-end (:meth:`growsearch.backbones.base.Backbone.forward`)."""

    gs_features = True


def default_cache_dir() -> Path:
    """Where ``growsearch train`` keeps the cache: ``<machine cache dir>/features``
    (studies use ``<execution.shared_dir>/feature_cache``)."""
    return machine_cache_dir() / "features"


def resolved_cache_dir(cfg: Any) -> Path:
    """The cache folder of a :class:`~growsearch.data.config.DataConfig`: ``cache_dir`` or
    :func:`default_cache_dir`."""
    return Path(os.path.expanduser(str(cfg.cache_dir))) if cfg.cache_dir is not None else default_cache_dir()


# ---- decode verdicts, once per corpus state -------------------------------------------------
def _verdicts_file(cache_root: Path, paths: list[Path]) -> Path | None:
    h = hashlib.sha256(json.dumps([CACHE_VERSION, CHECK_VERSION]).encode())
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            return None  # a missing file: let the decode check report it
        h.update(json.dumps([os.path.abspath(p), int(st.st_size), int(st.st_mtime_ns)]).encode())
    key = h.hexdigest()
    return Path(cache_root) / "verdicts" / f"{key}.json"


def load_verdicts(cache_root: Path, paths: list[Path]) -> dict[Path, str | None] | None:
    """The decode verdicts recorded for exactly these files in this state, or None.

    The record is keyed by every file's path, size and mtime (and the decode rules), so
    one decode check per corpus state serves every trial on every node."""
    f = _verdicts_file(cache_root, paths)
    if f is None:
        return None
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
        bad = {str(k): str(v) for k, v in doc["bad"].items()}
        if int(doc["files"]) != len(paths):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return {p: bad.get(os.path.abspath(p)) for p in paths}


def store_verdicts(cache_root: Path, paths: list[Path], verdicts: dict[Path, str | None]) -> None:
    """Record ``verdicts`` for :func:`load_verdicts` (atomic; a failure only costs speed)."""
    from growsearch.atomic import atomic_write_text

    f = _verdicts_file(cache_root, paths)
    if f is None:
        return
    doc = {"files": len(paths), "bad": {os.path.abspath(p): v for p, v in verdicts.items() if v is not None}}
    try:
        atomic_write_text(f, json.dumps(doc, separators=(",", ":")))
    except OSError as exc:
        log.debug("feature cache: verdicts %s not written: %s", f, exc)


# ---- keys ---------------------------------------------------------------------------------
def frontend_fingerprint(frontend: nn.Module | None) -> dict[str, Any] | None:
    """What defines a front-end's output: class, settings and buffers of every submodule."""
    if frontend is None:
        return None
    parts: list[Any] = []
    for name, mod in frontend.named_modules():
        simple = {k: v for k, v in sorted(vars(mod).items())
                  if not k.startswith("_") and isinstance(v, int | float | str | bool | type(None) | tuple)}
        parts.append([name, type(mod).__module__ + "." + type(mod).__qualname__, repr(simple)])
    h = hashlib.sha256()
    for name, buf in sorted(frontend.named_buffers()):
        h.update(name.encode())
        h.update(str(buf.dtype).encode() + str(tuple(buf.shape)).encode())
        h.update(buf.detach().cpu().contiguous().numpy().tobytes())
    return {"modules": parts, "buffers": h.hexdigest()}


def _stat(path: Path) -> list[int]:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DataError(f"{path}: audio file is missing or unreadable ({exc.strerror or exc})") from None
    return [int(st.st_size), int(st.st_mtime_ns)]


def entry_key(items: Iterable[Item], *, split: str, clip_samples: int, mode: str,
              fingerprint: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """The content address of an entry and the document it hashes (without the file list).

    Raises:
        DataError: a listed file cannot be stat'ed.
    """
    doc = {"cache_version": CACHE_VERSION, "check_version": CHECK_VERSION, "torch": torch.__version__,
           "mode": mode, "split": split, "clip_samples": int(clip_samples), "frontend": fingerprint}
    h = hashlib.sha256(json.dumps(doc, sort_keys=True).encode())
    n = 0
    for it in items:
        h.update(json.dumps([it.utt, it.attack, it.key, os.path.abspath(it.path), *_stat(it.path)]).encode())
        n += 1
    doc["items"] = n
    return h.hexdigest(), doc


# ---- entries ------------------------------------------------------------------------------
class CorruptEntry(Exception):
    """An item of an open entry failed its CRC check."""


@dataclass
class Entry:
    """A validated entry: per-item offsets/shapes/kinds/CRCs and the memory-mapped data."""

    path: Path
    offsets: np.ndarray
    shapes: np.ndarray
    kinds: np.ndarray
    crcs: np.ndarray
    total: int
    _data: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.kinds.shape[0])

    @property
    def data(self) -> np.ndarray:
        if self._data is None:
            self._data = np.memmap(self.path / "data.bin", dtype=np.uint8, mode="r", shape=(self.total,)) \
                if self.total else np.zeros(0, np.uint8)
        return self._data

    def get(self, i: int) -> np.ndarray:
        """Item ``i`` as a fresh float32 array (its shape as stored), CRC checked.

        Raises:
            CorruptEntry: the bytes do not match the recorded CRC.
        """
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        raw = np.array(self.data[a:b])
        if zlib.crc32(raw.data) != int(self.crcs[i]):
            raise CorruptEntry(f"{self.path}: item {i} fails its checksum")
        kind = int(self.kinds[i])
        arr = raw.view(_DTYPES[kind]).reshape(tuple(int(s) for s in self.shapes[i] if s > 0))
        if kind == WAVE16:
            arr = arr.astype(np.float32) / np.float32(32768)  # exact: the stored samples were k / 32768
        return arr

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers map the file themselves
        d = dict(self.__dict__)
        d["_data"] = None
        return d


def _digest(*files: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def open_entry(path: Path, key: str) -> Entry | None:
    """The entry at ``path`` if it is complete and consistent, else None (never raises)."""
    try:
        marker = (path / COMPLETE).read_text(encoding="utf-8").strip()
        if marker != _digest(path / "index.npz", path / "meta.json"):
            return None
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        if meta.get("key") != key:
            return None
        with np.load(path / "index.npz") as z:
            offsets, shapes, kinds, crcs = z["offsets"], z["shapes"], z["kinds"], z["crcs"]
        total = int(meta["total"])
        n = int(meta["items"])
        if (offsets.shape != (n + 1,) or shapes.shape != (n, 2) or kinds.shape != (n,) or crcs.shape != (n,)
                or int(offsets[-1]) != total or (path / "data.bin").stat().st_size != total
                or not set(np.unique(kinds).tolist()) <= set(_DTYPES)):
            return None
        return Entry(path, offsets.astype(np.int64), shapes.astype(np.int64), kinds, crcs.astype(np.uint32), total)
    except (OSError, ValueError, KeyError, TypeError, zlib.error, EOFError):
        return None


def _discard(path: Path) -> None:
    """Move a bad entry aside (atomic, so readers never see half of it), then delete it."""
    aside = path.with_name(f".{path.name}.bad-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, aside)
    except OSError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def _items_arrays(items: list[Item], *, split: str, clip_samples: int, frontend: nn.Module | None,
                  workers: int) -> Iterable[tuple[int, np.ndarray]]:
    """``(kind, array)`` per item, in order: features of the fixed clips, waves of the others."""
    def read(it: Item) -> np.ndarray:
        try:
            return read_audio(it.path)
        except DataError as exc:
            raise DataError(listed_at(str(exc), it)) from None

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gs-fcache") as ex:
        for start in range(0, len(items), _CHUNK):
            waves = list(ex.map(read, items[start:start + _CHUNK]))
            fixed = [frontend is not None and (split != "train" or w.shape[0] <= clip_samples) for w in waves]
            feats: list[np.ndarray] = []
            if any(fixed):
                clips = np.stack([fix_length(w, clip_samples) for w, f in zip(waves, fixed) if f])
                with torch.no_grad():
                    feats = list(frontend(torch.from_numpy(clips)).numpy())  # type: ignore[misc]
            k = 0
            for w, f in zip(waves, fixed):
                if f:
                    yield FEATURE, np.ascontiguousarray(feats[k], dtype=np.float32)
                    k += 1
                else:
                    if split != "train":  # a fixed clip (wave mode): only its first L samples are ever used
                        w = w[:clip_samples]
                    yield _compact(np.ascontiguousarray(w, dtype=np.float32))


def _compact(w: np.ndarray) -> tuple[int, np.ndarray]:
    """``(WAVE16, int16)`` when the samples are exactly k / 32768 (16-bit PCM, no resampling:
    half the bytes, bit-identical when read back), else ``(WAVE, float32)``."""
    q = np.rint(w * np.float32(32768))
    if q.size and q.min() >= -32768 and q.max() <= 32767:
        q16 = q.astype(np.int16)
        if np.array_equal((q16.astype(np.float32) / np.float32(32768)).view(np.int32), w.view(np.int32)):
            return WAVE16, q16
    return WAVE, w


def _build(tmp: Path, key: str, doc: dict[str, Any], arrays: Iterable[tuple[int, np.ndarray]]) -> None:
    tmp.mkdir(parents=True)
    offsets, shapes, kinds, crcs = [0], [], [], []
    with open(tmp / "data.bin", "wb") as fh:
        for kind, arr in arrays:
            fh.write(arr.data.cast("B"))
            offsets.append(offsets[-1] + arr.nbytes)
            shapes.append(list(arr.shape) + [0] * (2 - arr.ndim))
            kinds.append(kind)
            crcs.append(zlib.crc32(arr.data))
        fh.flush()
        os.fsync(fh.fileno())
    buf = io.BytesIO()
    np.savez(buf, offsets=np.asarray(offsets, np.int64), shapes=np.asarray(shapes, np.int64).reshape(-1, 2),
             kinds=np.asarray(kinds, np.uint8), crcs=np.asarray(crcs, np.uint32))
    (tmp / "index.npz").write_bytes(buf.getvalue())
    meta = {**doc, "key": key, "items": len(kinds), "total": offsets[-1], "features": kinds.count(FEATURE),
            "waves": kinds.count(WAVE) + kinds.count(WAVE16), "bytes": offsets[-1]}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    with open(tmp / COMPLETE, "w", encoding="utf-8") as fh:  # last: the entry is whole
        fh.write(_digest(tmp / "index.npz", tmp / "meta.json"))
        fh.flush()
        os.fsync(fh.fileno())


def ensure_entry(cache_root: Path, items: list[Item], *, split: str, clip_samples: int, mode: str,
                 frontend: nn.Module | None, workers: int | None = None,
                 on_build: Callable[[str], None] | None = None) -> Entry:
    """Open the entry of these items and settings, building it first if missing or bad.

    Safe when many processes call it at once (lock per key, atomic rename).

    Raises:
        OSError: the cache folder cannot be written.
        DataError: an audio file cannot be stat'ed or decoded (names it and its protocol line).
    """
    fe = frontend if mode == "features" else None
    key, doc = entry_key(items, split=split, clip_samples=clip_samples, mode=mode, fingerprint=frontend_fingerprint(fe))
    path = Path(cache_root) / key[:2] / key
    entry = open_entry(path, key)
    if entry is not None:
        return entry
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(path.parent / f".{key}.lock"):  # without locks the atomic rename still holds
        entry = open_entry(path, key)  # another process built it while we waited
        if entry is not None:
            return entry
        if path.exists():
            log.warning("feature cache: %s is incomplete or corrupt; rebuilding it", path)
            _discard(path)
        if on_build is not None:
            on_build(f"feature cache: building the {split} entry ({len(items)} utterances, {mode}) in {path}")
        n = workers or max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))
        tmp = path.with_name(f".{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            with torch.no_grad():
                _build(tmp, key, doc, _items_arrays(items, split=split, clip_samples=clip_samples, frontend=fe, workers=n))
            try:
                os.rename(tmp, path)
            except OSError:  # someone else (without a working lock) got there first
                if open_entry(path, key) is None:
                    _discard(path)
                    os.rename(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    entry = open_entry(path, key)
    if entry is None:
        raise OSError(f"{path}: the feature cache entry just written does not read back")
    return entry


# ---- datasets -----------------------------------------------------------------------------
class CachedClipDataset(ClipDataset):
    """A :class:`ClipDataset` whose items come from a cache entry: the same clips, the same
    crops (same per-item generator), and for fixed clips the front-end output itself (a
    :class:`Features` tensor) instead of the waveform.

    Args:
        base: the uncached dataset (items, split, L, seed, skipped and epoch are taken over).
        entry: its cache entry (one per item, in order).
        frontend: the model's front-end (``features`` mode), or None (``wave`` mode).
    """

    def __init__(self, base: ClipDataset, entry: Entry, frontend: nn.Module | None) -> None:
        super().__init__(base.items, split=base.split, clip_samples=base.clip_samples, seed=base.seed,
                         skipped=base.skipped)
        self.epoch = base.epoch
        if len(entry) != len(self.items):
            raise ValueError(f"cache entry {entry.path} has {len(entry)} items, the dataset {len(self.items)}")
        self.entry = entry
        self.frontend = frontend
        self._warned = False

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str, str]:
        it = self.items[index]
        try:
            arr = self.entry.get(index)
        except CorruptEntry as exc:
            return self._recompute(index, str(exc))
        if int(self.entry.kinds[index]) == FEATURE:
            return torch.from_numpy(arr).as_subclass(Features), it.label, it.utt, it.attack
        return self._clip(index, arr)

    def _clip(self, index: int, wave: np.ndarray) -> tuple[torch.Tensor, int, str, str]:
        it = self.items[index]
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.random_crop else None
        clip = torch.from_numpy(np.array(fix_length(wave, self.clip_samples, rng), dtype=np.float32))
        if self.frontend is None:
            return clip, it.label, it.utt, it.attack
        with torch.no_grad():
            feat = self.frontend(clip[None])[0]
        return feat.as_subclass(Features), it.label, it.utt, it.attack

    def _recompute(self, index: int, why: str) -> tuple[torch.Tensor, int, str, str]:
        if not self._warned:
            log.warning("feature cache: %s; reading the audio files instead and discarding the entry", why)
            self._warned = True
            _discard(self.entry.path)
        return self._clip(index, self.waveform(index))

    def waveform(self, index: int) -> np.ndarray:
        if self.split == "train" and int(self.entry.kinds[index]) != FEATURE:  # dev/eval keep their first L only
            try:
                return self.entry.get(index)
            except CorruptEntry:
                pass
        return super().waveform(index)


def cache_mode(frontend: nn.Module | None, device: torch.device) -> str:
    """``features`` when the front-end runs on the CPU and is not the waveform, else ``wave``."""
    from growsearch.data.features import Raw

    if frontend is None or isinstance(frontend, Raw) or device.type != "cpu":
        return "wave"
    return "features"


def cached_splits(splits: Splits, *, cache_root: str | Path, frontend: nn.Module | None, device: torch.device,
                  log_fn: Callable[[str], None] | None = None) -> Splits:
    """``splits`` with every dataset read from the shared cache (built on first use).

    A cache folder that cannot be written leaves ``splits`` as they are (with a warning).

    Raises:
        DataError: an audio file cannot be decoded while building (names it and its protocol line).
    """
    mode = cache_mode(frontend, device)
    fe = None
    if mode == "features" and frontend is not None:
        import copy

        fe = copy.deepcopy(frontend).to("cpu").eval()
    out: dict[str, ClipDataset] = {}
    try:
        for name, ds in splits:
            entry = ensure_entry(Path(cache_root), ds.items, split=name, clip_samples=ds.clip_samples, mode=mode,
                                 frontend=fe, on_build=log.info)
            out[name] = CachedClipDataset(ds, entry, fe if mode == "features" else None)
    except OSError as exc:
        msg = f"feature cache not used: {cache_root} cannot be written ({exc.strerror or exc}); decoding the audio in every epoch"
        log.warning(msg)
        if log_fn is not None:
            log_fn(msg)
        return splits
    return Splits(train=out["train"], dev=out["dev"], eval=out["eval"], dataset=splits.dataset, root=splits.root,
                  asv=splits.asv)


def with_feature_cache(splits: Splits, cfg: Any, frontend: nn.Module | None, device: torch.device,
                       log_fn: Callable[[str], None] | None = None) -> Splits:
    """What the training loop calls: ``splits`` read through the cache when
    ``cfg.feature_cache`` (a :class:`~growsearch.data.config.DataConfig`) is on, else as they are."""
    if not getattr(cfg, "feature_cache", False):
        return splits
    return cached_splits(splits, cache_root=resolved_cache_dir(cfg), frontend=frontend, device=device, log_fn=log_fn)
