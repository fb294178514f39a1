"""Check the quickstart study after a compose run (docker/test-compose.sh pipes this file into
`python -` in the driver container, which has $GROWSEARCH_STORAGE and $PGPASSWORD).

Environment: EXPECT_TRIALS (the budget of COMPLETE trials), EXPECT_NODES (space-separated host
names of the Ray containers every one of which must have run a trial), STUDY (default
quickstart). Exit 0 and a last line of JSON ({"complete": n, "nodes": {host: trials}}) when
the study holds exactly the budget of COMPLETE trials, none RUNNING, and every expected node ran
at least one of them; else exit 1 with one line saying what is wrong.
"""

from __future__ import annotations

import collections
import json
import os
import sys

import optuna


def main() -> int:
    name = os.environ.get("STUDY", "quickstart")
    want = int(os.environ["EXPECT_TRIALS"])
    nodes_wanted = set(os.environ.get("EXPECT_NODES", "").split())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=os.environ["GROWSEARCH_STORAGE"])
    trials = study.get_trials(deepcopy=False)
    states = collections.Counter(t.state.name for t in trials)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    hosts = collections.Counter(str((t.user_attrs.get("node") or {}).get("hostname")) for t in complete)
    print(f"study {name}: trial states {dict(states)}; COMPLETE trials per host {dict(hosts)}")
    problems = []
    if len(complete) != want:
        problems.append(f"{len(complete)} COMPLETE trials, the budget is {want}")
    if states.get("RUNNING"):
        problems.append(f"{states['RUNNING']} trials left RUNNING")
    missing = sorted(nodes_wanted - set(hosts))
    if missing:
        problems.append(f"no trial ran on {', '.join(missing)} (trials ran on {', '.join(sorted(hosts))})")
    if problems:
        print("; ".join(problems))
        return 1
    print(json.dumps({"complete": len(complete), "nodes": dict(hosts)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
