"""An objective: a metric name and a direction; the one class for study configs, the
study attrs and the reports.

The names a study config may use are :data:`growsearch.vocabulary.OBJECTIVES`; an
objective read back from a study is taken as recorded (:meth:`Objective.recorded`), since
an older study, or one made by other code, may name other metrics (``objective_0``...).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from growsearch.vocabulary import DEFAULT_DIRECTION, DIRECTIONS, OBJECTIVES, Direction

__all__ = ["Objective"]


class Objective(BaseModel):
    """One objective: a metric name (one of :data:`~growsearch.vocabulary.OBJECTIVES`) and
    ``minimize``/``maximize``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    direction: Direction = DEFAULT_DIRECTION

    @field_validator("name", mode="before")
    @classmethod
    def _known(cls, v: Any) -> Any:
        if v not in OBJECTIVES:  # the text pydantic gives a Literal field
            *head, last = (repr(o) for o in OBJECTIVES)
            raise ValueError(f"Input should be {', '.join(head)} or {last}")
        return v

    @classmethod
    def recorded(cls, name: str, direction: str) -> Objective:
        """An objective as a study recorded it: any name, ``direction`` as Optuna spells it."""
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}")
        return cls.model_construct(name=str(name), direction=direction)

    @property
    def sign(self) -> float:
        """+1 for minimised objectives, -1 for maximised (loss = sign * value)."""
        return 1.0 if self.direction == "minimize" else -1.0
