"""Search spaces: every shipped space loads, every sampled schedule decodes and validates,
bad spaces fail at load time naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from growsearch.errors import ConfigError
from growsearch.schedule import GrowthSchedule
from growsearch.search.space import backbone_points, load_space

ROOT = Path(__file__).resolve().parents[1]
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_every_backbone_has_a_space() -> None:
    from growsearch.backbones import list_backbones

    covered = {yaml.safe_load(p.read_text())["backbone"] for p in SPACES}
    assert set(list_backbones()) <= covered


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
@pytest.mark.parametrize("sampler", ["random", "nsga2", "tpe"])
def test_sampled_schedules_always_validate(path: Path, sampler: str) -> None:
    space = load_space(path)
    pts = backbone_points(space.backbone, space.preset)
    make = {
        "random": lambda: optuna.samplers.RandomSampler(seed=1),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=1, population_size=4),
        "tpe": lambda: optuna.samplers.TPESampler(seed=1, n_startup_trials=5),
    }[sampler]
    study = optuna.create_study(sampler=make(), directions=["minimize", "minimize"])
    seen_events = 0
    seen_shrink = False
    for i in range(60 if sampler == "random" else 25):
        t = study.ask()
        space.define_by_run(t)
        sched = space.decode(t.params)
        sched.validate_for(pts, space.epochs)
        assert GrowthSchedule.from_dict(sched.to_dict()) == sched
        # decoding is a pure function of the parameters
        assert space.decode(dict(t.params)) == sched
        seen_events = max(seen_events, len([e for e in sched.events if e.action == "grow"]))
        seen_shrink |= any(e.action == "shrink" for e in sched.events)
        study.tell(t, [float(len(sched.events)), float(i % 3)])
    if sampler == "random":
        assert seen_events >= 1
        if space.plasticity is not None and True in space.plasticity.enabled:
            assert seen_shrink


def _space(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load((ROOT / "search_spaces" / "quickstart.yaml").read_text())
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    p = tmp_path / "space.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"colour": "red"}, "colour"),
        ({"points": {"gru9": {"neurons": {"low": 4, "high": 8}}}}, "points.gru9: unknown growth point"),
        ({"points": {"gru2": {"neurons": {"low": 8, "high": 4}}}}, "points.gru2.neurons"),
        ({"events": {"min": 3, "max": 1}}, "events"),
        ({"epoch": {"low": 1, "high": 7}}, "epoch.high: 7 is beyond the run"),
        ({"inits": ["gradmax"]}, "inits"),
        ({"points": {"gru2": {"neurons": {"low": 0, "high": 4}}}}, "points.gru2"),
    ],
)
def test_bad_space_names_file_and_key(tmp_path: Path, changes: dict, needle: str) -> None:
    p = _space(tmp_path, **changes)
    with pytest.raises(ConfigError) as exc:
        load_space(p, epochs=3)
    msg = str(exc.value)
    assert str(p) in msg and needle in msg, msg


def test_unknown_point_lists_valid_points(tmp_path: Path) -> None:
    p = _space(tmp_path, points={"gru9": {"neurons": {"low": 4, "high": 8}}})
    with pytest.raises(ConfigError, match="valid points: gru1, gru2, gru3, gru4"):
        load_space(p, epochs=3)


def test_unknown_backbone_lists_backbones(tmp_path: Path) -> None:
    p = _space(tmp_path, backbone="vgg")
    with pytest.raises(ConfigError, match=r"backbone.*valid backbones: .*lcgrnn"):
        load_space(p, epochs=3)


def test_decode_repairs_conflicts(tmp_path: Path) -> None:
    """Two events at one point and epoch merge; one epoch = one phase; a shrink that would
    fall after the run is dropped; neurons respect the point's step."""
    space = load_space(ROOT / "search_spaces" / "quickstart.yaml", epochs=3)
    params = {
        "n_events": 2,
        "ev0.point": "gru2", "ev0.gru2.neurons": 8, "ev0.epoch": 2, "ev0.gru2.form": "inplace",
        "ev0.gru2.init": "random", "ev0.freeze": "new_only", "ev0.optimizer": "fresh",
        "ev1.point": "gru2", "ev1.gru2.neurons": 4, "ev1.epoch": 2, "ev1.gru2.form": "inplace",
        "ev1.gru2.init": "zero_fanout", "ev1.freeze": "all", "ev1.optimizer": "fresh",
        "plasticity": True, "plasticity.after": 1, "plasticity.rule": "appended",
    }
    s = space.decode(params)
    assert [(e.point, e.epoch, e.action, e.neurons, e.init, e.freeze) for e in s.events] == [
        ("gru2", 2, "grow", 12, "random", "new_only")
    ]
    params.update({"ev1.point": "gru1", "ev1.gru1.neurons": 4, "ev1.gru1.form": "inplace", "ev1.gru1.init": "zero_fanout", "ev1.epoch": 1})
    s = space.decode(params)
    assert [(e.point, e.epoch, e.action) for e in s.events] == [("gru1", 1, "grow"), ("gru2", 2, "grow")]
    params["ev0.epoch"] = 1
    s = space.decode(params)
    # both grown at epoch 1 (phase from ev0: new_only); shrink of both at epoch 2
    assert [(e.point, e.epoch, e.action, e.freeze) for e in s.events] == [
        ("gru2", 1, "grow", "new_only"), ("gru1", 1, "grow", "new_only"),
        ("gru1", 2, "shrink", "all"), ("gru2", 2, "shrink", "all"),
    ]


def test_new_units_is_in_the_freeze_vocabulary(tmp_path: Path) -> None:
    """A space may search over ``new_units``; an unknown policy names the valid ones."""
    space = load_space(_space(tmp_path, freeze=["all", "new_units"]), epochs=3)
    assert space.freeze == ("all", "new_units")
    params = {"n_events": 1, "ev0.point": "gru2", "ev0.gru2.neurons": 8, "ev0.epoch": 1, "ev0.gru2.form": "inplace",
              "ev0.gru2.init": "random", "ev0.freeze": "new_units", "ev0.optimizer": "fresh", "plasticity": False}
    assert [e.freeze for e in space.decode(params).events] == ["new_units"]
    with pytest.raises(ConfigError, match="new_units"):
        load_space(_space(tmp_path, freeze=["frozen"]), epochs=3)
