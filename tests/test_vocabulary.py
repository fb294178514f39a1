"""One vocabulary and one event check: every name comes from ``growsearch.vocabulary``, an
unknown name raises everywhere, one bad event has one error text whoever checks it, and the
event key ``optimizer_state`` still reads files that say ``optimizer``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from growsearch import vocabulary as vocab
from growsearch.backbones import create_backbone, list_backbones
from growsearch.errors import ConfigError, ScheduleError
from growsearch.schedule import GrowthEvent, GrowthSchedule, legacy_spelling, load_schedules
from growsearch.search.runner import make_sampler
from growsearch.search.space import SearchSpace, load_space
from growsearch.search.study import SamplerConfig, load_study_config, parse_study_config

from growth_toy import ToyMLP

ROOT = Path(__file__).resolve().parents[1]


def _core(exc: pytest.ExceptionInfo) -> str:
    return str(exc.value)


# ---- one error text per failure ------------------------------------------------------------

def _space(backbone: str, point: str, **choices: object) -> SearchSpace:
    data = {"backbone": backbone, "events": {"min": 1, "max": 1}, "epoch": {"low": 0, "high": 1},
            "points": {point: {"neurons": {"low": 4, "high": 4}}}, **choices}
    return SearchSpace.model_validate(data)


@pytest.mark.parametrize(
    ("model", "point", "form", "init", "key"),
    [
        (lambda: ToyMLP(), "fc2", "parallel", "random", "forms"),            # form not at this point
        (lambda: create_backbone("resnet18", "tiny"), "stage2", "parallel", "net2net", "inits"),  # excluded pair
        (lambda: create_backbone("lcgrnn", "tiny_authors"), "gru2", "inplace", "net2net", "inits"),  # init not at this point
    ],
)
def test_a_bad_grow_has_one_error_text_from_grow_validate_for_and_bind(model, point: str, form: str, init: str, key: str) -> None:
    m = model()
    with pytest.raises(ScheduleError) as grow:
        m.grow(point, 4, form=form, init=init)
    text = _core(grow)
    bad = GrowthSchedule.of([{"point": point, "epoch": 0, "neurons": 4, "form": form, "init": init}])
    with pytest.raises(ScheduleError) as sched:
        bad.validate_for(m.growth_points(), 2, source="s.yaml")
    field = "form" if key == "forms" else "init"
    assert _core(sched) == f"s.yaml: events[0].{field}: {text}"
    with pytest.raises(ConfigError) as bind:
        _space("x", point, forms=[form], inits=[init]).bind(m.growth_points(), 2, source="space.yaml")
    assert _core(bind) == f"space.yaml: points.{point}.{key}: {text}"


def test_a_bad_shrink_rule_and_point_have_one_error_text() -> None:
    m = ToyMLP()  # its points shrink only with rule appended
    m.grow("fc2", 2)
    with pytest.raises(ScheduleError) as shrink:
        m.shrink("fc2", 2, rule="magnitude")
    text = _core(shrink)
    assert text == "point 'fc2' does not support shrink rule 'magnitude'; it supports appended"
    sched = GrowthSchedule.of([{"point": "fc2", "epoch": 0, "neurons": 2},
                               {"point": "fc2", "epoch": 1, "action": "shrink", "rule": "magnitude"}])
    with pytest.raises(ScheduleError) as val:
        sched.validate_for(m.growth_points(), 2, source="s.yaml")
    assert _core(val) == f"s.yaml: events[1].rule: {text}"
    space = _space("x", "fc2", plasticity={"enabled": [True], "rules": ["magnitude"]})
    with pytest.raises(ConfigError) as bind:
        space.bind(m.growth_points(), 2, source="space.yaml")
    assert _core(bind) == f"space.yaml: plasticity.rules: {text}"

    with pytest.raises(ScheduleError) as grow:
        m.grow("nope", 2)
    text = _core(grow)
    assert text == "unknown growth point 'nope'; valid points: fc1, fc2"
    with pytest.raises(ScheduleError) as val:
        GrowthSchedule.of([{"point": "nope", "epoch": 0, "neurons": 2}]).validate_for(m.growth_points(), 2, source="s.yaml")
    assert _core(val) == f"s.yaml: events[0].point: {text}"
    with pytest.raises(ConfigError) as bind:
        _space("x", "nope").bind(m.growth_points(), 2, source="space.yaml")
    assert _core(bind) == f"space.yaml: points.nope: {text}"


def test_a_step_violation_has_one_error_text() -> None:
    m = create_backbone("wav2vec2", "tiny")
    p = m.growth_points()["layer0.attn"]
    assert p.step > 1
    with pytest.raises(ScheduleError) as grow:
        m.grow("layer0.attn", p.step + 1)
    text = _core(grow)
    assert f"multiple of {p.step}" in text
    with pytest.raises(ScheduleError) as val:
        GrowthSchedule.of([{"point": "layer0.attn", "epoch": 0, "neurons": p.step + 1}]).validate_for(m.growth_points(), 2, source="s.yaml")
    assert _core(val) == f"s.yaml: events[0].neurons: {text}"


# ---- unknown names raise everywhere --------------------------------------------------------

@pytest.mark.parametrize("name", list_backbones())
def test_an_unknown_init_form_or_rule_raises_in_every_backbone(name: str) -> None:
    model = create_backbone(name, "tiny")
    before = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for point, p in model.growth_points().items():
        with pytest.raises(ScheduleError, match=f"point {point!r} does not support init 'bogus'"):
            model.grow(point, p.step, form=p.forms[0], init="bogus")
        with pytest.raises(ScheduleError, match=f"point {point!r} cannot grow 'sideways'"):
            model.grow(point, p.step, form="sideways")
        with pytest.raises(ScheduleError, match=f"point {point!r} does not support shrink rule 'bogus'"):
            model.shrink(point, p.step, rule="bogus")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == before, "a refused event changed the model"
    assert model.history == []


def test_make_sampler_refuses_an_unknown_name() -> None:
    cfg = load_study_config(ROOT / "studies" / "quickstart.yaml")
    bad = cfg.model_copy(update={"sampler": SamplerConfig.model_construct(name="annealing", seed=0, population_size=None)})
    with pytest.raises(ConfigError, match="unknown sampler 'annealing'; valid samplers: " + ", ".join(vocab.SAMPLERS)):
        make_sampler(bad)


@pytest.mark.parametrize("sampler", vocab.SAMPLERS)
def test_every_sampler_is_built_and_proposes_valid_schedules(sampler: str) -> None:
    import optuna

    if sampler in ("grid", "growth"):  # these need a flat space: GrowBench's
        cfg = parse_study_config({"name": "grid", "train": "../configs/bench.yaml", "space": "../search_spaces/growbench.yaml", "epochs": 6,
                                  "budget": {"trials": 3}}, "growbench", base=ROOT / "studies")
    else:
        cfg = load_study_config(ROOT / "studies" / "quickstart.yaml")
    cfg = cfg.model_copy(update={"sampler": SamplerConfig(name=sampler, seed=1, population_size=2)})
    study = optuna.create_study(sampler=make_sampler(cfg), directions=cfg.directions)
    for i in range(3):
        trial = study.ask()
        cfg.space.define_by_run(trial)
        sched = cfg.space.decode(trial.params)
        sched.validate_for(cfg.space.growth_points, cfg.space.epochs)
        study.tell(trial, [float(len(sched.events) + i)] * len(cfg.directions))
    assert len(study.trials) == 3


# ---- optimizer_state, formerly optimizer ---------------------------------------------------

def test_the_old_optimizer_key_still_reads_and_is_written_as_optimizer_state(tmp_path: Path) -> None:
    old = {"point": "gru2", "epoch": 1, "neurons": 4, "optimizer": "carry"}
    new = GrowthSchedule.from_dict({"events": [{**{k: v for k, v in old.items() if k != "optimizer"}, "optimizer_state": "carry"}]})
    assert GrowthSchedule.from_dict({"events": [old]}) == new
    assert GrowthEvent(**old) == new.events[0]
    assert GrowthEvent.model_validate(old) == new.events[0]  # checkpoint histories replay through this
    assert "optimizer" not in new.to_dict()["events"][0] and new.to_dict()["events"][0]["optimizer_state"] == "carry"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"events": [old]}))
    (tmp_path / "s.json").write_text(json.dumps({"schedules": [{"trial": 3, "schedule": {"events": [old]}}]}))
    assert load_schedules(tmp_path / "s.yaml") == [new]
    assert load_schedules(tmp_path / "s.json") == [new]


def test_old_and_new_optimizer_keys_that_disagree_are_one_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump({"events": [{"point": "gru2", "epoch": 1, "neurons": 4, "optimizer": "carry", "optimizer_state": "fresh"}]}))
    with pytest.raises(ScheduleError, match=r"s\.yaml.*events\[0\].*'optimizer' \(the old name of 'optimizer_state'\) is 'carry' "
                                            r"but 'optimizer_state' is 'fresh'; give only 'optimizer_state'"):
        load_schedules(p)
    same = {"point": "gru2", "epoch": 1, "neurons": 4, "optimizer": "carry", "optimizer_state": "carry"}
    assert GrowthSchedule.from_dict({"events": [same]}).events[0].optimizer_state == "carry"


def test_a_space_with_the_old_optimizer_key_loads_and_hashes_as_before(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "search_spaces" / "quickstart.yaml").read_text())
    data["optimizer_state"] = ["fresh", "carry"]
    old = dict(data)
    old["optimizer"] = old.pop("optimizer_state")
    (tmp_path / "new.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    a, b = load_space(tmp_path / "new.yaml"), load_space(tmp_path / "old.yaml")
    assert a == b and a.optimizer_state == ("fresh", "carry")
    # hashes (a study's config_hash, a run's resume key) see the spelling from before the rename
    assert legacy_spelling(a.model_dump(mode="json"))["optimizer"] == ["fresh", "carry"]
    sched = GrowthSchedule.of([{"point": "gru2", "epoch": 1, "neurons": 4}])
    assert '"optimizer": "fresh"' in sched.key_json() and "optimizer_state" not in sched.key_json()


def test_study_config_hash_does_not_change_with_the_spelling(tmp_path: Path) -> None:
    cfg = load_study_config(ROOT / "studies" / "quickstart.yaml")
    study = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    space = yaml.safe_load((ROOT / "studies" / study["space"]).resolve().read_text())  # the study's own space
    space["optimizer"] = space.pop("optimizer_state")
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    study["space"] = str(tmp_path / "space.yaml")
    for key in ("train",):
        if isinstance(study.get(key), str) and not Path(study[key]).is_absolute():
            study[key] = str((ROOT / "studies" / study[key]).resolve())
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    assert load_study_config(tmp_path / "study.yaml").config_hash() == cfg.config_hash()
