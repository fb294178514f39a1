"""What a run starts from: the device, the mixed-precision dtype and the fresh model.

:func:`build_model` is the one route for pretrained weights. ``model.pretrained: FILE`` and
``model.options.pretrained: FILE`` mean the same for a backbone that reads weights files
itself (:attr:`~growsearch.backbones.base.Backbone.pretrained_option`, the wav2vec2 family):
the file goes to its factory as ``pretrained=FILE``. Any other backbone takes
``model.pretrained`` only, as a state dict of itself (or a growsearch model checkpoint of it),
loaded strictly.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from growsearch.backbones import Backbone, create_backbone
from growsearch.errors import ConfigError
from growsearch.train.config import TrainConfig

__all__ = ["build_model", "resolve_amp", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available else CPU.

    Raises:
        ConfigError: ``cuda`` requested without a CUDA device.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device: 'cuda' requested but no CUDA device is available (got 'cuda'); use auto or cpu")
    if name == "cuda":  # deterministic cuBLAS (read when cuBLAS initialises)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.device(name)


def resolve_amp(amp: str | bool, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 where supported, else fp16; ``None`` on the CPU or ``amp: false``."""
    if device.type != "cuda" or amp is False:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def build_model(config: TrainConfig) -> Backbone:
    """The fresh backbone of ``config.model``, with its pretrained weights if any.

    See the module docstring for how ``model.pretrained`` is read.

    Raises:
        ConfigError: unknown backbone/preset/option, a pretrained file that is missing or
            does not fit, or ``model.pretrained`` and ``model.options.pretrained`` both set.
    """
    m = config.model
    model = create_backbone(m.backbone, m.preset, **dict(m.options))
    if m.pretrained:
        p = Path(os.path.expanduser(m.pretrained))
        if not p.is_file():
            raise ConfigError(f"model.pretrained: file not found (got {m.pretrained!r})")
        if type(model).pretrained_option:
            if "pretrained" in m.options:
                raise ConfigError("model.pretrained and model.options.pretrained are both set; keep one")
            model = create_backbone(m.backbone, m.preset, **dict(m.options), pretrained=str(p))
        else:
            _load_state_dict_file(model, p, m.backbone)
    model.max_params = m.max_params  # the size limit its schedules are checked against
    return model


def _load_state_dict_file(model: Backbone, path: Path, backbone: str) -> None:
    """Load ``path`` (a state dict, or a dict with one under ``state_dict``) strictly."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and "state_dict" in sd:
            sd = sd["state_dict"]
        model.load_state_dict(sd)
    except Exception as exc:  # noqa: BLE001 - any load failure is a problem with the user's file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"model.pretrained: {path} does not fit backbone {backbone!r}: {first[:300]}") from None
