"""claim_output: the one check of an output path, for every command and writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tem_acq.errors import ModelPackageError, StoreError, TemAcqError
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


def test_frame_files_replace_files_never_folders(tmp_path: Path) -> None:
    out = tmp_path / "out.tif"
    out.write_bytes(b"old")
    with pytest.raises(TemAcqError, match="already exists; choose another --out or pass"):
        claim_output(out, overwrite=False, kind="frame file")
    assert claim_output(out, overwrite=True, kind="frame file") is True
    folder = tmp_path / "looks_like.tif"
    folder.mkdir()
    with pytest.raises(TemAcqError, match="is a directory, not a frame file"):
        claim_output(folder, overwrite=True, kind="frame file")
    with pytest.raises(TemAcqError, match="does not exist: create it"):
        claim_output(tmp_path / "no" / "x.tif", overwrite=False, kind="frame file",
                     parent_must_exist=True)
