"""Claiming an output path: the one check every command and writer makes before writing.

Three rules, checked before any work starts:

1. **An output is never one of the inputs**: not the same path, not inside an input, not a
   folder that holds one (paths compared resolved: symbolic links, ``..``, trailing slashes),
   whatever the flags; and never inside a store (only a store's own writer writes there).
2. **The output's folder can be written**: the nearest folder that exists is a folder (not a
   file) and is writable (not on a read-only file system), so that a command fails in one line
   before it works, not after.
3. **An existing path is never replaced silently**: without ``overwrite`` it is refused, and
   even with it only an object of the kind the output is may be replaced (an acquisition store
   by an acquisition store, a model package by a model package, ...). What each kind of output
   may replace is declared once, in :data:`OUTPUT_KINDS`; a stricter rule for a kind (or a new
   kind) is a change there, not in the callers.

:func:`claim_output` only checks: replacing what is there is the writer's job, done its own
crash-safe way (the acquisition writer renames a fully built store over the old one).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tem_acq.errors import ModelPackageError, StoreError, TemAcqError

#: What a taken path is told when ``overwrite`` is false (``{path}``, ``{others}``: the
#: caller's other ways out).
TAKEN = (
    "{path} already exists: pass --overwrite (overwrite=True) to replace it{others}, "
    "or choose another path"
)
#: The files every model package holds (``tem_acq.denoise.package`` writes them; a test
#: checks that the names agree).
MODEL_PACKAGE_FILES = ("card.json", "config.json", "model.safetensors")
#: How a refusal ends: what is there stays, whatever the flags.
_KEPT = "refusing to replace it even with --overwrite; remove it yourself or choose another path"


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


def _not_a_folder(path: Path, wanted: str) -> str | None:
    """Why ``path``, which exists, is not a folder that may hold a new ``wanted``."""
    if path.is_symlink() and not path.exists():
        return f"already exists as a symbolic link to a missing path, not {wanted}: {_KEPT}"
    if not path.is_dir():
        return f"already exists and is a file, not {wanted}: {_KEPT}"
    return None


def _tem_acq_store_kind(path: Path) -> str:
    """What the zarr store at ``path`` is, in words (``"a pairs store"``...)."""
    from tem_acq.store.root import store_kind  # lazy: the store package imports this module

    try:
        return f"a tem-acq {store_kind(path)} store"
    except StoreError:
        return "a zarr store that is not a readable tem-acq store"


def _store_of(kind: str) -> Callable[[Path], str | None]:
    """The refusal of a ``kind`` store: it replaces a store of its own kind or an empty folder."""
    wanted = f"a tem-acq {kind} store"

    def refusal(path: Path) -> str | None:
        if (why := _not_a_folder(path, "a store")) is not None:
            return why
        if not (path / "zarr.json").is_file():
            if not any(path.iterdir()):
                return None
            return (
                "is a non-empty directory that is not a zarr store: refusing to delete it even "
                "with --overwrite; choose another path"
            )
        found = _tem_acq_store_kind(path)
        return None if found == wanted else f"is {found}, not {wanted}: {_KEPT}"

    return refusal


def _not_a_model_package(path: Path) -> str | None:
    """A model package replaces a model package or an empty folder; nothing else."""
    if (why := _not_a_folder(path, "a model package")) is not None:
        return why
    if all((path / name).is_file() for name in MODEL_PACKAGE_FILES) or not any(path.iterdir()):
        return None
    if (path / "zarr.json").is_file():
        return f"is {_tem_acq_store_kind(path)}, not a model package: {_KEPT}"
    return (
        f"is a non-empty folder that is not a model package (it lacks one of "
        f"{', '.join(MODEL_PACKAGE_FILES)}): {_KEPT}"
    )


def _a_file(
    description: str, suffixes: tuple[str, ...] = (), *, flag: str = " even with --overwrite"
) -> Callable[[Path], str | None]:
    """The refusal of a file output: it replaces a file (with one of ``suffixes``), no folder.

    ``flag`` names the option that does not help, for outputs whose command has one.
    """

    def refusal(path: Path) -> str | None:
        if path.is_dir():
            return (
                f"is a directory, not {description}: refusing to replace it{flag}; choose "
                "another path"
            )
        if suffixes and path.suffix.lower() not in suffixes:
            return (
                f"already exists and is not {description}: refusing to replace it{flag}; "
                "remove it yourself or choose another path"
            )
        return None

    return refusal


#: What each kind of output may replace with ``overwrite``.
OUTPUT_KINDS: dict[str, OutputKind] = {
    "acquisition store": OutputKind(StoreError, _store_of("acquisition")),
    "pairs store": OutputKind(StoreError, _store_of("pairs")),
    "model package": OutputKind(ModelPackageError, _not_a_model_package),
    "frame file": OutputKind(
        TemAcqError,
        _a_file("a frame file"),
        taken="{path} already exists; choose another --out or pass --overwrite",
    ),
    "bioimage.io package": OutputKind(
        ModelPackageError, _a_file("a bioimage.io package (.zip)", (".zip",))
    ),
    # commands without --overwrite that replace their own earlier output (overwrite=True)
    "report": OutputKind(TemAcqError, _a_file("an HTML report", (".html", ".htm"), flag="")),
    "figure": OutputKind(TemAcqError, _a_file("a figure", flag="")),
}


def claim_output(
    path: str | os.PathLike[str],
    *,
    overwrite: bool,
    kind: str = "acquisition store",
    parent_must_exist: bool = False,
    alternatives: str = "",
    inputs: Iterable[str | os.PathLike[str]] = (),
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
    inputs
        What the command reads (files, stores, model packages): the output may not be one
        of them, inside one, or hold one.

    Returns
    -------
    bool
        True when something is at ``path`` and is to be replaced; False when it is free.

    Raises
    ------
    TemAcqError
        The kind's error (:class:`~tem_acq.errors.StoreError` for stores): the path is or
        overlaps an input, its folder is missing, a file or not writable, what is there may
        not be replaced, or it exists and ``overwrite`` is false.
    """
    target = Path(path)
    output = OUTPUT_KINDS[kind]
    check_not_an_input(target, inputs, kind=kind)
    if (store := _enclosing_store(target)) is not None:
        raise output.error(
            f"{target} is inside the store {store}: only a store's own writer writes into it; "
            "choose a path outside it"
        )
    if (unwritable := _unwritable(target, parent_must_exist)) is not None:
        raise output.error(unwritable)
    if not target.exists() and not target.is_symlink():
        return False
    refusal = output.refusal(target)
    if refusal is not None:
        raise output.error(f"{target} {refusal}")
    if not overwrite:
        others = f", {alternatives}" if alternatives else ""
        raise output.error(output.taken.format(path=target, others=others))
    return True


