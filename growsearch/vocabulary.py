"""The names growsearch's files and code agree on, each defined once.

Every module, the tests included, imports these tuples instead of spelling the names out:
a name that is not here is unknown everywhere and raises (never falls into an ``else``).

Sections (each owned by one part of the code, filled in as it moves here):
- growth events: forms, inits, shrink rules, freeze policies, optimizer-state modes;
- training: optimizer algorithms;
- search: objectives and their directions, samplers, trial schedulers;
- audio: the sample rate every front-end and backbone assumes.
"""

from __future__ import annotations

from typing import Literal, get_args

# --- audio -----------------------------------------------------------------------------

#: Every corpus is decoded, resampled and cropped at this rate (Hz).
SAMPLE_RATE = 16_000

# --- growth events ---------------------------------------------------------------------
# Each ``Literal`` types a field; the tuple beside it (same order) is what code iterates and
# error messages list.

Action = Literal["grow", "shrink"]
#: ``grow`` (dropin) or ``shrink`` (plasticity).
ACTIONS: tuple[Action, ...] = get_args(Action)

Form = Literal["inplace", "parallel"]
#: How a point grows: widened ``inplace``, or a ``parallel`` branch concatenated on channels.
FORMS: tuple[Form, ...] = get_args(Form)

Init = Literal["random", "zero_fanout", "net2net"]
#: How new units start (see :mod:`growsearch.growth.init`); a point may support a subset.
INITS: tuple[Init, ...] = get_args(Init)
#: The inits after which the grown model computes what it computed before.
FUNCTION_PRESERVING_INITS: tuple[Init, ...] = ("zero_fanout", "net2net")

ShrinkRule = Literal["appended", "magnitude"]
#: Which units a shrink removes: the newest (``appended``) or the smallest (``magnitude``).
SHRINK_RULES: tuple[ShrinkRule, ...] = get_args(ShrinkRule)

Freeze = Literal["all", "new_only", "new_units"]
#: What trains after an epoch's events (see :mod:`growsearch.growth.freeze`).
FREEZES: tuple[Freeze, ...] = get_args(Freeze)

OptimizerState = Literal["fresh", "carry"]
#: How the optimizer rebuilt after an event starts: ``fresh`` moments, or ``carry`` the old
#: ones over (an event's ``optimizer_state``; files written before it was renamed say
#: ``optimizer``, which is still read).
OPTIMIZER_STATES: tuple[OptimizerState, ...] = get_args(OptimizerState)

# --- training --------------------------------------------------------------------------

OptimizerName = Literal["adam", "adamw", "sgd"]
#: The optimizer algorithm of a run (``training.optimizer``; ``sgd`` with momentum 0.9).
OPTIMIZERS: tuple[OptimizerName, ...] = get_args(OptimizerName)

# --- search ----------------------------------------------------------------------------

SamplerName = Literal["nsga2", "nsga3", "tpe", "gp", "random", "grid", "growth"]
#: The Optuna samplers a study may name (``sampler.name``); every one is built by
#: :func:`growsearch.search.runner.make_sampler`.
SAMPLERS: tuple[SamplerName, ...] = get_args(SamplerName)

SchedulerName = Literal["none", "moasha", "pbg"]
#: The trial schedulers a study may name (``scheduler.name``): ``none`` (every trial trains to
#: its last epoch, the default), ``moasha`` (growth-aware multi-objective asynchronous
#: successive halving, :mod:`growsearch.search.moasha`) or ``pbg`` (population-based growth,
#: :mod:`growsearch.search.pbg`). Each has its settings model in
#: :mod:`growsearch.search.schedulers`.
SCHEDULERS: tuple[SchedulerName, ...] = get_args(SchedulerName)
#: The default scheduler: no early stopping.
NO_SCHEDULER: SchedulerName = "none"

#: The metrics a study may optimise (keys of a run's ``metrics.json``), in this order.
ObjectiveName = Literal["dev_eer", "params", "flops", "train_flops"]
OBJECTIVES: tuple[ObjectiveName, ...] = get_args(ObjectiveName)
#: The objective reports single out: the EER on the dev split (a fraction in ``[0, 1]``).
EER: ObjectiveName = "dev_eer"
#: The cost objectives: counts (printed as integers, plotted on log axes).
COST_OBJECTIVES: tuple[ObjectiveName, ...] = ("params", "flops", "train_flops")
#: How an objective is optimised; every objective of :data:`OBJECTIVES` is minimised unless a study says otherwise.
Direction = Literal["minimize", "maximize"]
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)
DEFAULT_DIRECTION: Direction = "minimize"
