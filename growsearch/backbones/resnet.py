"""ResNet-18-style backbone on 64-bin log-Mel (``resnet18``), growable per stage and head.

Architecture (preset ``paper``): log-Mel ``(B, 64, 224)`` -> ``(B, 1, 64, 224)`` -> stem
(7x7 conv stride 2, BatchNorm, ReLU, 3x3 max-pool stride 2) -> four stages of BasicBlocks
([2, 2, 2, 2] blocks, widths 64/128/256/512, stride 1/2/2/2) -> global average pool ->
classifier ``Linear(width4, hidden) -> ReLU -> Linear(hidden, 2)`` (``head: mlp``, growsearch's
default), or the authors' single ``fc = Linear(width4, 2)`` (``head: linear``, preset ``authors``:
11,171,266 parameters, torchvision's ResNet-18 with a 1-channel stem and a 2-way ``fc``).

Growth points:

- ``stage1`` .. ``stage4``: the inner width of every block of the stage (``conv1``/``bn1``
  out-channels, ``conv2`` in-channels; the residual path never changes) in the ``inplace``
  form; or, in the paper's ``parallel`` form, a one-block branch (a BasicBlock from the stage
  input to ``k`` channels with a projection shortcut and the stage's stride) whose output is
  concatenated on channels to the stage output. The consumers of the stage output (the next
  stage's first ``conv1`` and its ``downsample`` conv, and the ``conv1`` and projection of
  every parallel branch of the next stage; for ``stage4`` the classifier's first Linear,
  ``fc1`` or ``fc``) get new input columns. ``net2net`` is in-place only.
- ``head`` (``head: mlp`` only): the classifier hidden layer (``fc1`` rows, ``fc2`` columns).

``width(stage)`` = inner width + channels of all parallel branches of the stage. Each
point keeps a stack of what was grown (form and units, appended at the end); a shrink
removes from the top of that stack: ``appended`` drops the last units (whole branches
when a branch's units are all removed), ``magnitude`` drops, within the same in-place
block or branch, the units whose fan-in rows have the smallest L2 norm.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from growsearch.backbones.base import Backbone, GrowthPoint
from growsearch.backbones.registry import register_backbone
from growsearch.data.features import create_frontend
from growsearch.errors import ConfigError
from growsearch.growth.check import growth_point
from growsearch.growth.init import INIT_NET2NET, Net2NetPlan, redraw_default_
from growsearch.growth.surgery import SurgeryResult, TensorChange
from growsearch.growth.widen import (
    Layer,
    keep_appended,
    keep_largest,
    narrow_in,
    narrow_norm,
    narrow_out,
    prefixed,
    row_norms,
    widen_in,
    widen_norm,
    widen_out,
)
from growsearch.vocabulary import INITS, SHRINK_RULES


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    Shapes: ``(B, cin, H, W)`` -> ``(B, cout, H / stride, W / stride)``.

    Args:
        cin: input channels.
        inner: channels between ``conv1`` and ``conv2`` (the growable width).
        cout: output channels.
        stride: stride of ``conv1`` and of the shortcut.
        projection: force a 1x1 conv + BatchNorm shortcut (``downsample``) even when the
            identity would fit.
    """

    def __init__(self, cin: int, inner: int, cout: int, stride: int = 1, *, projection: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, inner, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Sequential | None = None
        if projection or stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = x if self.downsample is None else self.downsample(x)
        return torch.relu(y + s)


class Stage(nn.Module):
    """A stage: BasicBlocks in sequence, plus parallel branches concatenated on channels.

    Shapes: ``(B, cin, H, W)`` -> ``(B, cout + sum(branch widths), H', W')``.
    """

    def __init__(self, cin: int, width: int, n_blocks: int, stride: int) -> None:
        super().__init__()
        blocks = [BasicBlock(cin, width, width, stride, projection=stride != 1 or cin != width)]
        blocks += [BasicBlock(width, width, width, 1) for _ in range(n_blocks - 1)]
        self.blocks = nn.Sequential(*blocks)
        self.branches = nn.ModuleList()

    def block(self, i: int) -> BasicBlock:
        """Block ``i`` of the sequence (``nn.Sequential`` indexing is typed ``Module``)."""
        return cast(BasicBlock, self.blocks[i])

    def branch_blocks(self) -> list[BasicBlock]:
        """The parallel branches, in order (``nn.ModuleList`` items are typed ``Module``)."""
        return [cast(BasicBlock, b) for b in self.branches]

    @property
    def in_channels(self) -> int:
        return self.block(0).conv1.in_channels

    @property
    def base_out(self) -> int:
        return self.block(-1).conv2.out_channels

    @property
    def out_channels(self) -> int:
        return self.base_out + sum(b.conv2.out_channels for b in self.branch_blocks())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.blocks(x)
        if len(self.branches):
            y = torch.cat([y, *[b(x) for b in self.branches]], dim=1)
        return y


class ResNet18(Backbone):
    """ResNet-18-style detector on log-Mel features (see module docstring).

    Args:
        widths: output channels of stages 1-4.
        blocks: BasicBlocks per stage.
        hidden: units of the classifier hidden layer (``head: mlp``).
        stem_width: channels of the stem conv (default ``widths[0]``).
        n_mels: Mel bins of the front-end.
        head: ``mlp`` (``fc1 -> ReLU -> fc2``, growable) or ``linear`` (one ``fc``, the authors').
    """

    input_kind = "logmel"
    stage1: Stage  # set in __init__ (setattr by name)
    stage2: Stage
    stage3: Stage
    stage4: Stage

    def __init__(
        self,
        *,
        widths: tuple[int, int, int, int] | list[int] = (64, 128, 256, 512),
        blocks: tuple[int, int, int, int] | list[int] = (2, 2, 2, 2),
        hidden: int = 128,
        stem_width: int | None = None,
        n_mels: int = 64,
        head: str = "mlp",
    ) -> None:
        super().__init__()
        if head not in ("mlp", "linear"):
            raise ConfigError(f"resnet18: head {head!r} is not one of mlp, linear")
        if len(widths) != 4 or len(blocks) != 4:
            raise TypeError(f"widths and blocks need 4 entries each, got widths={list(widths)} blocks={list(blocks)}")
        self.widths = tuple(int(w) for w in widths)
        self.n_blocks = tuple(int(b) for b in blocks)
        self.hidden = int(hidden)
        stem = int(stem_width or self.widths[0])
        self.frontend = create_frontend("logmel", n_mels=n_mels)
        self.stem = nn.Sequential(
            nn.Conv2d(1, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        cin = stem
        for i, (w, nb) in enumerate(zip(self.widths, self.n_blocks)):
            setattr(self, f"stage{i + 1}", Stage(cin, w, nb, 1 if i == 0 else 2))
            cin = w
        self.head_kind = head
        if head == "mlp":
            self.fc1 = nn.Linear(cin, self.hidden)
            self.fc2 = nn.Linear(self.hidden, 2)
        else:
            self.fc = nn.Linear(cin, 2)
        self._stacks: dict[str, list[list[Any]]] = {p: [] for p in self.growth_points()}

    # ---- forward ---------------------------------------------------------------------
    def body(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features: log-Mel ``(B, n_mels, frames)``. Returns: logits ``(B, 2)``."""
        x = self.stem(features.unsqueeze(1))
        for s in self.stages():
            x = s(x)
        x = x.mean(dim=(2, 3))
        if self.head_kind == "linear":
            return self.fc(x)
        return self.fc2(torch.relu(self.fc1(x)))

    def stages(self) -> list[Stage]:
        return [self.stage1, self.stage2, self.stage3, self.stage4]

    # ---- growth points ---------------------------------------------------------------
    def growth_points(self) -> dict[str, GrowthPoint]:
        pts = {
            f"stage{i + 1}": GrowthPoint(
                f"stage{i + 1}",
                self.widths[i],
                forms=("inplace", "parallel"),
                inits=INITS,
                shrink_rules=SHRINK_RULES,
                unit="channel",
                excluded=(("parallel", "net2net"),),
                description=f"inner width of every block of stage {i + 1} (inplace), or a parallel one-block branch "
                f"concatenated to the stage output (parallel; random/zero_fanout only)",
            )
            for i in range(4)
        }
        if self.head_kind == "linear":
            return pts
        pts["head"] = GrowthPoint(
            "head", self.hidden, forms=("inplace",), inits=INITS, shrink_rules=SHRINK_RULES, unit="neuron",
            description="classifier hidden layer",
        )
        return pts

    def width(self, point: str) -> int:
        if point == "head":
            return self.fc1.out_features
        stage = self._stage(point)
        return stage.block(0).conv1.out_channels + sum(b.conv2.out_channels for b in stage.branch_blocks())

    def _stage(self, point: str) -> Stage:
        growth_point(self.growth_points(), point)
        return getattr(self, point)

    def _consumers(self, s: int) -> list[tuple[str, Layer]]:
        """Layers reading the output of stage ``s`` (1-based), by name: the next stage's first
        block and its parallel branches (``conv1`` and projection), or ``fc1``/``fc`` after stage 4."""
        if s == 4:
            return [("fc", self.fc)] if self.head_kind == "linear" else [("fc1", self.fc1)]
        stage: Stage = getattr(self, f"stage{s + 1}")
        heads = [(f"stage{s + 1}.blocks.0", stage.block(0))]
        heads += [(f"stage{s + 1}.branches.{j}", b) for j, b in enumerate(stage.branch_blocks())]
        out: list[tuple[str, Layer]] = []
        for pre, block in heads:  # the first block and every parallel branch read the stage input
            out.append((f"{pre}.conv1", block.conv1))
            if block.downsample is not None:
                out.append((f"{pre}.downsample.0", cast(nn.Conv2d, block.downsample[0])))
        return out

    # ---- grow ------------------------------------------------------------------------
    def _grow(self, point: str, neurons: int, *, form: str, init: str, generator: torch.Generator | None) -> SurgeryResult:
        """Add ``neurons`` units at ``point`` (see module docstring); checked by :meth:`Backbone.grow`."""
        res = SurgeryResult(point, "grow", neurons)
        if point == "head":
            plan = Net2NetPlan.draw(self.fc1.out_features, neurons, generator) if init == INIT_NET2NET else None
            res.changed.update(prefixed("fc1", widen_out(self.fc1, neurons, init=init, generator=generator, plan=plan)))
            res.changed.update(prefixed("fc2", widen_in(self.fc2, neurons, init=init, generator=generator, plan=plan)))
        elif form == "inplace":
            stage = getattr(self, point)
            for b, block in enumerate(stage.blocks):
                pre = f"{point}.blocks.{b}"
                plan = Net2NetPlan.draw(block.conv1.out_channels, neurons, generator) if init == INIT_NET2NET else None
                res.changed.update(prefixed(f"{pre}.conv1", widen_out(block.conv1, neurons, init=init, generator=generator, plan=plan)))
                res.changed.update(prefixed(f"{pre}.bn1", widen_norm(block.bn1, neurons, plan=plan)))
                res.changed.update(prefixed(f"{pre}.conv2", widen_in(block.conv2, neurons, init=init, generator=generator, plan=plan)))
        else:
            self._grow_parallel(point, neurons, init, generator, res)
        self._stacks[point].append([form, neurons])
        return res

    def _grow_parallel(self, point: str, k: int, init: str, generator: torch.Generator | None, res: SurgeryResult) -> None:
        s = int(point[-1])
        stage: Stage = getattr(self, point)
        ref = stage.block(0).conv1.weight
        stride = stage.block(0).conv1.stride[0]
        branch = BasicBlock(stage.in_channels, k, k, stride, projection=True)
        redraw_default_(branch, generator)
        branch.to(device=ref.device, dtype=ref.dtype)
        branch.train(stage.training)
        idx = len(stage.branches)
        stage.branches.append(branch)
        pre = f"{point}.branches.{idx}"
        res.added.update(f"{pre}.{n}" for n, _ in branch.named_parameters())
        res.added.update(f"{pre}.{n}" for n, _ in branch.named_buffers())
        for name, layer in self._consumers(s):
            res.changed.update(prefixed(name, widen_in(layer, k, init=init, generator=generator)))

    # ---- shrink ----------------------------------------------------------------------
    def _shrink(self, point: str, neurons: int, *, rule: str) -> SurgeryResult:
        """Remove ``neurons`` grown units at ``point``, newest growth first; checked by :meth:`Backbone.shrink`."""
        stack = self._stacks[point]
        n = neurons
        res = SurgeryResult(point, "shrink", n)
        left = n
        while left > 0:
            form, k = stack[-1]
            take = min(left, k)
            if point == "head":
                step = self._shrink_head(take, rule)
            elif form == "inplace":
                step = self._shrink_inplace(point, take, rule)
            else:
                step = self._shrink_branch(point, take, rule)
            res = res.merge(step) if (res.changed or res.added or res.removed) else step
            left -= take
            if take == k:
                stack.pop()
            else:
                stack[-1][1] = k - take
        return SurgeryResult(point, "shrink", n, res.changed, res.added, res.removed)

    @staticmethod
    def _keep(layer: Layer, take: int, rule: str) -> torch.Tensor:
        width = layer.weight.shape[0]
        if rule == "appended":
            return keep_appended(width, take)
        return keep_largest(row_norms(layer.weight), take)

    def _shrink_head(self, take: int, rule: str) -> SurgeryResult:
        keep = self._keep(self.fc1, take, rule)
        res = SurgeryResult("head", "shrink", take)
        res.changed.update(prefixed("fc1", narrow_out(self.fc1, keep)))
        res.changed.update(prefixed("fc2", narrow_in(self.fc2, keep)))
        return res

    def _shrink_inplace(self, point: str, take: int, rule: str) -> SurgeryResult:
        res = SurgeryResult(point, "shrink", take)
        for b, block in enumerate(getattr(self, point).blocks):
            pre = f"{point}.blocks.{b}"
            keep = self._keep(block.conv1, take, rule)
            res.changed.update(prefixed(f"{pre}.conv1", narrow_out(block.conv1, keep)))
            res.changed.update(prefixed(f"{pre}.bn1", narrow_norm(block.bn1, keep)))
            res.changed.update(prefixed(f"{pre}.conv2", narrow_in(block.conv2, keep)))
        return res

    def _shrink_branch(self, point: str, take: int, rule: str) -> SurgeryResult:
        s = int(point[-1])
        stage: Stage = getattr(self, point)
        idx = len(stage.branches) - 1
        branch = stage.branch_blocks()[idx]
        bw = branch.conv2.out_channels
        total = stage.out_channels
        offset = total - bw  # the newest branch is the last block of channels
        pre = f"{point}.branches.{idx}"
        res = SurgeryResult(point, "shrink", take)
        if take == bw:
            res.removed.update(f"{pre}.{n}" for n, _ in branch.named_parameters())
            res.removed.update(f"{pre}.{n}" for n, _ in branch.named_buffers())
            del stage.branches[idx]
            keep_cols = torch.arange(offset)
        else:
            keep_inner = self._keep(branch.conv1, take, rule)
            keep_out = self._keep(branch.conv2, take, rule)
            res.changed.update(prefixed(f"{pre}.conv1", narrow_out(branch.conv1, keep_inner)))
            res.changed.update(prefixed(f"{pre}.bn1", narrow_norm(branch.bn1, keep_inner)))
            conv2_shape = tuple(branch.conv2.weight.shape)
            narrow_in(branch.conv2, keep_inner)
            narrow_out(branch.conv2, keep_out)
            res.changed[f"{pre}.conv2.weight"] = TensorChange.kept(conv2_shape, {0: keep_out, 1: keep_inner})
            res.changed.update(prefixed(f"{pre}.bn2", narrow_norm(branch.bn2, keep_out)))
            assert branch.downsample is not None  # branches are always built with a projection
            res.changed.update(prefixed(f"{pre}.downsample.0", narrow_out(cast(nn.Conv2d, branch.downsample[0]), keep_out)))
            res.changed.update(prefixed(f"{pre}.downsample.1", narrow_norm(cast(nn.BatchNorm2d, branch.downsample[1]), keep_out)))
            keep_cols = torch.cat([torch.arange(offset), offset + keep_out])
        for name, layer in self._consumers(s):
            res.changed.update(prefixed(name, narrow_in(layer, keep_cols)))
        return res


_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"widths": (64, 128, 256, 512), "blocks": (2, 2, 2, 2), "hidden": 128},
    "small": {"widths": (16, 32, 64, 128), "blocks": (1, 1, 1, 1), "hidden": 32},
    "tiny": {"widths": (4, 8, 8, 16), "blocks": (1, 1, 1, 1), "hidden": 8},
    "authors": {"widths": (64, 128, 256, 512), "blocks": (2, 2, 2, 2), "head": "linear"},
    # narrower in stages 2 and 3 than ``tiny``: the preset the generated corpus's ``bench`` profile is
    # calibrated on, where the dropin schedules' +8 (4 -> 12) must add capacity the baseline lacks
    "tiny_authors": {"widths": (4, 4, 4, 16), "blocks": (1, 1, 1, 1), "head": "linear"},
}


@register_backbone("resnet18", presets=_PRESETS, default_preset="paper", description="ResNet-18-style CNN on 64-bin log-Mel")
def resnet18(**kwargs: Any) -> ResNet18:
    """Build the ``resnet18`` backbone (see :class:`ResNet18` for the options)."""
    return ResNet18(**kwargs)