def check_not_an_input(
    path: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]],
    *,
    kind: str = "acquisition store",
) -> None:
    """Refuse an output ``path`` that is one of ``inputs``, inside one or holds one.

    Paths are compared resolved (symbolic links, ``..``, trailing slashes); an existing output
    that is an existing input under another name (a hard link, a bind mount) is caught too.
    :func:`claim_output` checks this first; a command calls it directly for what it writes
    beside its output (a checkpoint).

    Raises
    ------
    TemAcqError
        The ``kind``'s error, naming the input.
    """
    target = Path(path)
    for source in inputs:
        if (overlap := _overlap(target, Path(source))) is not None:
            raise OUTPUT_KINDS[kind].error(
                f"{target} {overlap}: an output may never be one of the command's inputs "
                "(not even with --overwrite); choose another path"
            )


def _resolved(path: Path) -> Path:
    """``path`` absolute, with symbolic links and ``..`` resolved (as far as it exists)."""
    return Path(os.path.realpath(path))


def _overlap(target: Path, source: Path) -> str | None:
    """How the output ``target`` overlaps the input ``source``, or None when it does not."""
    out, src = _resolved(target), _resolved(source)
    same = out == src or (out.exists() and src.exists() and os.path.samefile(out, src))
    if same:
        return f"is the input {source}"
    if src in out.parents:
        return f"is inside the input {source}"
    if out in src.parents:
        return f"holds the input {source}"
    return None


def _enclosing_store(target: Path) -> Path | None:
    """The zarr store (the outermost folder with a ``zarr.json``) that holds ``target``, if any."""
    for folder in reversed(_resolved(target).parents):
        if (folder / "zarr.json").is_file():
            return folder
    return None


def _unwritable(target: Path, parent_must_exist: bool) -> str | None:
    """Why nothing can be written at ``target``'s folder, or None when it can."""
    folder = target.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot write {target}: {existing} is a file, not a folder; choose another path"
    if existing != folder and parent_must_exist:
        return f"the folder {folder} does not exist: create it or choose another path"
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        why = "is on a read-only file system" if read_only else "is not writable by you"
        return f"cannot write {target}: the folder {existing} {why}; choose a writable path"
    return None


__all__ = [
    "MODEL_PACKAGE_FILES",
    "OUTPUT_KINDS",
    "TAKEN",
    "OutputKind",
    "check_not_an_input",
    "claim_output",
]
