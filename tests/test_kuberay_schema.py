"""The KubeRay manifests (docker/kuberay/*.yaml) against the RayCluster/RayJob schema subset in
docker/kuberay.schema.json, since no Kubernetes cluster runs here: every RayCluster and RayJob
validates, and the mistakes the schema exists for (a typo'd field, a number where KubeRay wants a
string, an unknown enum value, a missing required part) are caught."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "docker" / "kuberay.schema.json"
KUBERAY = ROOT / "docker" / "kuberay"


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _ray_docs() -> dict[str, dict[str, Any]]:
    out = {}
    for p in sorted(KUBERAY.glob("*.yaml")):
        for d in yaml.safe_load_all(p.read_text(encoding="utf-8")):
            if d and d.get("apiVersion", "").startswith("ray.io/"):
                out[f"{p.name}:{d['kind']}/{d['metadata']['name']}"] = d
    return out


DOCS = _ray_docs()


def _errors(validator: jsonschema.protocols.Validator, doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(doc)]


def test_the_manifests_hold_a_raycluster_and_a_rayjob() -> None:
    kinds = sorted(d["kind"] for d in DOCS.values())
    assert kinds == ["RayCluster", "RayJob"], kinds


@pytest.mark.parametrize("key", sorted(DOCS))
def test_manifest_validates(validator: jsonschema.protocols.Validator, key: str) -> None:
    assert _errors(validator, DOCS[key]) == []


def _cluster() -> dict[str, Any]:
    return copy.deepcopy(next(d for d in DOCS.values() if d["kind"] == "RayCluster"))


def _job() -> dict[str, Any]:
    return copy.deepcopy(next(d for d in DOCS.values() if d["kind"] == "RayJob"))


def _break_typo(d: dict[str, Any]) -> str:
    d["spec"]["headGroupSpec"]["rayStartParam"] = d["spec"]["headGroupSpec"].pop("rayStartParams")
    return "headGroupSpec"


def _break_int_param(d: dict[str, Any]) -> str:
    d["spec"]["workerGroupSpecs"][0]["rayStartParams"]["num-gpus"] = 1  # KubeRay: map[string]string
    return "rayStartParams/num-gpus"


def _break_auth_mode(d: dict[str, Any]) -> str:
    d["spec"]["authOptions"]["mode"] = "password"
    return "authOptions/mode"


def _break_no_template(d: dict[str, Any]) -> str:
    del d["spec"]["headGroupSpec"]["template"]
    return "spec/headGroupSpec"


def _break_group_name(d: dict[str, Any]) -> str:
    del d["spec"]["workerGroupSpecs"][0]["groupName"]
    return "workerGroupSpecs/0"


def _break_replicas(d: dict[str, Any]) -> str:
    d["spec"]["workerGroupSpecs"][0]["replicas"] = "2"
    return "workerGroupSpecs/0/replicas"


def _break_env(d: dict[str, Any]) -> str:
    d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"][0]["valu"] = "x"
    return "containers/0/env/0"


def _break_api_version(d: dict[str, Any]) -> str:
    d["apiVersion"] = "ray.io/v1alpha1"
    return "apiVersion"


@pytest.mark.parametrize(
    "breaker",
    [_break_typo, _break_int_param, _break_auth_mode, _break_no_template, _break_group_name,
     _break_replicas, _break_env, _break_api_version],
)
def test_raycluster_mistakes_are_caught(validator: jsonschema.protocols.Validator, breaker: Any) -> None:
    doc = _cluster()
    where = breaker(doc)
    errors = _errors(validator, doc)
    assert errors, f"{breaker.__name__}: not caught"
    assert any(where in e for e in errors), errors


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda s: s.__setitem__("submissionMode", "K8sMode"), "submissionMode"),
        (lambda s: s.__setitem__("entrypoint", ["growsearch", "run"]), "entrypoint"),
        (lambda s: s.__setitem__("clusterSelectors", s.pop("clusterSelector")), "clusterSelectors"),
        (lambda s: s.__setitem__("activeDeadlineSeconds", -1), "activeDeadlineSeconds"),
        (lambda s: s["submitterPodTemplate"]["spec"].__setitem__("restartPolicy", "Sometimes"), "restartPolicy"),
    ],
)
def test_rayjob_mistakes_are_caught(validator: jsonschema.protocols.Validator, change: Any, where: str) -> None:
    doc = _job()
    change(doc["spec"])
    errors = _errors(validator, doc)
    assert errors and any(where in e for e in errors), errors


def test_unknown_kind_is_refused(validator: jsonschema.protocols.Validator) -> None:
    doc = _cluster()
    doc["kind"] = "RayClustr"
    assert _errors(validator, doc)
