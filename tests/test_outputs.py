"""claim_output: the one check of an output path, for every command and writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tem_acq.errors import ModelPackageError, StoreError, TemAcqError
from tem_acq.outputs import claim_output
from tem_acq.store import AcquisitionWriter

MetadataBuilder = Callable[..., Any]


def test_a_free_path_is_claimed(tmp_path: Path) -> None:
    assert claim_output(tmp_path / "new.zarr", overwrite=False) is False
    assert claim_output(tmp_path / "a" / "b.zarr", overwrite=False) is False  # writer makes a/


def test_a_missing_folder_is_refused_when_the_writer_needs_it(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"the folder .*missing does not exist: create it"):
        claim_output(tmp_path / "missing" / "x.zarr", overwrite=False, parent_must_exist=True)


def test_an_existing_store_needs_overwrite(tmp_path: Path, metadata: MetadataBuilder) -> None:
    store = tmp_path / "run.zarr"
    AcquisitionWriter(store, metadata(), (8, 8), np.uint16).close()
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


# -- issue 12 case 1: an output is never an input, and replaces only its own kind -------------


def test_a_fake_zarr_json_is_not_a_store_to_replace(tmp_path: Path) -> None:
    fake = tmp_path / "run.zarr"
    fake.mkdir()
    (fake / "zarr.json").write_text("{}")
    with pytest.raises(StoreError, match=r"not a readable tem-acq store, not a tem-acq acq"):
        claim_output(fake, overwrite=True)


def test_a_store_replaces_only_a_store_of_its_own_kind(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    from tem_acq.store import Camera, Instrument, PairsMetadata, PairsWriter

    acquisition = tmp_path / "a.zarr"
    AcquisitionWriter(acquisition, metadata(), (8, 8), np.uint16).close()
    pairs = tmp_path / "p.zarr"
    meta = PairsMetadata(
        instrument=Instrument(voltage_kV=300, pixel_size_A=2.5),
        camera=Camera(name="K3", counts_per_electron=1.0),
        short_exposure_ms=2.0,
        long_exposure_ms=400.0,
        n_short=1,
    )
    PairsWriter(pairs, meta, (8, 8)).close()
    assert claim_output(pairs, overwrite=True, kind="pairs store") is True
    with pytest.raises(StoreError, match=r"is a tem-acq pairs store, not a tem-acq acquisition"):
        claim_output(pairs, overwrite=True, kind="acquisition store")
    with pytest.raises(StoreError, match=r"is a tem-acq acquisition store, not a tem-acq pairs"):
        claim_output(acquisition, overwrite=True, kind="pairs store")
    with pytest.raises(ModelPackageError, match=r"acquisition store, not a model package"):
        claim_output(acquisition, overwrite=True, kind="model package")


def test_a_model_package_replaces_only_a_model_package(tmp_path: Path, fast_pkg: Path) -> None:
    assert claim_output(fast_pkg, overwrite=True, kind="model package") is True
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("precious")
    with pytest.raises(ModelPackageError, match=r"non-empty folder that is not a model package"):
        claim_output(thesis, overwrite=True, kind="model package")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ModelPackageError, match=r"is a file, not a model package"):
        claim_output(tmp_path / "notes.txt", overwrite=True, kind="model package")


def test_the_package_files_are_those_the_package_writer_writes() -> None:
    from tem_acq.denoise.package import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE
    from tem_acq.outputs import MODEL_PACKAGE_FILES

    assert set(MODEL_PACKAGE_FILES) == {CARD_FILE, CONFIG_FILE, WEIGHTS_FILE}


@pytest.mark.parametrize(
    ("output", "relation"),
    [
        ("in.zarr", "is the input"),
        ("in.zarr/", "is the input"),
        ("./sub/../in.zarr", "is the input"),
        ("link.zarr", "is the input"),
        ("in.zarr/raw/x.tif", "is inside the input"),
        ("link.zarr/new.zarr", "is inside the input"),
        (".", "holds the input"),
    ],
)
def test_an_output_is_never_an_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str, relation: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.zarr" / "raw").mkdir(parents=True)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.zarr").symlink_to(tmp_path / "in.zarr")
    with pytest.raises(StoreError, match=rf"{relation} in.zarr: an output may never be one of"):
        claim_output(output, overwrite=True, inputs=["in.zarr"])
    assert claim_output("other.zarr", overwrite=True, inputs=["in.zarr"]) is False


def test_a_hard_link_of_an_input_is_the_input(tmp_path: Path) -> None:
    frames = tmp_path / "frames.tif"
    frames.write_bytes(b"raw frames")
    (tmp_path / "alias.tif").hardlink_to(frames)
    with pytest.raises(TemAcqError, match=r"is the input .*frames.tif"):
        claim_output(tmp_path / "alias.tif", overwrite=True, kind="frame file", inputs=[frames])


def test_an_output_under_a_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ModelPackageError, match=r"afile is a file, not a folder"):
        claim_output(tmp_path / "afile" / "m", overwrite=False, kind="model package")
    with pytest.raises(StoreError, match=r"afile is a file, not a folder"):
        claim_output(tmp_path / "afile" / "deeper" / "s.zarr", overwrite=False)


def test_an_output_on_a_read_only_file_system_is_refused_before_work(tmp_path: Path) -> None:
    from faults.commands import read_only_folder

    with read_only_folder(tmp_path) as ro:
        for kind in ("acquisition store", "model package", "frame file", "report"):
            with pytest.raises(TemAcqError, match=r"folder .*read-only is on a read-only file"):
                claim_output(ro / "new" / "out.tif", overwrite=False, kind=kind)


def test_reports_and_figures_replace_their_own_kind_only(tmp_path: Path) -> None:
    old = tmp_path / "old.report.html"
    old.write_text("<html>")
    assert claim_output(old, overwrite=True, kind="report") is True
    notes = tmp_path / "notes.txt"
    notes.write_text("precious")
    with pytest.raises(TemAcqError, match=r"is not an HTML report: refusing to replace it;"):
        claim_output(notes, overwrite=True, kind="report")
    with pytest.raises(TemAcqError, match=r"is a directory, not a figure"):
        claim_output(tmp_path, overwrite=True, kind="figure")


def test_nothing_is_written_into_a_store_but_by_its_writer(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    store = tmp_path / "s.zarr"
    AcquisitionWriter(store, metadata(), (8, 8), np.uint16).close()
    for kind in ("acquisition store", "model package", "frame file", "report", "figure"):
        with pytest.raises(TemAcqError, match=r"s.zarr/raw/new is inside the store .*s.zarr: "):
            claim_output(store / "raw" / "new", overwrite=True, kind=kind)
