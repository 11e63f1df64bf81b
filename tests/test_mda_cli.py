"""``tem-acq acquire`` and ``demo --stack pymmcore-plus``: the same store as pycro-manager."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tem_acq.cli import main as cli
from tem_acq.store import open_store

FRAMES = 50


def _acquire(tmp_path: Path, stack: str, model: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / f"{stack}.ome.zarr"
    args = ["acquire", "--simulated", "--stack", stack, "--frames", str(FRAMES), "--size", "64"]
    args += ["--model", str(model), "--quality-every-s", "0", "--out", str(out), "--json"]
    assert cli(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == FRAMES and summary["denoised"] + summary["skipped"] == FRAMES
    return out


def test_acquire_on_both_stacks_records_the_same_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fast_pkg: Path
) -> None:
    pm = open_store(_acquire(tmp_path, "pycromanager", fast_pkg, capsys))
    mda = open_store(_acquire(tmp_path, "pymmcore-plus", fast_pkg, capsys))
    assert pm.complete and mda.complete and pm.n_frames == mda.n_frames == FRAMES
    assert (pm.metadata.protocol.backend, mda.metadata.protocol.backend) == (
        "pycromanager",
        "pymmcore-plus",
    )
    header = {"instrument", "camera", "exposure_ms", "dose_e_per_px", "dose_rate_e_per_px_per_s"}
    assert pm.metadata.model_dump(include=header) == mda.metadata.model_dump(include=header)
    assert pm.metadata.model == mda.metadata.model  # the same model, provenance and all
    assert mda.metadata.axes is not None and mda.metadata.axes.sizes == {"t": FRAMES}
    assert pm.denoised_frames > 0 and mda.denoised_frames > 0

    def known(row: object) -> set[str]:  # the row fields that hold a value
        fields = row.model_dump()  # type: ignore[attr-defined]
        return {k for k, v in fields.items() if v not in (None, {}, [])} | set(fields["extra"])

    for a, b in zip(pm.frames, mda.frames, strict=True):
        assert known(a) - {"denoise_latency_ms", "model", "skipped"} == known(b) - {
            "denoise_latency_ms",
            "model",
            "skipped",
        }
        assert a.exposure_ms == b.exposure_ms == 2.0
        assert (a.stage_x_um, a.stage_y_um) == (b.stage_x_um, b.stage_y_um)
        assert a.dose_e_per_px == pytest.approx(b.dose_e_per_px, rel=0.2)
    assert [row.axes for row in pm.frames] == [{"time": i} for i in range(FRAMES)]
    assert [row.axes for row in mda.frames] == [{"t": i} for i in range(FRAMES)]
    for store in (pm, mda):
        ids = [int(row.extra["sim_frame_id"]) for row in store.frames]
        assert ids == list(range(ids[0], ids[0] + FRAMES))  # every frame, in order
    assert cli(["info", str(mda.path)]) == 0
    assert "t 50" in capsys.readouterr().out


def test_demo_on_pymmcore_plus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fast_pkg: Path
) -> None:
    out = tmp_path / "d"
    args = ["demo", "--stack", "pymmcore-plus", "--out", str(out), "--model", str(fast_pkg)]
    assert cli([*args, "--frames", "6", "--size", "128", "--interval-ms", "50", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frames"] == 6 and result["denoised"] + result["skipped"] == 6
    assert result["psnr_raw_dB"] is not None and (out / "demo.png").is_file()
    store = open_store(out / "demo.ome.zarr")
    assert store.metadata.protocol.backend == "pymmcore-plus" and store.complete
    assert store.info()["axes"] == {"t": 6}
