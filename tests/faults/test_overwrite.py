"""Issue 12, case 1: ``--overwrite`` never loses data.

An output may never be one of the command's inputs (same path, inside one, holding one), and
``--overwrite`` replaces only an object of the kind the command writes. Every case runs the
real command line in a subprocess and hashes every file under the test's folder before and
after: what is not the command's own output stays byte-identical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from faults.commands import (
    copy_package,
    digest_tree,
    make_acquisition_store,
    make_pairs_store,
    run_and_compare,
)

from tem_acq.errors import ModelPackageError, StoreError


@pytest.fixture
def work(tmp_path: Path, fast_pkg: Path) -> Path:
    """A folder with an acquisition store (40 frames), a pairs store and a model package."""
    make_acquisition_store(tmp_path / "s.ome.zarr", frames=40)
    make_pairs_store(tmp_path / "p.ome.zarr")
    copy_package(fast_pkg, tmp_path / "m")
    np.save(tmp_path / "frames.npy", np.full((2, 32, 32), 220, np.uint16))
    return tmp_path


def test_denoise_onto_its_own_store_is_refused_and_the_store_stays_identical(work: Path) -> None:
    """The issue's reproducer: 40 frames once became 16 zero frames that info called complete."""
    run = run_and_compare(
        work, "denoise", "s.ome.zarr", "--model", "./m", "--out", "s.ome.zarr", "--overwrite"
    )
    line = run.one_error_line()
    assert "s.ome.zarr is the input s.ome.zarr" in line
    from tem_acq.store import open_store

    store = open_store(work / "s.ome.zarr")
    assert store.raw.shape[0] == 40 and store.complete


def test_model_new_never_replaces_a_store(work: Path) -> None:
    line = run_and_compare(
        work, "model", "new", "--fast", "--out", "s.ome.zarr", "--overwrite"
    ).one_error_line()
    assert "is a tem-acq acquisition store, not a model package" in line


def test_train_never_writes_over_or_into_its_pairs(work: Path) -> None:
    line = run_and_compare(
        work, "train", "--pairs", "p.ome.zarr", "--out", "p.ome.zarr", "--overwrite"
    ).one_error_line()
    assert "p.ome.zarr is the input p.ome.zarr" in line


def test_acquire_never_replaces_a_pairs_store(work: Path) -> None:
    line = run_and_compare(
        work,
        "acquire",
        "--simulated",
        "--frames",
        "2",
        "--size",
        "64",
        "--out",
        "p.ome.zarr",
        "--overwrite",
    ).one_error_line()
    assert "is a tem-acq pairs store, not a tem-acq acquisition store" in line


def test_report_never_writes_into_its_store_or_over_other_files(work: Path) -> None:
    line = run_and_compare(work, "report", "s.ome.zarr", "--out", "s.ome.zarr").one_error_line()
    assert "s.report.html is inside the input s.ome.zarr" in line
    (work / "notes.txt").write_text("precious")
    line = run_and_compare(work, "report", "s.ome.zarr", "--out", "notes.txt").one_error_line()
    assert "notes.txt already exists and is not an HTML report" in line


def test_overwrite_still_replaces_an_output_of_the_same_kind(work: Path) -> None:
    """The control: the rule refuses the wrong thing, not everything."""
    make_acquisition_store(work / "old.ome.zarr", frames=3)
    run = run_and_compare(
        work,
        "denoise",
        "s.ome.zarr",
        "--model",
        "./m",
        "--out",
        "old.ome.zarr",
        "--overwrite",
        outputs=["old.ome.zarr"],
    )
    assert run.returncode == 0, run.stderr
    from tem_acq.store import open_store

    assert open_store(work / "old.ome.zarr").raw.shape[0] == 40


# -- the recorder and the writers refuse the same way, in-process ------------------------------


def test_live_recorder_overwrite_refuses_a_pairs_store_and_a_model_package(
    tmp_path: Path, fast_pkg: Path
) -> None:
    from acquisition_hooks import LiveRecorder

    pairs = make_pairs_store(tmp_path / "p.ome.zarr")
    package = copy_package(fast_pkg, tmp_path / "m")
    before = digest_tree(tmp_path)
    settings = {"pixel_size_A": 30.0, "counts_per_electron": 1.0, "exposure_ms": 1.0}
    with pytest.raises(StoreError, match=r"pairs store, not a tem-acq acquisition store"):
        LiveRecorder(pairs, overwrite=True, **settings)
    with pytest.raises(StoreError, match=r"non-empty directory that is not a zarr store"):
        LiveRecorder(package, overwrite=True, **settings)
    with pytest.raises(StoreError, match=r"run.ome.zarr is inside the input"):
        LiveRecorder(package / "run.ome.zarr", model=package, **settings)
    assert digest_tree(tmp_path) == before


