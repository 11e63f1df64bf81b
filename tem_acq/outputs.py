"""Claiming an output path: the one check every command and writer makes before writing.

An existing path is never replaced silently: without ``overwrite`` it is refused, and even with
it only a kind of object that the output may replace is (a store for a store, ...). What each
kind of output may replace is declared once, in :data:`OUTPUT_KINDS`; a stricter rule for a
kind (or a new kind) is a change there, not in the callers.

:func:`claim_output` only checks: replacing what is there is the writer's job, done its own
crash-safe way (the acquisition writer renames a fully built store over the old one).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tem_acq.errors import ModelPackageError, StoreError, TemAcqError

#: What a taken path is told when ``overwrite`` is false (``{path}``, ``{others}``: the
#: caller's other ways out).
TAKEN = (
    "{path} already exists: pass --overwrite (overwrite=True) to replace it{others}, "
    "or choose another path"
)


@dataclass(frozen=True)
class OutputKind:
    """A kind of output, and what an ``overwrite`` of it may replace.

    Attributes
    ----------
    error
        The exception raised when the path cannot be claimed.
    refusal
        Why an existing ``path`` may not be replaced even with ``overwrite`` (the rest of a
        sentence that starts with the path), or ``None`` when it may be.
    taken
        The message for a path that exists while ``overwrite`` is false (see :data:`TAKEN`).
    """

    error: type[TemAcqError]
    refusal: Callable[[Path], str | None]
    taken: str = TAKEN


def _not_a_store(path: Path) -> str | None:
    """A zarr store or an empty folder may be replaced by a store; nothing else."""
    if not path.is_dir():
        return (
            "exists and is a file, not a store: refusing to replace it even with --overwrite; "
            "remove it yourself or choose another path"
        )
    if not (path / "zarr.json").is_file() and any(path.iterdir()):
        return (
            "is a non-empty directory that is not a zarr store: refusing to delete it even "
            "with --overwrite; choose another path"
        )
    return None


def _not_a_file(path: Path) -> str | None:
    """A frame file may replace a file, never a folder."""
    if path.is_dir():
        return (
            "is a directory, not a frame file: refusing to replace it even with --overwrite; "
            "choose another path"
        )
    return None


def _anything(path: Path) -> str | None:
    """Today's rule for model packages: ``overwrite`` replaces whatever is there."""
    return None


#: What each kind of output may replace with ``overwrite``.
OUTPUT_KINDS: dict[str, OutputKind] = {
    "store": OutputKind(StoreError, _not_a_store),
    "model package": OutputKind(ModelPackageError, _anything),
    "frame file": OutputKind(
        TemAcqError,
        _not_a_file,
        taken="{path} already exists; choose another --out or pass --overwrite",
    ),
}


def claim_output(
    path: str | os.PathLike[str],
    *,
    overwrite: bool,
    kind: str = "store",
    parent_must_exist: bool = False,
    alternatives: str = "",
) -> bool:
    """Check that ``path`` may be written as a new output of ``kind``.

    Parameters
    ----------
    path
        Where the output goes.
    overwrite
        Whether an existing output of the same kind may be replaced (``--overwrite``).
    kind
        A key of :data:`OUTPUT_KINDS`: what the output is, and so what it may replace.
    parent_must_exist
        Refuse a path whose folder does not exist (for writers that do not create it).
    alternatives
        Other ways out that the caller offers, inserted into the message (e.g.
        ``"--resume (resume=True) to continue it"``).

    Returns
    -------
    bool
        True when something is at ``path`` and is to be replaced; False when it is free.

    Raises
    ------
    TemAcqError
        The kind's error (:class:`~tem_acq.errors.StoreError` for stores): the path exists and
        ``overwrite`` is false, what is there may not be replaced, or its folder is missing.
    """
    target = Path(path)
    output = OUTPUT_KINDS[kind]
    if not target.exists() and not target.is_symlink():
        if parent_must_exist and not target.parent.is_dir():
            raise output.error(
                f"the folder {target.parent} does not exist: create it or choose another path"
            )
        return False
    if not overwrite:
        others = f", {alternatives}" if alternatives else ""
        raise output.error(output.taken.format(path=target, others=others))
    refusal = output.refusal(target)
    if refusal is not None:
        raise output.error(f"{target} {refusal}")
    return True


__all__ = ["OUTPUT_KINDS", "TAKEN", "OutputKind", "claim_output"]
