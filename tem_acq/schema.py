"""The one pydantic base of every tem-acq schema, and the one way its errors are reported.

Store metadata, model cards, training and simulation configs all derive from
:class:`StrictModel`: unknown keys are errors, so a typo or a file written by a newer tem-acq
is reported instead of silently ignored. :func:`format_validation_error` renders pydantic's
errors as the one-line messages every command prints.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class StrictModel(BaseModel):
    """A pydantic model that forbids unknown fields."""

    model_config = ConfigDict(extra="forbid")


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


__all__ = ["StrictModel", "format_validation_error"]
