"""Every example in examples/ runs (with small sizes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tem_acq.denoise import new_package

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_simulated_acquisition_example() -> None:
    result = load("simulated_acquisition").main(["--frames", "4", "--size", "256"])
    assert result["frames"] == 4
    assert result["exposure_ratio"] == pytest.approx(10.0, rel=0.15)
    assert result["poisson_ratio"] == pytest.approx(1.0, abs=0.06)


def test_live_denoising_example(tmp_path: Path) -> None:
    model = tmp_path / "fast"
    new_package(model, fast=True)
    out = tmp_path / "live.ome.zarr"
    result = load("live_denoising").main(
        ["--out", str(out), "--model", str(model), "--frames", "10", "--size", "128"]
    )
    assert result["frames"] == 10
    assert result["denoised"] >= 1 and result["shown"] == result["denoised"]
