"""Read-only commands and input errors answer at once: they import neither torch nor Ray.

Each case runs the real command in a fresh interpreter (a real SQLite study written by the
test) and then looks at ``sys.modules``. How long the imports take is shown by
``python -X importtime -m growsearch show STUDY`` (see the README)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys
from growsearch.cli import main
rc = 0
try:
    main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code if isinstance(exc.code, int) else 1
print(json.dumps({"rc": rc, "heavy": sorted(m for m in ("torch", "ray", "torchaudio") if m in sys.modules)}), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study YAML (the quickstart's, outputs in a temp folder) whose SQLite study exists."""
    from synthetic_study import build_demo_study

    tmp = tmp_path_factory.mktemp("imports")
    data = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    data.update(name="demo", train=str(ROOT / "configs" / "quickstart.yaml"),
                space=str(ROOT / "search_spaces" / "quickstart.yaml"), outputs=str(tmp / "out"))
    p = tmp / "demo.yaml"
    p.write_text(yaml.safe_dump(data))
    (tmp / "out").mkdir()
    build_demo_study(f"sqlite:///{tmp / 'out' / 'study.db'}", "demo", n_trials=20)
    lines = [f"u{i} {'-' if i % 2 else 'A01'} {'bonafide' if i % 2 else 'spoof'} {i / 10:.2f}" for i in range(20)]
    (tmp / "scores.txt").write_text("\n".join(lines) + "\n")
    return p


def _probe(args: list[str], cwd: Path) -> tuple[int, list[str], str]:
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    info = json.loads(r.stderr.strip().splitlines()[-1])
    return info["rc"], info["heavy"], r.stderr


@pytest.mark.parametrize("args", [
    ["show", "{study}"],
    ["show", "{study}", "--json"],
    ["pareto", "{study}"],
    ["pareto", "{study}", "--html", "{tmp}/front.html"],
    ["export", "{study}", "-o", "{tmp}/best.yaml", "--pick", "min-eer"],
    ["list", "--storage", "sqlite:///{tmp}/out/study.db"],
    ["score", "{tmp}/scores.txt"],
], ids=lambda a: " ".join(a[:1] + [x for x in a[1:] if x.startswith("-")]))
def test_read_only_commands_import_neither_torch_nor_ray(study: Path, args: list[str]) -> None:
    argv = [a.format(study=study, tmp=study.parent) for a in args]
    rc, heavy, err = _probe(argv, study.parent)
    assert rc == 0, err
    assert heavy == [], f"growsearch {' '.join(args)} imported {heavy}"


@pytest.mark.parametrize("args", [
    ["show", "missing.yaml"],
    ["pareto", "{tmp}/demo.yaml", "--storage", "sqlite:///{tmp}/nope.db"],
    ["export", "{study}", "-o", "{tmp}/x.yaml", "--pick", "nonsense"],
    ["score", "missing.txt"],
    ["run", "missing.yaml"],
    ["run", "{root}/configs/quickstart.yaml"],
    ["run", "{tmp}/bad.yaml"],
    ["run", "{study}", "--trials", "0"],
    ["train", "missing.yaml"],
    ["train", "{root}/studies/quickstart.yaml"],
    ["train", "{root}/configs/quickstart.yaml", "--schedule", "missing.yaml"],
    ["train", "{root}/configs/quickstart.yaml", "--schedule", "{study}"],
    ["data", "check", "missing"],
    ["dashboard", "missing.yaml"],
    ["pareto"],
    ["export", "{study}"],
], ids=lambda a: " ".join(a))
def test_input_errors_import_neither_torch_nor_ray(study: Path, args: list[str]) -> None:
    bad = study.parent / "bad.yaml"
    bad.write_text(study.read_text().replace("objectives:", "objectivs:"))
    argv = [a.format(study=study, tmp=study.parent, root=ROOT) for a in args]
    rc, heavy, err = _probe(argv, study.parent)
    assert rc == 2, err
    assert "Traceback" not in err
    assert heavy == [], f"growsearch {' '.join(argv)} imported {heavy}"
