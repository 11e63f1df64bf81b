"""The one pydantic base of every tem-acq schema, and the one way its errors are reported.

Store metadata, model cards, training and simulation configs all derive from
:class:`StrictModel`: unknown keys are errors, so a typo or a file written by a newer tem-acq
is reported instead of silently ignored. :func:`format_validation_error` renders pydantic's
errors as the one-line messages every command prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from tem_acq.errors import TemAcqError


class StrictModel(BaseModel):
    """A pydantic model that forbids unknown fields."""

    model_config = ConfigDict(extra="forbid")


Model = TypeVar("Model", bound=BaseModel)


def format_validation_error(exc: ValidationError, *, whole: str = "(model)") -> str:
    """Render a pydantic error as ``field.path: message`` per problem, joined by ``; ``.

    Parameters
    ----------
    exc
        The validation error.
    whole
        How to name the object itself when a problem concerns no single field.
    """
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or whole
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def as_model(
    model: type[Model],
    data: Model | Mapping[str, Any],
    what: str,
    error: type[TemAcqError],
    *,
    whole: str = "(model)",
    fix: str = "",
) -> Model:
    """``data`` as a ``model`` (validated when a mapping), or ``error`` naming every problem.

    Parameters
    ----------
    model
        The pydantic model wanted.
    data
        An instance (returned as it is) or a mapping to validate.
    what
        What is wrong, leading the message (``"invalid acquisition metadata"``,
        ``"card.json is not a valid model card"``); the problems follow after a colon.
    error
        The exception to raise when it does not validate.
    whole, fix
        How to name the object itself in a problem that concerns no single field, and what to
        do about it (appended after ``"; "`` when given).
    """
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        tail = f"; {fix}" if fix else ""
        raise error(f"{what}: {format_validation_error(exc, whole=whole)}{tail}") from None


__all__ = ["StrictModel", "as_model", "format_validation_error"]
