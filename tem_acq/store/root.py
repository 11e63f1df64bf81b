"""The root of every tem-acq store: its ``zarr.json``, its kind and its versioned metadata.

Every store kind starts the same way: a zarr v3 group whose attributes hold the tem-acq
metadata (a :class:`~tem_acq.store.metadata.StoreHeader` model) under ``"tem_acq"``, with a
schema version and a kind. This module reads that, and only that: :func:`store_kind` says which
reader to use, :func:`open_root` checks the version and kind and validates the kind's model;
each kind's reader then opens its arrays. A new store kind adds its kind and the name of its
opener (for messages that point to the right reader) to :data:`KINDS`, and derives its model
from ``StoreHeader``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from tem_acq.errors import StoreError
from tem_acq.schema import as_model
from tem_acq.store.metadata import (
    SCHEMA_MAJOR,
    SCHEMA_VERSION,
    AcquisitionMetadata,
    StoreHeader,
    schema_major,
)

#: Every store kind tem-acq knows, with the function that opens it (for messages).
KINDS: dict[str, str] = {"acquisition": "open_store", "pairs": "open_pairs"}

Metadata = TypeVar("Metadata", bound=StoreHeader)


def read_root(path: Path) -> dict[str, Any]:
    """The root ``zarr.json`` of the store at ``path``, checked to be a zarr v3 group.

    Raises
    ------
    StoreError
        If ``path`` does not exist, is a file, has no readable ``zarr.json`` or is not a zarr
        v3 group.
    """
    if not path.exists():
        raise StoreError(f"no store at {path}: the path does not exist")
    if not path.is_dir():
        raise StoreError(
            f"{path} is a file, not a store: a tem-acq store is a directory (NAME.zarr)"
        )
    root_json = path / "zarr.json"
    if not root_json.is_file():
        hint = " (zarr v2?)" if (path / ".zgroup").is_file() else ""
        raise StoreError(
            f"{path} is a directory but not a zarr v3 store{hint} (no zarr.json): give the "
            "path of a store written by tem-acq"
        )
    try:
        doc = json.loads(root_json.read_bytes())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}/zarr.json is unreadable ({exc}): the store is damaged") from None
    if not isinstance(doc, dict) or doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
        raise StoreError(
            f"{path}/zarr.json is not a zarr v3 group: give the path of a store written by tem-acq"
        )
    return doc


def tem_acq_attribute(attrs: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """The ``tem_acq`` attribute of a store root (its metadata, not yet validated).

    Raises
    ------
    StoreError
        If the root has none: a zarr store, but not a tem-acq one.
    """
    raw = attrs.get("tem_acq")
    if not isinstance(raw, Mapping):
        raise StoreError(
            f"{where} is a zarr store but not a tem-acq store (no 'tem_acq' metadata in its "
            "zarr.json): open it with zarr directly"
        )
    return raw


def store_kind(path: str | os.PathLike[str]) -> str:
    """The ``kind`` of the tem-acq store at ``path`` (``"acquisition"``, ``"pairs"``, ...).

    Reads only the root ``zarr.json``.

    Raises
    ------
    StoreError
        If ``path`` is not a tem-acq store (the same message its reader would give).
    """
    root = read_root(Path(path))
    return str(tem_acq_attribute(root.get("attributes") or {}, str(path)).get("kind"))


def parse_store_metadata(
    attrs: Mapping[str, Any],
    where: str,
    # mypy cannot see that the default fits the TypeVar (python/mypy#3737)
    model: type[Metadata] = AcquisitionMetadata,  # type: ignore[assignment]
) -> Metadata:
    """Read the ``tem_acq`` attribute of a store root written by any tem-acq version.

    Parameters
    ----------
    attrs
        The ``attributes`` of the root ``zarr.json``.
    where
        The store's path, for messages.
    model
        The metadata model of the kind expected (its ``kind`` field's default names it).

    Raises
    ------
    StoreError
        If the store is not a tem-acq store, was written by a newer major schema version, is of
        another kind, or its metadata does not validate.
    """
    raw = tem_acq_attribute(attrs, where)
    version = _readable_version(raw, where)
    _check_kind(raw.get("kind"), model.model_fields["kind"].default, where)
    hint = ""
    if version != SCHEMA_VERSION:
        hint = f" (written with schema {version}; this tem-acq writes {SCHEMA_VERSION})"
    return as_model(model, raw, f"{where} has invalid tem_acq metadata{hint}", StoreError)


def open_root(path: Path, model: type[Metadata]) -> Metadata:
    """The validated metadata of the store at ``path``, which must be of ``model``'s kind.

    Raises
    ------
    StoreError
        See :func:`read_root` and :func:`parse_store_metadata`.
    """
    return parse_store_metadata(read_root(path).get("attributes") or {}, str(path), model)


def _readable_version(raw: Mapping[str, Any], where: str) -> str:
    """The store's schema version, refused when damaged or of a newer major version."""
    version = str(raw.get("schema_version", ""))
    try:
        major = schema_major(version)
    except ValueError:
        raise StoreError(
            f"{where} has no valid tem_acq schema_version (got {version!r}): the store is damaged"
        ) from None
    if major > SCHEMA_MAJOR:
        raise StoreError(
            f"{where} was written with store schema {version}, newer than this tem-acq reads "
            f"({SCHEMA_MAJOR}.x): upgrade tem-acq to open it"
        )
    return version


def _check_kind(kind: Any, wanted: str, where: str) -> None:
    """Refuse a store of another kind, naming the function that opens it."""
    if kind == wanted:
        return
    if kind in KINDS:
        article = "an" if wanted[0] in "aeiou" else "a"
        raise StoreError(
            f"{where} is a tem-acq {kind!r} store, not {article} {wanted} store: open it with "
            f"{KINDS[kind]} (tem-acq info works on every kind)"
        )
    raise StoreError(
        f"{where} is a tem-acq store of unknown kind {kind!r}: it may come from a newer "
        "tem-acq; upgrade to open it"
    )


__all__ = [
    "KINDS",
    "open_root",
    "parse_store_metadata",
    "read_root",
    "store_kind",
    "tem_acq_attribute",
]
