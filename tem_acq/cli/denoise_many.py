"""``tem-acq denoise STORE [STORE ...]``: denoise stores in place, here or on a Dask cluster.

Each store's missing denoised frames go into its own ``denoised`` image (raw frames are never
written), shard by shard, with the model's provenance as live recording writes it; a read-only
store is first copied to ``--out-dir``. Safe to interrupt and rerun: committed shards are
skipped (:mod:`tem_acq.denoise.batch`, :mod:`tem_acq.store.offline`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

from tem_acq.errors import TemAcqError


def run_many(args: argparse.Namespace) -> int:
    """Denoise every store the inputs name; user errors raise TemAcqError."""
    from tem_acq.cli.denoise import LOCAL_CLUSTER_FRAMES
    from tem_acq.denoise import load_model
    from tem_acq.denoise.batch import plan_stores, run_jobs
    from tem_acq.denoise.options import DenoiseOptions
    from tem_acq.denoise.provenance import model_provenance
    from tem_acq.progress import Progress

    if args.workers is not None and args.workers < 1:
        raise TemAcqError(f"--workers must be >= 1, got {args.workers}")
    stores = [_writable(p, args.out_dir) for p in _expand(args.input)]
    # eager unless asked: the same values on every worker, in every run (resume = one run)
    options = DenoiseOptions.from_settings(
        device=args.device,
        path=args.path or "eager",
        compile=args.compile,
        batch_size=args.batch,
        tta=args.tta,
    )
    denoiser = load_model(args.model, options=options)
    jobs = plan_stores(stores, model_provenance(denoiser))
    total = sum(job.frames for job in jobs)
    scheduler = _scheduler(args.scheduler, len(jobs), total, LOCAL_CLUSTER_FRAMES)
    where = "this process" if scheduler is None else f"Dask ({scheduler})"
    print(
        f"{len(jobs)} store(s), {total} frame(s) to denoise with {denoiser.card.name} on {where}",
        file=sys.stderr,
    )
    t0 = time.perf_counter()
    if total:
        from tem_acq.denoise.package import package_folder

        model = str(package_folder(args.model))  # what every worker loads
        with Progress("denoising", total, unit="frames") as progress:
            run_jobs(
                [job for job in jobs if job.work],
                model,
                options,
                scheduler=scheduler,
                workers=args.workers,
                on_shard=progress.advance,
            )
    elapsed = time.perf_counter() - t0
    for job in jobs:
        done = f"{job.frames} frame(s) denoised" if job.frames else "nothing to do (all denoised)"
        print(f"{job.path}: {done}")
    if not total:
        print("nothing to do: every frame of every input is already denoised")
        return 0
    rate = f" ({total / elapsed:.3g} frames/s)" if elapsed > 0 else ""
    print(f"denoised {total} frame(s) in {elapsed:.2f} s{rate}")
    return 0


def _scheduler(flag: str | None, stores: int, frames: int, big: int) -> str | None:
    """The scheduler to use: None for this process."""
    if flag is None:
        return "local" if stores > 1 or frames > big else None
    return None if flag == "none" else flag


def _is_store(path: Path) -> bool:
    return path.is_dir() and (path / "zarr.json").is_file()


def _expand(inputs: list[str]) -> list[Path]:
    """The stores the inputs name: stores themselves, and the stores inside folders."""
    stores: list[Path] = []
    for name in inputs:
        path = Path(name)
        if not path.exists():
            raise TemAcqError(f"input {path} does not exist")
        if _is_store(path):
            stores.append(path)
        elif path.is_dir():
            found = sorted(p.parent for p in path.rglob("zarr.json") if _is_store_root(p.parent))
            if not found:
                raise TemAcqError(f"folder {path} holds no tem-acq store")
            stores += found
        else:
            raise TemAcqError(
                f"{path} is a file: denoise frame files one at a time with --out "
                f"(`tem-acq denoise {path} --out OUT.tif`)"
            )
    unique = list(dict.fromkeys(p.resolve() for p in stores))
    return unique


def _is_store_root(path: Path) -> bool:
    """A tem-acq acquisition store's root (not one of its groups)."""
    from tem_acq.store import store_kind

    try:
        return store_kind(path) == "acquisition"
    except TemAcqError:
        return False


def _writable(store: Path, out_dir: str | None) -> Path:
    """``store`` itself, or for a read-only one its copy in ``out_dir`` (made once, atomically)."""
    if os.access(store, os.W_OK) and os.access(store / "tem_acq_log.jsonl", os.W_OK):
        return store
    if out_dir is None:
        raise TemAcqError(f"{store} is read-only: pass --out-dir DIR to denoise a copy of it there")
    target = Path(out_dir) / store.name
    if _is_store(target):
        return target  # made by an earlier run: resume there
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.copying-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(store, staging, copy_function=shutil.copy2)
        for path in [staging, *staging.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        os.rename(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise TemAcqError(f"cannot copy {store} to {target}: {exc}") from exc
    return target
