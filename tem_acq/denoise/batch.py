"""Denoise many acquisition stores, shard by shard, in this process or on a Dask cluster.

The unit of work is one shard of frames (:class:`~tem_acq.store.offline.ShardWork`): a task
reads only that shard's raw frames, denoises them with a model loaded once per worker process
(:func:`worker_denoiser`), writes the shard atomically and returns its log rows, which the
coordinating process appends (:func:`~tem_acq.store.offline.record_denoised`): the commit.
Memory is bounded by the shards in flight, never by the size of a store. A rerun looks at the
rows on disk and skips every committed shard, so a rerun after an interruption resumes; a task
on a worker that dies is rerun by the scheduler on another worker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tem_acq.denoise.options import DenoiseOptions
from tem_acq.errors import ConfigError

#: Shards in flight per worker: enough to keep workers busy, few enough to bound memory.
IN_FLIGHT_PER_WORKER = 2

#: Denoisers loaded in this (worker) process, by (model, options): one load per process.
_DENOISERS: dict[tuple[str, str], Any] = {}


@dataclass
class StoreJob:
    """One store to denoise: where, what it still lacks, and what its rows record."""

    path: Path
    work: list[Any]
    metadata: Any
    counts_per_electron: float
    frames: int = field(init=False)

    def __post_init__(self) -> None:
        self.frames = sum(len(w.frames) for w in self.work)


def worker_denoiser(model: str, options: DenoiseOptions, threads: int | None = None) -> Any:
    """The denoiser for ``model`` in this process, loaded on first use.

    On a Dask worker with ``device="auto"`` and several GPUs, worker ``i`` (LocalCluster names
    its workers 0, 1, ...) uses GPU ``i % n``: one worker per GPU.
    """
    key = (model, options.model_dump_json())
    denoiser = _DENOISERS.get(key)
    if denoiser is None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        device = _worker_device(options.device)
        from tem_acq.denoise import load_model

        denoiser = _DENOISERS[key] = load_model(
            model, options=options.model_copy(update={"device": device})
        )
    return denoiser


def _worker_device(device: str) -> str:
    import torch

    n = torch.cuda.device_count() if device == "auto" else 0
    if n < 1:
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return device
    index = int(name) if str(name).isdigit() else 0
    return f"cuda:{index % n}"


def denoise_shard(
    work: Any,
    model: str,
    options: DenoiseOptions,
    metadata: Any,
    counts_per_electron: float,
    threads: int | None = None,
) -> list[str]:
    """Denoise one shard's pending frames and write its shard file; returns its log rows."""
    from tem_acq.denoise.provenance import model_provenance
    from tem_acq.store.offline import read_raw_frames, write_denoised_shard

    denoiser = worker_denoiser(model, options, threads)
    raw = read_raw_frames(work.store, work.frames)
    t0 = time.perf_counter()
    out = np.asarray(denoiser.denoise(raw, counts_per_electron=counts_per_electron))
    latency = 1e3 * (time.perf_counter() - t0) / max(1, len(work.frames))
    prov = model_provenance(denoiser)
    model_id = {"name": prov.name, "sha256": prov.sha256}
    return write_denoised_shard(work, out, metadata, model_id, latency_ms=latency)


def plan_stores(paths: Sequence[Path], provenance: Any) -> list[StoreJob]:
    """Prepare each store (:func:`~tem_acq.store.offline.prepare_denoised`) and list its work."""
    from tem_acq.store import open_store
    from tem_acq.store.offline import pending_shards, prepare_denoised

    jobs = []
    for path in paths:
        shard_frames = prepare_denoised(path, provenance)
        store = open_store(path)
        cpe = store.metadata.camera.counts_per_electron or 1.0
        work = pending_shards(store, shard_frames)
        jobs.append(StoreJob(path, work, store.metadata, float(cpe)))
    return jobs


def run_jobs(
    jobs: Sequence[StoreJob],
    model: str,
    options: DenoiseOptions,
    *,
    scheduler: str | None,
    workers: int | None = None,
    on_shard: Callable[[int], None] | None = None,
) -> int:
    """Denoise every pending shard of ``jobs``; returns the frames denoised.

    ``scheduler``: ``None`` runs in this process; ``"local"`` starts a ``LocalCluster`` of
    ``workers`` processes (default: one per GPU, else one per two cores); anything else is the
    address of a running Dask scheduler. ``on_shard(frames)`` is called after each commit.
    """
    from tem_acq.store.offline import record_denoised

    tasks = [(job, work) for job in jobs for work in job.work]
    done = 0
    if scheduler is None:
        for job, work in tasks:
            lines = denoise_shard(work, model, options, job.metadata, job.counts_per_electron)
            record_denoised(job.path, lines)
            done += len(work.frames)
            if on_shard is not None:
                on_shard(len(work.frames))
        return done
    with _client(scheduler, workers) as (client, n_workers, threads):
        for job, work, lines in _submit_bounded(client, tasks, model, options, n_workers, threads):
            record_denoised(job.path, lines)
            done += len(work.frames)
            if on_shard is not None:
                on_shard(len(work.frames))
    return done


def _submit_bounded(
    client: Any,
    tasks: list[tuple[StoreJob, Any]],
    model: str,
    options: DenoiseOptions,
    n_workers: int,
    threads: int | None,
) -> Iterator[tuple[StoreJob, Any, list[str]]]:
    """Submit tasks keeping at most ``IN_FLIGHT_PER_WORKER`` per worker; yield as they finish."""
    from distributed import as_completed

    pending = iter(tasks)
    limit = max(1, n_workers) * IN_FLIGHT_PER_WORKER
    which: dict[str, tuple[StoreJob, Any]] = {}

    def submit(job: StoreJob, work: Any) -> Any:
        future = client.submit(
            denoise_shard,
            work,
            model,
            options,
            job.metadata,
            job.counts_per_electron,
            threads,
            pure=False,
            retries=2,
        )
        which[future.key] = (job, work)
        return future

    first = [submit(job, work) for job, work in _take(pending, limit)]
    queue = as_completed(first)
    for future in queue:
        job, work = which.pop(future.key)
        lines = future.result()
        future.release()
        for nxt in _take(pending, 1):
            queue.add(submit(*nxt))
        yield job, work, lines


def _take(items: Iterator[Any], n: int) -> list[Any]:
    out = []
    for _ in range(n):
        try:
            out.append(next(items))
        except StopIteration:
            break
    return out


class _client:
    """A Dask client: on a new LocalCluster (``"local"``) or an existing scheduler's address."""

    def __init__(self, scheduler: str, workers: int | None) -> None:
        self.scheduler, self.workers = scheduler, workers
        self.cluster: Any = None
        self.client: Any = None

    def __enter__(self) -> tuple[Any, int, int | None]:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - a dependency
            raise ConfigError(f"--scheduler needs dask.distributed: {exc}") from exc
        if self.scheduler == "local":
            n = self.workers or default_workers()
            threads = _threads_per_worker(n)
            self.cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=40,
            )
            self.client = Client(self.cluster)
            return self.client, n, threads
        self.client = Client(self.scheduler)
        n = len(self.client.scheduler_info().get("workers", {})) or 1
        return self.client, n, None

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _threads_per_worker(workers: int) -> int:
    """Torch threads of each worker: ``OMP_NUM_THREADS`` when set, else the cores shared out."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, (os.cpu_count() or 1) // workers)


def default_workers() -> int:
    """Workers of a LocalCluster: one per GPU where there are GPUs, else one per two cores."""
    import torch

    gpus = torch.cuda.device_count()
    if gpus:
        return gpus
    return max(1, (os.cpu_count() or 1) // 2)
