"""A tiny growable backbone for the growth-machinery tests (freeze, optimizer, checkpoints).

``ToyMLP``: Raw front-end -> first ``in_dim`` samples -> ``fc1`` (+ parallel branches
``par1.k``) -> ReLU -> ``fc2`` -> ``bn2`` -> ReLU -> ``head`` -> logits ``(batch, 2)``.
Growth points: ``fc1`` (inplace or parallel) and ``fc2`` (inplace, with BatchNorm).
An in-place growth of ``fc1`` *inserts* columns into ``fc2`` before the parallel
branches' columns, so its TensorChange is not a plain top-left block.
It is registered under ``toy_mlp`` only inside the ``toy_registered`` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from growsearch.backbones import registry
from growsearch.backbones.base import Backbone, GrowthPoint
from growsearch.data.features import Raw
from growsearch.growth.surgery import SurgeryResult, TensorChange

TOY = "toy_mlp"


def _rand(shape: tuple[int, ...], g: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, generator=g) * 0.3


class ToyMLP(Backbone):
    input_kind = "raw"

    def __init__(self, in_dim: int = 8, h1: int = 4, h2: int = 3) -> None:
        super().__init__()
        self.in_dim, self.base = in_dim, {"fc1": h1, "fc2": h2}
        self.frontend = Raw()
        self.fc1 = nn.Linear(in_dim, h1)
        self.par1 = nn.ModuleList()
        self.fc2 = nn.Linear(h1, h2)
        self.bn2 = nn.BatchNorm1d(h2)
        self.head = nn.Linear(h2, 2)

    def body(self, features: torch.Tensor) -> torch.Tensor:
        x = features[:, : self.in_dim]
        h = torch.relu(torch.cat([self.fc1(x), *[b(x) for b in self.par1]], dim=1))
        return self.head(torch.relu(self.bn2(self.fc2(h))))

    def growth_points(self) -> dict[str, GrowthPoint]:
        return {
            "fc1": GrowthPoint("fc1", self.base["fc1"], forms=("inplace", "parallel"), shrink_rules=("appended",)),
            "fc2": GrowthPoint("fc2", self.base["fc2"], shrink_rules=("appended",)),
        }

    def width(self, point: str) -> int:
        if point == "fc1":
            return self.fc1.out_features + sum(b.out_features for b in self.par1)
        return self.fc2.out_features

    # -- surgery helpers ---------------------------------------------------------------
    @staticmethod
    def _replace(mod: nn.Module, attr: str, value: torch.Tensor, *, param: bool = True) -> None:
        if param:
            setattr(mod, attr, nn.Parameter(value.contiguous()))
        else:
            setattr(mod, attr, value.contiguous())

    def _remap(self, res: SurgeryResult, name: str, mod: nn.Module, attr: str, ch: TensorChange, fill: torch.Tensor, *, param: bool = True) -> None:
        old = getattr(mod, attr).detach()
        new = fill.clone().to(old.dtype)
        new[ch.new_mask()] = fill[ch.new_mask()]
        new[torch.meshgrid(*ch.dst, indexing="ij")] = old[torch.meshgrid(*ch.src, indexing="ij")]
        self._replace(mod, attr, new, param=param)
        res.changed[name] = ch

    def _grow(self, point: str, neurons: int, *, form: str, init: str, generator: torch.Generator | None) -> SurgeryResult:
        g = generator
        res = SurgeryResult(point, "grow", neurons)
        fan_out = (lambda s: torch.zeros(s)) if init == "zero_fanout" else (lambda s: _rand(s, g))
        if point == "fc1":
            a, total = self.fc1.out_features, self.width("fc1")
            out2 = self.fc2.out_features
            if form == "parallel":
                k = len(self.par1)
                br = nn.Linear(self.in_dim, neurons)
                with torch.no_grad():
                    br.weight.copy_(_rand(tuple(br.weight.shape), g))
                    br.bias.zero_()
                self.par1.append(br)
                res.added |= {f"par1.{k}.weight", f"par1.{k}.bias"}
                ch = TensorChange.appended((out2, total), (out2, total + neurons))
            else:
                for attr, shape in (("weight", (a + neurons, self.in_dim)), ("bias", (a + neurons,))):
                    ch1 = TensorChange.appended(tuple(getattr(self.fc1, attr).shape), shape)
                    self._remap(res, f"fc1.{attr}", self.fc1, attr, ch1, _rand(shape, g))
                self.fc1.out_features = a + neurons
                # fc2 columns: [0, a) stay, [a, total) move to [a + n, total + n)
                cols_src = torch.arange(total)
                cols_dst = torch.cat([torch.arange(a), torch.arange(a + neurons, total + neurons)])
                ch = TensorChange((out2, total), (out2, total + neurons), (torch.arange(out2), cols_src), (torch.arange(out2), cols_dst))
            self._remap(res, "fc2.weight", self.fc2, "weight", ch, fan_out((out2, total + neurons)))
            self.fc2.in_features = total + neurons
            return res
        if point == "fc2":
            w = self.fc2.out_features
            n2 = w + neurons
            for attr, shape in (("weight", (n2, self.fc2.in_features)), ("bias", (n2,))):
                self._remap(res, f"fc2.{attr}", self.fc2, attr, TensorChange.appended(tuple(getattr(self.fc2, attr).shape), shape), _rand(shape, g))
            self.fc2.out_features = n2
            for attr, fill, is_param in (("weight", 1.0, True), ("bias", 0.0, True), ("running_mean", 0.0, False), ("running_var", 1.0, False)):
                self._remap(res, f"bn2.{attr}", self.bn2, attr, TensorChange.appended((w,), (n2,)), torch.full((n2,), fill), param=is_param)
            self.bn2.num_features = n2
            self._remap(res, "head.weight", self.head, "weight", TensorChange.appended((2, w), (2, n2)), fan_out((2, n2)))
            self.head.in_features = n2
            return res
        raise ValueError(point)

    def _shrink(self, point: str, neurons: int, *, rule: str) -> SurgeryResult:
        n = neurons
        res = SurgeryResult(point, "shrink", n)
        if point == "fc1":
            if len(self.par1):
                raise NotImplementedError("the toy shrinks in-place growth only")
            a = self.fc1.out_features
            keep = torch.arange(a - n)
            for attr in ("weight", "bias"):
                t = getattr(self.fc1, attr)
                ch = TensorChange.kept(tuple(t.shape), {0: keep})
                self._replace(self.fc1, attr, ch.carry(t.detach()))
                res.changed[f"fc1.{attr}"] = ch
            self.fc1.out_features = a - n
            ch = TensorChange.kept(tuple(self.fc2.weight.shape), {1: keep})
            self._replace(self.fc2, "weight", ch.carry(self.fc2.weight.detach()))
            res.changed["fc2.weight"] = ch
            self.fc2.in_features = a - n
            return res
        w = self.fc2.out_features
        keep = torch.arange(w - n)
        for mod, prefix, attrs in ((self.fc2, "fc2", (("weight", True), ("bias", True))),
                                   (self.bn2, "bn2", (("weight", True), ("bias", True), ("running_mean", False), ("running_var", False)))):
            for attr, is_param in attrs:
                t = getattr(mod, attr)
                ch = TensorChange.kept(tuple(t.shape), {0: keep})
                self._replace(mod, attr, ch.carry(t.detach()), param=is_param)
                res.changed[f"{prefix}.{attr}"] = ch
        self.fc2.out_features = self.bn2.num_features = w - n
        ch = TensorChange.kept(tuple(self.head.weight.shape), {1: keep})
        self._replace(self.head, "weight", ch.carry(self.head.weight.detach()))
        res.changed["head.weight"] = ch
        self.head.in_features = w - n
        return res


@pytest.fixture
def toy_registered() -> Iterator[str]:
    """Register ``toy_mlp`` for one test, and remove it again so the contract tests never see it."""
    if TOY not in registry._REGISTRY:
        registry.register_backbone(TOY, presets={"tiny": {}}, default_preset="tiny")(ToyMLP)
    try:
        yield TOY
    finally:
        registry._REGISTRY.pop(TOY, None)
