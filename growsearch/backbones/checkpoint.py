"""Model checkpoints of grown backbones: spec + applied growth events + weights.

A grown model's state dict does not load into a freshly built backbone (the shapes
differ), so a checkpoint stores how to rebuild it: the registry spec
(``model.spec.to_dict()``), the events applied so far (``model.history``), then the weights.
:func:`load_model` builds from the spec, replays the events and loads the state dict.

Files are written atomically (temporary file in the same folder + ``os.replace``), so a
killed writer never leaves a half-written checkpoint, and read with
``torch.load(weights_only=True)``: ``extra`` may hold only tensors and primitive
containers (dict, list, tuple, str, int, float, bool, None).

This is the one writer of the checkpoint blob (:func:`model_blob`): the training loop keeps
the best epoch's blob in memory and writes it later, and writes its resumable state with
:func:`save_model`. It lives next to the registry that rebuilds the models it stores.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from growsearch.atomic import atomic_write
from growsearch.backbones.registry import create_from_spec
from growsearch.errors import ConfigError, GrowsearchError

__all__ = ["CHECKPOINT_FORMAT", "atomic_torch_save", "load_model", "model_blob", "read_checkpoint", "save_model"]

#: Marks a growsearch model checkpoint (and its layout version).
CHECKPOINT_FORMAT = "growsearch-model/1"


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file next to ``path``, fsync, then ``os.replace``.

    Returns:
        The path written.
    """
    return atomic_write(path, lambda fh: torch.save(obj, fh), binary=True)


def model_blob(model: Any, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint dict of ``model``: format, spec, events and a CPU copy of the weights.

    The weights and events are copied, so the blob stays as it is while the model trains on
    (the loop keeps the best epoch's blob in memory).

    Args:
        model: a :class:`~growsearch.backbones.base.Backbone` built by the registry
            (``model.spec`` set).
        extra: anything else to keep (epoch, metrics, optimizer/freeze state dicts);
            tensors and primitive containers only. Stored as given (not copied).

    Raises:
        ValueError: the model has no spec (was not built by ``create_backbone``).
    """
    if getattr(model, "spec", None) is None:
        raise ValueError("a model checkpoint needs a backbone built by create_backbone (model.spec is None)")
    return {
        "format": CHECKPOINT_FORMAT,
        "spec": model.spec.to_dict(),
        "history": copy.deepcopy(list(model.history)),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "extra": {} if extra is None else extra,
    }


def save_model(path: str | Path, model: Any, *, extra: dict[str, Any] | None = None) -> Path:
    """Write :func:`model_blob` of ``model`` atomically (folders are created).

    Returns:
        The path written.

    Raises:
        ValueError: the model has no spec (was not built by ``create_backbone``).
    """
    return atomic_torch_save(model_blob(model, extra=extra), path)


def read_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint file's dict (``weights_only=True``).

    Raises:
        ConfigError: the file is missing, unreadable, corrupt or not a growsearch model checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: model checkpoint not found")
    try:
        blob = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{p}: not a readable model checkpoint ({first[:200]})") from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        got = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise ConfigError(f"{p}: not a growsearch model checkpoint (format {got!r}, expected {CHECKPOINT_FORMAT!r})")
    for key in ("spec", "history", "state_dict"):
        if key not in blob:
            raise ConfigError(f"{p}: model checkpoint lacks {key!r}")
    return blob


def load_model(path: str | Path, *, map_location: str | torch.device = "cpu") -> tuple[Any, dict[str, Any]]:
    """Rebuild a grown backbone from a checkpoint: spec -> replay events -> weights.

    Args:
        path: a file written by :func:`save_model`.
        map_location: where the tensors go.

    Returns:
        ``(model, extra)``; the model is in training mode, on the CPU unless ``map_location``
        says otherwise (move it yourself).

    Raises:
        ConfigError: missing/corrupt/foreign file, an unknown backbone, events that no
            longer replay, or weights that do not fit the rebuilt model.
    """
    blob = read_checkpoint(path, map_location=map_location)
    p = Path(path)
    try:
        model = create_from_spec(blob["spec"])
        model.replay(list(blob["history"]))
    except GrowsearchError as exc:
        raise ConfigError(f"{p}: cannot rebuild the model: {exc}") from None
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ConfigError(f"{p}: weights do not fit the rebuilt {blob['spec'].get('name')!r} model: {' '.join(first[:3])[:300]}") from None
    if map_location not in ("cpu", torch.device("cpu")):
        model.to(map_location)
    return model, dict(blob.get("extra") or {})