def test_store_writers_overwrite_only_their_own_kind(tmp_path: Path) -> None:
    from tem_acq.store import AcquisitionMetadata, AcquisitionWriter, PairsMetadata, PairsWriter

    acquisition = make_acquisition_store(tmp_path / "s.ome.zarr", frames=3)
    pairs = make_pairs_store(tmp_path / "p.ome.zarr")
    before = digest_tree(tmp_path)
    from faults.commands import STORE_METADATA

    meta = AcquisitionMetadata.model_validate(STORE_METADATA)
    with pytest.raises(StoreError, match=r"pairs store, not a tem-acq acquisition store"):
        AcquisitionWriter(pairs, meta, (8, 8), np.uint16, overwrite=True)
    from tem_acq.store import open_pairs

    pairs_meta = PairsMetadata.model_validate(open_pairs(pairs).metadata.model_dump())
    with pytest.raises(StoreError, match=r"acquisition store, not a tem-acq pairs store"):
        PairsWriter(acquisition, pairs_meta, (8, 8), overwrite=True)
    assert digest_tree(tmp_path) == before


def test_model_writers_never_replace_a_store(tmp_path: Path) -> None:
    from tem_acq.denoise import new_package

    make_acquisition_store(tmp_path / "s.ome.zarr", frames=3)
    before = digest_tree(tmp_path)
    with pytest.raises(ModelPackageError, match=r"acquisition store, not a model package"):
        new_package(tmp_path / "s.ome.zarr", fast=True, overwrite=True)
    assert digest_tree(tmp_path) == before


# -- the full matrix (slow): every command, every way an output can be an input ----------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "out"),
    [
        ("s.ome.zarr", "s.ome.zarr/"),
        ("s.ome.zarr", "./x/../s.ome.zarr"),
        ("s.ome.zarr", "alias.ome.zarr"),
        ("alias.ome.zarr", "s.ome.zarr"),
        ("s.ome.zarr", "s.ome.zarr/raw/new.ome.zarr"),
        ("holder.zarr/inner.ome.zarr", "holder.zarr"),
    ],
)
def test_denoise_refuses_every_spelling_of_its_input(work: Path, source: str, out: str) -> None:
    (work / "x").mkdir()
    (work / "alias.ome.zarr").symlink_to(work / "s.ome.zarr")
    (work / "holder.zarr").mkdir()
    make_acquisition_store(work / "holder.zarr" / "inner.ome.zarr", frames=2)
    line = run_and_compare(
        work, "denoise", source, "--model", "./m", "--out", out, "--overwrite"
    ).one_error_line()
    assert "an output may never be one of the command's inputs" in line


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("denoise", "frames.npy", "--model", "./m", "--out", "frames.npy", "--overwrite"),
        ("denoise", "frames.npy", "--model", "./m", "--out", "m/out.npy"),
        ("denoise", "s.ome.zarr", "--model", "./m", "--out", "p.ome.zarr", "--overwrite"),
        ("denoise", "s.ome.zarr", "--model", "./m", "--out", "s.ome.zarr/raw.tif"),
        ("model", "new", "--out", "p.ome.zarr", "--overwrite"),
        ("model", "new", "--out", "s.ome.zarr/model"),
        ("train", "--pairs", "p.ome.zarr", "--out", "s.ome.zarr", "--overwrite"),
        ("train", "--pairs", "p.ome.zarr", "--out", "p.ome.zarr/model"),
        ("train", "--pairs", "p.ome.zarr", "--init", "./m", "--out", "m", "--overwrite"),
        ("evaluate", "--model", "./m", "--pairs", "p.ome.zarr", "--figure", "p.ome.zarr/f.png"),
        ("evaluate", "--model", "./m", "--pairs", "p.ome.zarr", "--figure", "m/f.png"),
        ("acquire", "--simulated", "--size", "64", "--out", "m", "--overwrite"),
        ("acquire", "--simulated", "--size", "64", "--model", "./m", "--out", "m/a.ome.zarr"),
        ("collect-pairs", "--simulated", "--size", "64", "--out", "s.ome.zarr", "--overwrite"),
        ("collect-pairs", "--simulated", "--size", "64", "--out", "m", "--overwrite"),
    ],
)
def test_every_command_refuses_outputs_that_are_inputs_or_of_another_kind(
    work: Path, args: tuple[str, ...]
) -> None:
    run_and_compare(work, *args).one_error_line()
