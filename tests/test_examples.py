"""Every example in examples/ runs (with small sizes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

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


def test_live_denoising_example(tmp_path: Path, fast_pkg: Path) -> None:
    out = tmp_path / "live.ome.zarr"
    result = load("live_denoising").main(
        ["--out", str(out), "--model", str(fast_pkg), "--frames", "10", "--size", "128"]
    )
    assert result["frames"] == 10
    assert result["denoised"] >= 1 and result["shown"] == result["denoised"]


def test_collect_pairs_then_train_and_evaluate_examples(tmp_path: Path) -> None:
    collect = load("collect_pairs")
    train_pairs, test_pairs = tmp_path / "train.ome.zarr", tmp_path / "test.ome.zarr"
    got = collect.main(["--out", str(train_pairs), "--fields", "4", "--size", "64"])
    assert got == {"pairs": 8, "fields": 4}
    # another specimen seed: fields the model never saw
    collect.main(
        ["--out", str(test_pairs), "--fields", "2", "--size", "64", "--n-short", "1", "--seed", "1"]
    )
    result = load("train_and_evaluate").main(
        [
            "--pairs",
            str(train_pairs),
            "--test",
            str(test_pairs),
            "--out",
            str(tmp_path / "m"),
            "--steps",
            "4",
            "--crop",
            "32",
            "--fast",
        ]
    )
    assert result["rows"] > 0
    assert (tmp_path / "m" / "card.json").is_file()
