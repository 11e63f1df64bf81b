"""Training on several processes: PyTorch DistributedDataParallel, launched through torchrun.

``tem-acq train ... --nproc N`` starts ``torchrun --standalone --nproc-per-node N`` on the same
command (:func:`launch`); each process then finds its rank in the environment torchrun sets
(:func:`ranks_from_env`) and :func:`tem_acq.train.train` trains one shard of the training pairs
with its own seed, gradients averaged across the processes (NCCL on GPUs, one GPU per process;
gloo on CPUs). The global batch is the config's ``batch_size``, split evenly across the
processes, so the same config file describes the same optimisation on one device or many.
Rank 0 alone validates, checkpoints and writes the package.

A signal (Ctrl-C, or the SIGTERM torchrun forwards) only asks to stop: every process finishes
its step, all agree on the step to stop at, rank 0 validates and checkpoints, and the run is
resumable with ``--resume`` (on any number of processes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tem_acq.errors import ConfigError

if TYPE_CHECKING:
    import torch

#: The most processes ``--nproc`` starts on one machine.
MAX_PROCESSES = 64


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a distributed run.

    Attributes
    ----------
    rank
        Its rank among all processes (0 writes the package).
    local_rank
        Its rank on this machine (which GPU it takes).
    world
        How many processes train together.
    """

    rank: int
    local_rank: int
    world: int

    @property
    def is_main(self) -> bool:
        """True for rank 0, the process that validates, checkpoints and writes."""
        return self.rank == 0


def ranks_from_env(environ: Mapping[str, str] | None = None) -> Ranks | None:
    """The ranks of this process, from torchrun's environment; None outside a run of 2 or more."""
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError(
            "WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers (torchrun sets them); "
            f"got {env.get('WORLD_SIZE')!r}, {env.get('RANK')!r}, {env.get('LOCAL_RANK')!r}"
        ) from None
    if world <= 1:
        return None
    return Ranks(rank=rank, local_rank=local, world=world)


def check_nproc(nproc: int) -> int:
    """Refuse a process count below 1 or above :data:`MAX_PROCESSES`."""
    if not (isinstance(nproc, int) and 1 <= nproc <= MAX_PROCESSES):
        raise ConfigError(f"--nproc must be a whole number from 1 to {MAX_PROCESSES}, got {nproc}")
    return nproc


def device_for(ranks: Ranks, device: str) -> torch.device:
    """The device of this rank: its own GPU (``cuda:LOCAL_RANK``) or the CPU.

    Raises
    ------
    ConfigError
        If ``device`` names one GPU (each process takes its own), or CUDA is asked for and
        missing.
    """
    import torch

    from tem_acq.denoise import select_device

    if device.startswith("cuda:"):
        raise ConfigError(
            f"--device {device} cannot be shared by several processes: each takes "
            "cuda:LOCAL_RANK; give --device cuda (or auto)"
        )
    chosen = select_device(device)  # one-line errors for an unknown device or missing CUDA
    if chosen.type != "cuda":
        return torch.device("cpu")
    return torch.device("cuda", ranks.local_rank % torch.cuda.device_count())


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """The run's process group: NCCL between GPUs, gloo between CPU processes."""
    import torch
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def shard(indices: np.ndarray, ranks: Ranks) -> np.ndarray:
    """The share of the training pairs this rank trains on (every ``world``-th, from its rank)."""
    part = indices[ranks.rank :: ranks.world]
    if not len(part):
        raise ConfigError(
            f"{len(indices)} training pairs cannot be shared by {ranks.world} processes; "
            "use fewer processes (--nproc) or more pairs"
        )
    return part


def per_rank_batch(batch_size: int, ranks: Ranks) -> int:
    """Each rank's part of the global batch; refused when it does not split evenly."""
    if batch_size % ranks.world:
        raise ConfigError(
            f"batch_size {batch_size} does not split evenly over {ranks.world} processes; "
            "choose a batch_size that --nproc divides"
        )
    return batch_size // ranks.world


def rank_seed(seed: int, ranks: Ranks | None, *extra: int) -> np.random.SeedSequence:
    """The crop sampler's seed: the run's own on rank 0 (and alone), one per rank otherwise."""
    key = [seed, 0xC209, *extra]
    if ranks is not None and ranks.rank:
        key.append(ranks.rank)
    return np.random.SeedSequence(key)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (a collective: all ranks must call)."""
    import torch
    import torch.distributed as dist

    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def barrier() -> None:
    """Wait until every rank gets here."""
    import torch.distributed as dist

    dist.barrier()


class StopRequest:
    """Signals that ask the run to stop after the current step, instead of interrupting it.

    Used as a context manager in each process of a distributed run, where an exception in the
    middle of a step would leave the other processes waiting in a collective.
    """

    def __init__(self, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self._signals = signals
        self._event = threading.Event()
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """True once a signal arrived."""
        return self._event.is_set()

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self._signals:
                self._previous[sig] = signal.signal(sig, lambda *_: self._event.set())
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def torchrun_command(nproc: int, argv: Sequence[str]) -> list[str]:
    """The torchrun command that runs ``tem-acq ARGV`` on ``nproc`` local processes."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={check_nproc(nproc)}",
        "-m",
        "tem_acq.cli",
        *argv,
    ]


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``tem-acq ARGV`` on ``nproc`` processes through torchrun; returns its exit code.

    Ctrl-C reaches the processes themselves (they stop after their step and checkpoint); this
    process only waits for them, so that it never leaves them running.
    """
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    process = subprocess.Popen(torchrun_command(nproc, argv), env=env)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
