"""Load pretrained Wav2Vec2 weights from a local file into a ``wav2vec2`` backbone.

Accepted files (read with ``torch.load(..., weights_only=True)``; nothing is downloaded):

- a torchaudio ``Wav2Vec2Model`` state dict (what ``bundle.get_model().state_dict()`` or
  ``torch.save(model.state_dict())`` writes), keys like ``encoder.transformer.layers.0...``;
- a growsearch ``wav2vec2`` backbone state dict (keys ``wav2vec2.*`` and ``head.*``): the
  ``wav2vec2.*`` part is loaded, the head is ignored;
- a Hugging Face ``Wav2Vec2Model`` / ``Wav2Vec2ForCTC`` / ``Wav2Vec2ForPreTraining`` state dict
  (``pytorch_model.bin`` saved by ``transformers``; keys ``wav2vec2.feature_projection...``,
  ``encoder.layers.0.attention...``), renamed the way ``torchaudio``'s
  ``import_huggingface_model`` maps modules, without needing ``transformers`` installed;
  ``.safetensors`` files are not read (the ``safetensors`` package is not a dependency);
- a fairseq wav2vec 2.0 state dict, or a fairseq checkpoint whose ``model`` entry holds it,
  renamed with torchaudio's ``import_fairseq._convert_state_dict`` (pure key mapping; no
  ``fairseq`` needed). Note: most original fairseq ``.pt`` checkpoints also pickle an
  ``argparse.Namespace``/``omegaconf`` config, which ``weights_only=True`` refuses; re-save
  ``ckpt["model"]`` alone with ``torch.save`` first.

Auxiliary parts that this backbone does not have (CTC ``lm_head``/``aux``, quantizer,
``mask_emb``, ``project_q``, ``final_proj``, ...) are ignored. Everything else must match the
model's keys and shapes exactly, or a :class:`~growsearch.errors.ConfigError` names the file
and the first mismatching keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from growsearch.errors import ConfigError

#: Keys (after renaming to torchaudio's names) that a plain Wav2Vec2 encoder does not use.
_IGNORED = re.compile(
    r"^(aux\.|lm_head\.|quantizer\.|project_q\.|project_hid\.|final_proj\.|mask_emb|masked_spec_embed|"
    r"label_embs_concat|dropout_features|head\.|classifier\.|projector\.)"
)
_SHOW = 5


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file and return its tensors as stored (unwrapping ``model``/``state_dict``).

    Raises:
        ConfigError: the file is missing, is not a ``torch.save`` checkpoint readable with
            ``weights_only=True``, or holds no state dict.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"pretrained: {p}: no such file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the weights-only unpickler raises many types on foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"pretrained: {p}: not a torch checkpoint readable with weights_only=True ({first})") from None
    return _unwrap(obj, p)


def _unwrap(obj: Any, p: Path) -> dict[str, torch.Tensor]:
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise ConfigError(f"pretrained: {p}: expected a state dict (a mapping of tensor names to tensors), got {type(obj).__name__}")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ConfigError(f"pretrained: {p}: the file holds no tensors (keys: {', '.join(list(map(str, obj))[:_SHOW])})")
    return tensors


def detect_format(keys: list[str]) -> str:
    """``torchaudio``, ``growsearch``, ``huggingface`` or ``fairseq`` (best guess from key names)."""
    ks = set(keys)
    if any(k.startswith("wav2vec2.encoder.transformer.") for k in ks):
        return "growsearch"
    if any(k.startswith("encoder.transformer.") or k.startswith("encoder.feature_projection.") for k in ks):
        return "torchaudio"
    if any(k.startswith(("wav2vec2.feature_projection.", "feature_projection.")) for k in ks):
        return "huggingface"
    if any(k.startswith(("post_extract_proj.", "w2v_model.", "encoder.pos_conv.")) or ".self_attn." in k for k in ks):
        return "fairseq"
    return "torchaudio"


def convert_state_dict(sd: Mapping[str, torch.Tensor], *, source: str = "pretrained") -> dict[str, torch.Tensor]:
    """Rename a state dict of any supported format to torchaudio ``Wav2Vec2Model`` keys.

    Ignored auxiliary keys are dropped. Raises:
        ConfigError: a fairseq key that torchaudio's converter does not know.
    """
    fmt = detect_format(list(sd))
    out: dict[str, torch.Tensor] = {}
    if fmt == "fairseq":
        from torchaudio.models.wav2vec2.utils.import_fairseq import _map_key

        for k, v in sd.items():
            try:
                nk = _map_key(k)
            except ValueError:
                raise ConfigError(f"pretrained: {source}: unexpected fairseq key {k!r}") from None
            if nk is not None:
                out[nk] = v
    elif fmt == "huggingface":
        for k, v in sd.items():
            nk = k[len("wav2vec2."):] if k.startswith("wav2vec2.") else k
            if nk.startswith("feature_projection."):
                nk = "encoder." + nk
            elif nk.startswith("encoder."):
                nk = "encoder.transformer." + nk[len("encoder."):]
            out[nk] = v
    elif fmt == "growsearch":
        out = {k[len("wav2vec2."):]: v for k, v in sd.items() if k.startswith("wav2vec2.")}
    else:
        out = dict(sd)
    # old weight_norm names (weight_g / weight_v) -> parametrization names used by torchaudio now
    renamed = {}
    for k, v in out.items():
        k = re.sub(r"pos_conv_embed\.conv\.weight_g$", "pos_conv_embed.conv.parametrizations.weight.original0", k)
        k = re.sub(r"pos_conv_embed\.conv\.weight_v$", "pos_conv_embed.conv.parametrizations.weight.original1", k)
        renamed[k] = v
    return {k: v for k, v in renamed.items() if not _IGNORED.match(k)}


def load_pretrained(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load a weights file into a ``wav2vec2`` backbone (its ``.wav2vec2`` part) or a bare
    torchaudio ``Wav2Vec2Model``.

    Args:
        model: a :class:`~growsearch.backbones.wav2vec2.Wav2Vec2Backbone` (not yet grown) or a
            ``torchaudio.models.Wav2Vec2Model``.
        path: the weights file (see the module docstring for the formats).

    Returns:
        ``{"path", "format", "loaded"}``: the file, the detected format and the number of tensors loaded.

    Raises:
        ConfigError: the file is missing or unreadable, or its keys/shapes do not fit the model
            (the message lists the first missing, unexpected and mis-shaped keys).
    """
    target = getattr(model, "wav2vec2", model)
    p = Path(os.fspath(path))
    raw = read_state_dict(p)
    fmt = detect_format(list(raw))
    sd = convert_state_dict(raw, source=str(p))
    own = target.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} (file {tuple(sd[k].shape)}, model {tuple(own[k].shape)})" for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches: {'; '.join(shapes[:_SHOW])}")
        if missing:
            parts.append(f"{len(missing)} keys missing from the file: {', '.join(missing[:_SHOW])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {', '.join(unexpected[:_SHOW])}")
        raise ConfigError(f"pretrained: {p}: does not fit this wav2vec2 model: " + " | ".join(parts))
    target.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)
    loaded = len(sd)
    embed = getattr(model, "masked_spec_embed", None)  # learned time masking: the file's mask embedding
    for key in ("masked_spec_embed", "wav2vec2.masked_spec_embed", "mask_emb", "w2v_model.mask_emb"):
        if isinstance(embed, torch.Tensor) and key in raw and raw[key].shape == embed.shape:
            with torch.no_grad():
                embed.copy_(raw[key].to(embed.dtype))
            loaded += 1
            break
    return {"path": str(p), "format": fmt, "loaded": loaded}
