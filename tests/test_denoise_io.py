"""Frame files: pixel sizes come and go in angstrom, whatever unit the file uses."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile

from tem_acq.denoise.io import read_frames, write_frames


def test_mrc_pixel_size_is_angstrom_both_ways(tmp_path: Path) -> None:
    frames = np.ones((2, 16, 16), dtype=np.float32)
    write_frames(tmp_path / "a.mrc", frames, pixel_size_A=29.88)
    with mrcfile.open(tmp_path / "a.mrc") as mrc:
        assert float(mrc.voxel_size.x) == pytest.approx(29.88, rel=1e-6)
    assert read_frames(tmp_path / "a.mrc").pixel_size_A == pytest.approx(29.88, rel=1e-6)


@pytest.mark.parametrize(("unit", "scale", "angstrom"), [("nm", 0.2988, 2.988), ("um", 2e-3, 20.0)])
def test_gatan_pixel_size_tags_become_angstrom(
    tmp_path: Path, unit: str, scale: float, angstrom: float
) -> None:
    path = tmp_path / "gatan.tif"
    tags = [(65009, "f", 1, scale, True), (65012, "s", 0, unit, True)]
    tifffile.imwrite(path, np.ones((16, 16), dtype=np.uint16), extratags=tags)
    assert read_frames(path).pixel_size_A == pytest.approx(angstrom)
