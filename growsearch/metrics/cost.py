"""Model cost: parameters and FLOPs.

Conventions:

- A FLOP is ``torch.utils.flop_counter``'s: 2 x multiply-adds of matrix products and
  convolutions (``mm``, ``addmm``, ``bmm``, ``conv``, attention); element-wise work
  (activations, norms, biases, softmax, pooling) is not counted.
- :func:`count_flops` counts one inference forward of ``model.body`` (batch 1) for ``seconds`` of
  16 kHz audio. The front-end (log-Mel, LFCC; no parameters) is **excluded**: it is run once
  on a real zero waveform on the CPU only to learn the feature shape; the body is then run on
  a meta-device copy of the model (no memory, no arithmetic). For ``wav2vec2`` the front-end is
  the identity and the conv feature extractor belongs to the body, so it is counted.
- **Length-aware** (definition :data:`FLOPS_DEFINITION`): the body is counted on the frames
  the audio itself gives. A front-end that cuts or pads its output to a fixed size (ResNet18's
  log-Mel, ``pad_frames=224``) is counted without that cut or pad, so every backbone's count
  scales with the audio's length and :func:`flops_per_second` means the same for all of them
  (the zero frames ResNet18 is padded with are not work on audio; a crop would hide audio).
- :func:`flops_per_second` = ``count_flops(model, clip) / clip`` for the run's clip length:
  what a front's ``flops`` objective holds. For convolutions and recurrent layers it hardly
  depends on the clip length; attention (wav2vec2) grows with it (``T^2``), so the run's own
  clip length is used.
- Recurrent layers (``nn.GRU``, ``nn.LSTM`` without projections, ``nn.RNN``): torch counts a GRU
  on meta (or CPU) exactly as ``2 * T * 3H * (in + H)`` per layer and direction (input and
  recurrent products; biases and gate arithmetic not counted), but only by dispatching every
  time step, which takes seconds for hundreds of frames. The meta copy's RNNs therefore add
  this formula directly (``gates * H`` rows: GRU 3, LSTM 4, RNN 1, read off the weight
  shapes) and return meta outputs of the right shape; ``tests/test_cost.py`` checks it equals
  what torch counts on the real model.
- Attention: on meta, ``scaled_dot_product_attention`` decomposes into two ``bmm``
  (Q K^T and A V), i.e. ``2 * 2 * heads * T^2 * head_dim``. The CPU fused kernels
  (``_scaled_dot_product_flash_attention_for_cpu``, ``..._fused_attention_overrideable``)
  have no formula in torch and would count 0; formulas are registered for them here (passed as
  ``custom_mapping``; torch's global registry is not touched), so counting on a real CPU model
  gives the same number.
- Training: :func:`train_flops_per_sample` = 3 x forward (the usual convention: the backward
  pass costs 2 x the forward, one product for input gradients and one for weight gradients).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from growsearch.metrics.flops_definition import FLOPS_DEFINITION  # noqa: F401 (named in docstrings here)
from growsearch.vocabulary import SAMPLE_RATE


def count_params(model: nn.Module) -> dict[str, int]:
    """Exact parameter counts (shared parameters counted once; structurally fixed entries,
    such as an isolated GRU's old-rows x new-columns zeros, are not parameters and not counted).

    Returns:
        ``{"total": ..., "trainable": ...}``.
    """
    from growsearch.growth.freeze import fixed_entries
    seen: set[int] = set()
    total = trainable = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    params = dict(model.named_parameters())
    for name, mask in fixed_entries(model).items():
        n = int(mask.sum())
        total -= n
        if name in params and params[name].requires_grad:
            trainable -= n
    return {"total": total, "trainable": trainable}


def _sdpa_cpu_flop(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)


def _custom_mapping() -> dict[Any, Any]:
    aten = torch.ops.aten
    mapping: dict[Any, Any] = {}
    for name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_fused_attention_overrideable"):
        if hasattr(aten, name):
            mapping[getattr(aten, name)] = _sdpa_cpu_flop
    return mapping


_CUSTOM = _custom_mapping()


def meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers live on the meta device.

    Tensors are not copied (each is replaced by an empty meta tensor of its shape), so this is
    fast even for ~100 M parameters.
    """
    memo: dict[int, Any] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in memo:
            continue
        m = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(m, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else m
    return copy.deepcopy(model, memo)


_SHAPES: dict[tuple[Any, ...], tuple[int, ...]] = {}


def _frontend_key(frontend: nn.Module, samples: int) -> tuple[Any, ...]:
    """What a parameter-free front-end's output shape depends on: its type, configuration and buffers."""
    simple = (int, float, bool, str, type(None))
    conf = []
    for mod_name, mod in frontend.named_modules():
        attrs = tuple(sorted((k, v) for k, v in vars(mod).items() if not k.startswith("_") and isinstance(v, simple)))
        bufs = tuple((k, tuple(b.shape)) for k, b in mod.named_buffers(recurse=False))
        conf.append((mod_name, type(mod).__qualname__, attrs, bufs))
    return (repr(frontend), tuple(conf), samples)


def feature_shape(model: nn.Module, seconds: float = 1.0, sample_rate: int = SAMPLE_RATE) -> tuple[int, ...]:
    """The shape of ``model.frontend(zeros(1, seconds * sample_rate))``, computed on the CPU,
    without a fixed-size cut or pad of the frames (a front-end's ``pad_frames`` is ignored).

    The result is cached per front-end configuration (type, public scalar attributes, buffer
    shapes, ``repr``) and length: front-ends hold no parameters and do not grow.
    """
    samples = max(1, int(round(seconds * sample_rate)))
    frontend = getattr(model, "frontend", None)
    if frontend is None:
        return (1, samples)
    key = _frontend_key(frontend, samples)
    if key not in _SHAPES:
        fe = copy.deepcopy(frontend).to("cpu")
        for mod in fe.modules():  # length-aware: no fixed-size cut or pad (see the module docstring)
            if getattr(mod, "pad_frames", None) is not None:
                mod.pad_frames = None
        with torch.no_grad():
            _SHAPES[key] = tuple(fe(torch.zeros(1, samples)).shape)
    return _SHAPES[key]


def count_flops(model: nn.Module, seconds: float = 1.0, sample_rate: int = SAMPLE_RATE) -> int:
    """Inference FLOPs (2 x multiply-adds) of ``model.body`` for one clip of ``seconds`` audio.

    Args:
        model: a backbone (``frontend`` + ``body``); a plain module without ``body`` is counted
            through ``forward`` on a waveform ``(1, samples)``.
        seconds: clip length in seconds.
        sample_rate: samples per second (16 kHz in growsearch).

    Returns:
        FLOPs for batch size 1 (front-end excluded; see the module docstring).
    """
    shape = feature_shape(model, seconds, sample_rate)
    meta = meta_copy(model).eval()
    rnn_flops = [0]
    for mod in meta.modules():
        if isinstance(mod, (nn.GRU, nn.RNN)) or (isinstance(mod, nn.LSTM) and not mod.proj_size):
            mod.forward = _rnn_by_formula(mod, rnn_flops)  # type: ignore[method-assign]
    x = torch.zeros(shape, device="meta")
    fn: nn.Module = getattr(meta, "body", meta)
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
        fn(x)
    return int(counter.get_total_flops()) + rnn_flops[0]


def flops_per_second(model: nn.Module, seconds: float = 1.0, sample_rate: int = SAMPLE_RATE) -> float:
    """Inference FLOPs per second of audio, counted on a clip of ``seconds``: the ``flops``
    metric (definition :data:`FLOPS_DEFINITION`)."""
    return count_flops(model, seconds, sample_rate) / float(seconds)


def _rnn_by_formula(mod: nn.RNNBase, acc: list[int]) -> Any:
    """A forward for a meta RNN that adds ``2 * B * T * (|W_ih| + |W_hh|)`` per layer and direction
    to ``acc[0]`` and returns zero meta outputs shaped like the real ones."""
    dirs = 2 if mod.bidirectional else 1
    original = type(mod).forward

    def forward(input: Any, hx: Any = None) -> Any:  # noqa: A002 - torch's RNN.forward signature
        if not isinstance(input, torch.Tensor):  # packed sequences: let torch dispatch step by step
            return original(mod, input, hx)
        if input.dim() == 3:
            b, t = (input.shape[0], input.shape[1]) if mod.batch_first else (input.shape[1], input.shape[0])
        else:
            b, t = 1, input.shape[0]
        for k in range(mod.num_layers):
            for sfx in ("", "_reverse")[:dirs]:
                w_ih = getattr(mod, f"weight_ih_l{k}{sfx}")
                w_hh = getattr(mod, f"weight_hh_l{k}{sfx}")
                acc[0] += 2 * b * t * (w_ih.numel() + w_hh.numel())
        h = getattr(mod, f"weight_hh_l{mod.num_layers - 1}").shape[1]
        if input.dim() == 3:
            out_shape: tuple[int, ...] = (b, t, dirs * h) if mod.batch_first else (t, b, dirs * h)
            h_shape: tuple[int, ...] = (mod.num_layers * dirs, b, h)
        else:
            out_shape, h_shape = (t, dirs * h), (mod.num_layers * dirs, h)
        out = torch.zeros(out_shape, device=input.device, dtype=input.dtype)
        hn = torch.zeros(h_shape, device=input.device, dtype=input.dtype)
        return out, ((hn, hn.clone()) if isinstance(mod, nn.LSTM) else hn)

    return forward


def train_flops_per_sample(model: nn.Module, seconds: float = 1.0, sample_rate: int = SAMPLE_RATE) -> int:
    """Training FLOPs per clip: forward + backward = 3 x :func:`count_flops` (backward = 2 x forward).

    Parameters that do not train (frozen) still need input gradients, so the convention is kept
    whatever is frozen; it is an estimate, not a count of the backward graph.
    """
    return 3 * count_flops(model, seconds, sample_rate)
