"""claim_output: the one check of an output path, for every command and writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tem_acq.errors import ModelPackageError, StoreError
from tem_acq.outputs import claim_output


def test_a_free_path_is_claimed(tmp_path: Path) -> None:
    assert claim_output(tmp_path / "new.zarr", overwrite=False) is False
    assert claim_output(tmp_path / "a" / "b.zarr", overwrite=False) is False  # writer makes a/


def test_a_missing_folder_is_refused_when_the_writer_needs_it(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"the folder .*missing does not exist: create it"):
        claim_output(tmp_path / "missing" / "x.zarr", overwrite=False, parent_must_exist=True)


def test_an_existing_store_needs_overwrite(tmp_path: Path) -> None:
    store = tmp_path / "run.zarr"
    store.mkdir()
    (store / "zarr.json").write_text("{}")
    with pytest.raises(StoreError, match=r"already exists: pass --overwrite \(overwrite=True\)"):
        claim_output(store, overwrite=False)
    with pytest.raises(StoreError, match=r"to replace it, --resume \(resume=True\) to continue"):
        claim_output(store, overwrite=False, alternatives="--resume (resume=True) to continue it")
    assert claim_output(store, overwrite=True) is True
    assert store.is_dir()  # only checked: the writer replaces it its own way


def test_overwrite_replaces_only_what_a_store_may_replace(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert claim_output(empty, overwrite=True) is True
    (empty / "thesis.tex").write_text("precious")
    with pytest.raises(StoreError, match=r"non-empty directory that is not a zarr store"):
        claim_output(empty, overwrite=True)
    file = tmp_path / "notes.txt"
    file.write_text("x")
    with pytest.raises(StoreError, match=r"is a file, not a store"):
        claim_output(file, overwrite=True)
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(StoreError, match=r"already exists"):
        claim_output(link, overwrite=False)


def test_model_packages_raise_their_own_error(tmp_path: Path) -> None:
    package = tmp_path / "model"
    package.mkdir()
    with pytest.raises(ModelPackageError, match=r"already exists"):
        claim_output(package, overwrite=False, kind="model package")
    assert claim_output(package, overwrite=True, kind="model package") is True
