"""End to end: a simulated paired collection, ``tem-acq train`` and ``tem-acq evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tem_acq.cli import main
from tem_acq.denoise import load_model


@pytest.mark.slow
def test_collect_train_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "p.ome.zarr"
    assert main(["collect-pairs", "--simulated", "--out", str(store), "--fields", "6",
                 "--n-short", "2", "--size", "256", "--specimen", "nanoparticles"]) == 0
    capsys.readouterr()
    # the acceptance run: the paper's architecture, 20 steps on 256x256 pairs, on the CPU
    # (about 20 s on 2 idle cores; the time is not asserted because the cores are shared)
    assert main(["train", "--pairs", str(store), "--out", str(tmp_path / "m"),
                 "--max-steps", "20", "--device", "cpu", "--quiet"]) == 0
    assert "trained 20/20 steps" in capsys.readouterr().out
    den = load_model(tmp_path / "m", "cpu")
    assert den.card.trained and den.card.encoder == "resnet18"
    assert main(["evaluate", "--model", str(tmp_path / "m"), "--pairs", str(store), "--json",
                 "--figure", str(tmp_path / "f.png"), "--device", "cpu"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert reports[0]["specimen"] == "nanoparticles" and reports[0]["rows"]
    assert (tmp_path / "f.png").stat().st_size > 10_000
