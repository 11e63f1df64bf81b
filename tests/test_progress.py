"""Long commands report progress when piped: plain periodic lines, and one at the end."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from tem_acq.progress import Progress


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    with Progress("training", 10, unit="steps", every_s=0.0, stream=out) as bar:
        for step in range(1, 11):
            bar.update(step, loss=0.5 / step)
    lines = out.getvalue().splitlines()
    assert len(lines) == 11  # one per update (every_s=0) and the final one
    assert lines[0].startswith("training: 1/10 steps (10 %)") and "loss 0.5" in lines[0]
    assert lines[-1].startswith("training: 10/10 steps (100 %)") and "ETA" not in lines[-1]


def test_nothing_when_off_and_only_the_end_when_fast() -> None:
    out = io.StringIO()
    with Progress("x", 3, show=False, stream=out) as bar:
        bar.advance(3)
    assert out.getvalue() == ""
    with Progress("collecting pairs", 3, unit="fields", stream=out) as bar:
        bar.advance()
        bar.advance()
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[-1]]
    assert "2/3 fields (67 %)" in out.getvalue()


def test_train_prints_progress_lines_when_piped(tmp_path: Path) -> None:
    from tem_acq.cli import main

    pairs = tmp_path / "p.ome.zarr"
    assert main(["collect-pairs", "--simulated", "--out", str(pairs), "--fields", "3",
                 "--size", "64", "--long-exposure-ms", "40"]) == 0  # fmt: skip
    config = tmp_path / "tiny.yaml"
    config.write_text("fast: true\ncrop: 32\nbatch_size: 2\nval_every: 2\nnum_threads: 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "tem_acq.cli", "train", "--pairs", str(pairs), "--out",
         str(tmp_path / "m"), "--config", str(config), "--max-steps", "4"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "training: 4/4 steps (100 %)" in done.stderr


def test_denoise_of_a_stack_prints_progress_when_piped(tmp_path: Path) -> None:
    import numpy as np

    stack = tmp_path / "stack.npy"
    np.save(stack, np.random.default_rng(0).poisson(5.0, (6, 64, 64)).astype(np.uint16))
    done = subprocess.run(
        [sys.executable, "-m", "tem_acq.cli", "denoise", str(stack), "--model", "fast",
         "--out", str(tmp_path / "out.npy"), "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "denoising: 6/6 frames (100 %)" in done.stderr
