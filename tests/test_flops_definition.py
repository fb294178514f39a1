"""One FLOPs definition for every backbone: inference FLOPs per second of audio, counted on
the frames the audio gives (length-aware), and the definition recorded so reports never mix
definitions silently."""

from __future__ import annotations

import optuna
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from growsearch.backbones import create_backbone, list_backbones
from growsearch.metrics.cost import count_flops, flops_per_second
from growsearch.metrics.flops_definition import (
    FLOPS_DEFINITION,
    LEGACY_FLOPS_DEFINITION,
    flops_definitions_warning,
    mark_flops_definition,
)
from growsearch.search.attrs import STUDY_FLOPS_DEFINITION

SECONDS = (1.0, 4.0, 10.0)


def _per_second_without_attention(name: str) -> list[float]:
    """FLOPs per second at 1, 4 and 10 s, less the attention products (``bmm``: Q K^T and A V,
    which grow with T^2 and so per second with T)."""
    m = create_backbone(name, "tiny").eval()
    out = []
    for s in SECONDS:
        count_flops(m, s)  # the front-end's shape is cached: the count below sees only the body
        with FlopCounterMode(display=False) as outer:
            total = count_flops(m, s)
        counts = outer.get_flop_counts()["Global"]
        attention = sum(v for k, v in counts.items() if "bmm" in str(k))
        assert flops_per_second(m, s) == total / s
        out.append((total - attention) / s)
    return out


@pytest.mark.parametrize("name", list_backbones())
def test_flops_per_second_equal_across_clip_lengths(name: str) -> None:
    per_s = _per_second_without_attention(name)
    # equal up to edge frames (framing, convolution padding): within 2 % between 1, 4 and 10 s
    assert max(per_s) / min(per_s) < 1.02, per_s


def test_resnet18_counts_the_audio_not_the_224_frame_clip() -> None:
    """The model is still fed 224 log-Mel frames (the paper's input), but its FLOPs scale with
    the audio: 4 s of audio cost about 4 x 1 s (it was the same 2,559,264 for any length)."""
    m = create_backbone("resnet18", "tiny").eval()
    with torch.no_grad():
        assert m.frontend(torch.zeros(1, 16_000)).shape[-1] == 224  # behaviour unchanged
        assert m.frontend(torch.zeros(1, 160_000)).shape[-1] == 224
    f1, f4, f10 = (count_flops(m, s) for s in SECONDS)
    assert 3.9 < f4 / f1 < 4.1 and 9.8 < f10 / f1 < 10.2


def test_attention_is_the_only_length_dependence_of_wav2vec2() -> None:
    m = create_backbone("wav2vec2", "tiny").eval()
    per_s = [flops_per_second(m, s) for s in SECONDS]
    assert per_s[0] < per_s[1] < per_s[2]  # T^2 attention: per second grows with the clip
    assert max(_per_second_without_attention("wav2vec2")) / min(_per_second_without_attention("wav2vec2")) < 1.02


def test_studies_are_marked_and_mixed_definitions_warned() -> None:
    fresh = optuna.create_study(directions=["minimize", "minimize"])
    assert mark_flops_definition(fresh) is None
    assert STUDY_FLOPS_DEFINITION.get(fresh) == FLOPS_DEFINITION
    assert mark_flops_definition(fresh) is None  # idempotent

    old = optuna.create_study(study_name="old", directions=["minimize", "minimize"])  # made before definitions existed
    old.add_trial(optuna.trial.create_trial(values=[0.2, 1e6], user_attrs={"metrics": {"flops": 1e6}}))
    warning = mark_flops_definition(old)
    assert warning is not None and "legacy_v1" in warning and FLOPS_DEFINITION in warning
    assert STUDY_FLOPS_DEFINITION.get(old) == f"mixed: {LEGACY_FLOPS_DEFINITION} + {FLOPS_DEFINITION}"
    assert "different definitions" in (flops_definitions_warning(old.user_attrs, []) or "")

    # trials disagreeing (e.g. a study attr lost) are caught from their metrics too
    assert flops_definitions_warning({}, [{"flops_definition": FLOPS_DEFINITION}, {"flops": 3}]) is not None
    assert flops_definitions_warning({"flops_definition": FLOPS_DEFINITION}, [{"flops_definition": FLOPS_DEFINITION}]) is None


def test_show_and_pareto_warn_on_mixed_definitions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="mixed", storage=url, directions=["minimize", "minimize"])
    study.set_user_attr("objectives", [{"name": "dev_eer", "direction": "minimize"}, {"name": "flops", "direction": "minimize"}])
    study.add_trial(optuna.trial.create_trial(values=[0.3, 2.5e6], user_attrs={"metrics": {"flops": 2.5e6}}))
    assert mark_flops_definition(study) is not None  # a new definition meets old trials
    study.add_trial(optuna.trial.create_trial(values=[0.2, 3.6e5], user_attrs={
        "metrics": {"flops": 3.6e5, "flops_definition": FLOPS_DEFINITION}}))
    for cmd in ("show", "pareto"):
        res = subprocess.run([sys.executable, "-m", "growsearch", cmd, "mixed", "--storage", url],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert "FLOPs in this study were counted under different definitions" in res.stdout + res.stderr, cmd
