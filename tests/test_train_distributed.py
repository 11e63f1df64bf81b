"""``tem-acq train --nproc N``: DistributedDataParallel through torchrun (2 CPU processes, gloo).

The end-to-end test collects a small pairs store on the simulated microscope, trains it on two
processes (10 steps, then resumed to 20), and compares with one process on the same config: the
package loads, the loss falls as it does alone, and the record says how many processes trained.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tem_acq.cli import main
from tem_acq.denoise import load_model, load_package
from tem_acq.errors import ConfigError
from tem_acq.train.distributed import (
    Ranks,
    StopRequest,
    per_rank_batch,
    rank_seed,
    ranks_from_env,
    shard,
    torchrun_command,
)

#: A tiny run: the fast architecture on 32 px crops, a global batch of 4 (2 per process).
TINY_YAML = """\
fast: true
crop: 32
batch_size: 4
warmup_steps: 1
val_every: 5
checkpoint_every: 5
val_fraction: 0.25
val_max_frames: 4
num_threads: 1
precision: fp32
"""


def test_ranks_come_from_torchruns_environment() -> None:
    assert ranks_from_env({}) is None
    assert ranks_from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    ranks = ranks_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert ranks == Ranks(rank=3, local_rank=1, world=4) and not ranks.is_main
    with pytest.raises(ConfigError, match="whole numbers"):
        ranks_from_env({"WORLD_SIZE": "two"})


def test_shards_batches_and_seeds_per_rank() -> None:
    two = [Ranks(rank=r, local_rank=r, world=2) for r in (0, 1)]
    pairs = np.arange(7)
    parts = [shard(pairs, r) for r in two]
    assert sorted(np.concatenate(parts).tolist()) == pairs.tolist()  # every pair, once
    assert not set(parts[0]) & set(parts[1])
    with pytest.raises(ConfigError, match="cannot be shared by 2 processes"):
        shard(np.arange(1), two[1])
    assert per_rank_batch(8, two[0]) == 4
    with pytest.raises(ConfigError, match="does not split evenly over 2 processes"):
        per_rank_batch(5, two[0])
    # rank 0 keeps the single-process seed (one process is unchanged), the others differ
    assert rank_seed(3, two[0]).entropy == rank_seed(3, None).entropy
    draws = {np.random.default_rng(rank_seed(3, r)).integers(1 << 30) for r in two}
    assert len(draws) == 2


def test_torchrun_command_and_stop_request() -> None:
    cmd = torchrun_command(2, ["train", "--pairs", "p"])
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc-per-node=2" in cmd and cmd[-4:] == ["tem_acq.cli", "train", "--pairs", "p"]
    with pytest.raises(ConfigError, match="--nproc must be"):
        torchrun_command(0, [])
    with StopRequest() as stop:  # a signal asks to stop; it never interrupts a step
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.fixture(scope="module")
def pairs_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "p.ome.zarr"
    code = main(
        [
            "collect-pairs",
            "--simulated",
            "--out",
            str(out),
            "--fields",
            "4",
            "--n-short",
            "2",
            "--long-exposure-ms",
            "100",
            "--size",
            "64",
        ]
    )
    assert code == 0
    return out


def _train(pairs: Path, out: Path, steps: int, nproc: int, *more: str) -> str:
    config = out.parent / "tiny.yaml"
    config.write_text(TINY_YAML)
    cmd = [
        sys.executable,
        "-m",
        "tem_acq.cli",
        "train",
        "--pairs",
        str(pairs),
        "--out",
        str(out),
        "--config",
        str(config),
        "--max-steps",
        str(steps),
        "--quiet",
        "--nproc",
        str(nproc),
        *more,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _losses(package: Path) -> list[float]:
    record = json.loads((package / "training.json").read_text())
    return [h["loss"] for h in record["history"]]


def test_two_gloo_processes_train_and_resume_like_one(pairs_store: Path, tmp_path: Path) -> None:
    ddp = tmp_path / "ddp"
    said = _train(pairs_store, ddp, 10, 2)
    assert "trained 10/10 steps on 2 processes" in said
    said = _train(pairs_store, ddp, 20, 2, "--resume")
    assert "trained 20/20 steps on 2 processes" in said
    alone = tmp_path / "alone"
    _train(pairs_store, alone, 20, 1)

    pkg = load_package(ddp)  # a complete, loadable package, written once by rank 0
    assert pkg.card.trained
    record = json.loads((ddp / "training.json").read_text())
    assert record["processes"] == 2 and record["steps"] == 20
    assert [h["step"] for h in record["history"]] == [5.0, 10.0, 15.0, 20.0]
    both, one = _losses(ddp), _losses(alone)
    assert both[-1] < both[0] and one[-1] < one[0]  # the loss falls on 2 processes as on 1
    assert abs(both[-1] - one[-1]) < 0.02 * one[-1]
    frames = np.random.default_rng(0).poisson(5.0, (1, 64, 64)).astype(np.uint16)
    denoised = load_model(ddp, device="cpu").denoise(frames)
    assert denoised.shape == frames.shape and np.isfinite(denoised).all()


def test_bad_inputs_are_refused_before_torchrun_starts(
    pairs_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", "--out", str(tmp_path / "m"), "--max-steps", "2"]
    for more, message in [
        (["--pairs", str(pairs_store), "--nproc", "0"], "--nproc must be a whole number"),
        (["--pairs", str(tmp_path / "missing.ome.zarr"), "--nproc", "2"], "does not exist"),
        (["--pairs", str(pairs_store), "--nproc", "2", "--device", "cuda:1"], "cuda"),
    ]:
        assert main([*base, *more]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "m").exists()
