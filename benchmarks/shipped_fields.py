"""The field sets behind the shipped models: generated reproducibly, cached field by field.

    python benchmarks/shipped_fields.py                 # generate (resumes) every set
    python benchmarks/shipped_fields.py --set atomic-train --jobs 2

Each set is a recipe of :mod:`tem_acq.sim.fields` (what is drawn), a count and a seed; field
``i`` of a set is drawn from ``numpy.random.default_rng([seed, i])``, so any field can be
regenerated alone and an interrupted run resumes where it stopped. The cache is
``$TEM_ACQ_CACHE/fields-<set>-<key>/<i>.npz`` (default ``~/.cache/tem-acq``), the key a hash of
the set's definition and the recipe, so a changed recipe never reads stale fields.

- ``*-train``: the training recipes (``ATOMIC_TRAIN``, ``LOWMAG_TRAIN``);
- ``*-test``: the same recipes, other seeds (in-distribution fields never trained on);
- ``*-independent``: the held-out recipes (materials, shapes, zone axes and optics the training
  never draws), recorded with held-out cameras (``DETECTORS_INDEPENDENT``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tem_acq.sim.fields import Field

CACHE = Path(os.environ.get("TEM_ACQ_CACHE", str(Path.home() / ".cache" / "tem-acq")))
#: Frame size of every field (pixels).
SIZE = 256


@dataclass(frozen=True)
class FieldSet:
    """A recipe, how many fields and the seed they are drawn with."""

    recipe: str
    n: int
    seed: int


SETS: dict[str, FieldSet] = {
    "atomic-train": FieldSet("ATOMIC_TRAIN", 160, 1400),
    "lowmag-train": FieldSet("LOWMAG_TRAIN", 240, 1500),
    "atomic-test": FieldSet("ATOMIC_TRAIN", 12, 91400),
    "lowmag-test": FieldSet("LOWMAG_TRAIN", 12, 91500),
    "atomic-independent": FieldSet("ATOMIC_INDEPENDENT", 12, 92400),
    "lowmag-independent": FieldSet("LOWMAG_INDEPENDENT", 12, 92500),
}


def _module(recipe: str) -> Any:
    kind = "atomic" if recipe.startswith("ATOMIC") else "lowmag"
    return importlib.import_module(f"tem_acq.sim.fields.{kind}")


def _recipe(name: str) -> Any:
    return getattr(_module(name), name)


def _maker(name: str) -> Any:
    module = _module(name)
    return module.atomic_field if name.startswith("ATOMIC") else module.lowmag_field


def folder(name: str) -> Path:
    """The cache folder of a set (its key covers the set and the recipe's every value)."""
    s = SETS[name]
    spec = {"set": s.__dict__, "recipe": _recipe(s.recipe).model_dump(mode="json"), "size": SIZE}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return CACHE / f"fields-{name}-{key}"


def _make_one(name: str, i: int) -> float:
    """Generate and cache field ``i`` of set ``name``; returns the seconds it took."""
    s = SETS[name]
    path = folder(name) / f"{i:05d}.npz"
    if path.is_file():
        return 0.0
    t0 = time.perf_counter()
    fld: Field = _maker(s.recipe)(_recipe(s.recipe), SIZE, np.random.default_rng([s.seed, i]))
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        intensity=fld.intensity.astype(np.float32),
        vacuum=fld.vacuum,
        particles=fld.particles,
        pixel_size_A=np.float64(fld.pixel_size_A),
        kind=np.str_(fld.kind),
        settings=np.str_(json.dumps(fld.settings, default=str)),
    )
    tmp.replace(path)  # a field is cached whole or not at all
    return time.perf_counter() - t0


def generate(name: str, jobs: int = 1) -> None:
    """Generate the missing fields of a set (``jobs`` processes), printing progress."""
    folder(name).mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(SETS[name].n) if not (folder(name) / f"{i:05d}.npz").is_file()]
    t0 = time.perf_counter()
    times: list[float] = []
    print(f"[{name}] {len(todo)} of {SETS[name].n} fields to make in {folder(name)}", flush=True)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for k, dt in enumerate(pool.map(_make_one, [name] * len(todo), todo), 1):
            times.append(dt)
            if k % 10 == 0 or k == len(todo):
                print(
                    f"[{name}] {k}/{len(todo)} fields, median {np.median(times):.1f} s/field, "
                    f"{time.perf_counter() - t0:.0f} s",
                    flush=True,
                )


def load(name: str) -> list[Field]:
    """Every field of a set (generating what is missing first, in this process)."""
    generate(name)
    out = []
    for i in range(SETS[name].n):
        with np.load(folder(name) / f"{i:05d}.npz") as z:
            out.append(
                Field(
                    intensity=z["intensity"],
                    pixel_size_A=float(z["pixel_size_A"]),
                    vacuum=z["vacuum"],
                    particles=z["particles"],
                    kind=str(z["kind"]),
                    settings=json.loads(str(z["settings"])),
                )
            )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", choices=[*SETS, "all"], default="all")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    for name in SETS if args.set == "all" else [args.set]:
        generate(name, args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
