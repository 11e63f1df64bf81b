"""Train and evaluate the shipped model packages ``models/default`` and ``models/fast``.

    python benchmarks/train_shipped_models.py --model fast        # data, train, finetune, evaluate
    python benchmarks/train_shipped_models.py --model default --warm-start OLD_PACKAGE
    python benchmarks/train_shipped_models.py --model fast --stage evaluate

Data (reproducible, no microscope): pairs from the simulated microscope
(:func:`tem_acq.pairs.simulate_pairs`, the same physics as the simulated camera that paired
collection records into pairs stores). Training fields come from simulator seeds
``TRAIN_SEED + k``, test fields from ``TEST_SEED + k``: the specimen is a function of the
seed, so no training field is ever seen at evaluation.

- Training: both specimen kinds (nanoparticles at low magnification, atomic-resolution Au)
  x both detectors (counting, OneView-like integrating); 256x256 fields; 3 short frames per
  field at doses drawn log-uniformly in 1-20 e-/px; one long exposure of 1000 e-/px (summed
  from four 250 e-/px frames, as a pairs store with ``long_mode="sum"``), taken at a stage
  offset of up to 2 px that is recorded and registered away (Fourier shift); 30 % of the
  fields chosen to contain vacuum.
- Test: per specimen and detector, 4 fields of 512x512 (half with 5-60 % vacuum; low-mag
  fields chosen to show particles), short frames at 1, 5 and 20 e-/px, long exposure
  1000 e-/px.

Training uses 2 CPU threads and bfloat16 autocast where the CPU has it; the wall time of each
stage is printed. Evaluation writes the quality table into the package's card and
``benchmarks/results/shipped-<model>.{json,md}``.

- Fine-tuning (``--stage finetune``): the training set plus 80 atomic-resolution fields per
  detector chosen to show Au nanocrystals over at least 30 % of their area
  (:func:`crystal_pairs`; 1680 pairs, 560 fields), from the trained package, at 0.4x the
  peak learning rate.

How the shipped packages were made (2 CPU cores, partly shared with other work):

- ``default`` (the compact ResNet18 U-Net of ``CONFIGS``): ``--stage train --warm-start OLD``
  with ``OLD`` the paper-architecture package of commit dae60ce (``git show
  dae60ce:models/default/<file>`` for its three files; 3000 steps of the earlier recipe, hash
  ``sha256:86f57c1b...``), whose stem, first three encoder stages, last four decoder blocks
  and head it copies; the 16000-step schedule was stopped at its step-4000 checkpoint and
  continued with ``--resume --steps 9000`` (cosine re-planned): 9000 steps, 30 min. Then
  ``--stage finetune`` twice (8000 steps each, 17 and 16 min: the second run, from the first
  one's package, took the best validation PSNR from 24.28 to 24.35 dB), then
  ``--stage evaluate``.
- ``fast``: ``--stage train`` (4000 steps, 17 min), then ``--stage finetune`` (8000 steps,
  10 min), then ``--stage evaluate``.

- Transfer (``--stage transfer``, issue 14): from the package above, on the live simulator's
  sets (the base set and the nanocrystal fields) plus the field sets of
  ``benchmarks/shipped_fields.py`` (160 multislice atomic-resolution and 240
  low-magnification fields of 256x256, ``ATOMIC_TRAIN``/``LOWMAG_TRAIN``), each recorded with a
  camera drawn from ``DETECTORS_TRAIN`` (``field_pairs("train")``: 3 short frames at
  0.5-50 e-/px, a 1000 e-/px long exposure): 2880 pairs, 960 fields, at half the peak rate;
  the card becomes detector-aware. ``--stage fields --jobs 2`` makes the fields first (about
  9 min), ``--stage evaluate`` adds the in-distribution (``*-test``) and independent
  (``*-independent`` recipes, ``DETECTORS_INDEPENDENT`` cameras) field sets to the card and
  results, ``--stage summary`` writes the README's tables. Both shipped packages ran
  ``--stage transfer``, stopped at its step-2000 checkpoint and continued with ``--resume
  --steps 3000`` (``default``; 2 CPU cores, about 0.4 s per step) and ``--steps 3000``
  (``fast``). Their cards' description, dose range (0.5-50 e-/px) and data source were then
  set to ``TRANSFER``'s, and their pixel-size range to the recipes' 0.1-50 A/px (the data's
  extremes were 0.104-49.3; the runs' configuration still named the earlier 1-20 e-/px: card
  metadata only, the package hash covers configuration and weights).

``models/*/training.json`` records each package's last stage (config, history, the package it
started from, wall time); ``training-stage<N>.json`` the stages before.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tem_acq.pairs import PairArrays, concatenate, simulate_pairs
from tem_acq.train import TrainConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shipped_fields  # the field sets: benchmarks/shipped_fields.py

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TRAIN_SEED = 100
TEST_SEED = 9000
SPECIMENS = ("nanoparticles", "atomic")
DETECTORS = ("counting", "integrating")
#: Training fields per (specimen, detector): atomic fields are costlier to simulate and denser
#: in structure, so fewer of them carry as much signal.
TRAIN_FIELDS = {"nanoparticles": 120, "atomic": 80}

#: Settings both shipped models share: 128-pixel crops, 8 per step, validation on 10 % of the
#: fields (split by field), 2 CPU threads, fp16 weights on disk.
_SHARED: dict[str, Any] = {
    "crop": 128,
    "batch_size": 8,
    "warmup_steps": 100,
    "val_fraction": 0.1,
    "val_every": 500,
    "seed": 0,
    "num_threads": 2,
    "weights_dtype": "float16",
    "dose_range_e_per_px": (1.0, 20.0),
}
CONFIGS = {
    # The paper's U-Net family, compacted to fit a git repository (7 MB in fp16 instead of 28):
    # the ResNet18 encoder's first three stages (depth 4, stride 16: its fourth stage held 8.4
    # of its 11.2 M parameters) through timm, which builds only the stages used, and the paper's
    # decoder widths of the finest four levels. Adam + a cosine schedule at a higher peak rate
    # than the paper's 1e-4 so that it converges within the CPU budget (2 cores, bf16).
    "default": TrainConfig(
        **_SHARED,
        encoder="tu-resnet18",
        depth=4,
        max_steps=6000,
        lr=5e-4,
        checkpoint_every=250,
        description=(
            "The paper's U-Net (smp Unet, ResNet18 encoder; compact: its first three stages, "
            "depth 4) trained on simulated low-dose TEM pairs (nanoparticles and "
            "atomic-resolution Au; counting and integrating detectors; 1-20 e-/px short "
            "frames, 1000 e-/px long exposures); dose-aware normalisation."
        ),
    ),
    "fast": TrainConfig(
        **_SHARED,
        fast=True,
        max_steps=4000,
        lr=1e-3,
        checkpoint_every=500,
        description=(
            "Fast U-Net (MobileNetV3-small minimal encoder, depth 4, narrow decoder) trained on "
            "simulated low-dose TEM pairs (nanoparticles and atomic-resolution Au; counting and "
            "integrating detectors; 1-20 e-/px short frames, 1000 e-/px long exposures)."
        ),
    ),
}


#: The fine-tuning stage: from the trained package, on the base set plus the nanocrystal
#: fields of :func:`crystal_pairs`, at a lower peak rate.
FINETUNE = {
    name: cfg.model_copy(update={"lr": cfg.lr * 0.4, "max_steps": 8000, "warmup_steps": 100})
    for name, cfg in CONFIGS.items()
}


#: Everything that defines the training set (the cache key).
TRAIN_DATA = {
    "seed": TRAIN_SEED,
    "fields": TRAIN_FIELDS,
    "size": 256,
    "short_doses": [1.0, 20.0],
    "shorts_per_field": 3,
    "long_dose": 1000.0,
    "max_shift_px": 2.0,
    "vacuum": [0.05, 0.9, 0.3],
    "version": 1,
}
#: The fine-tuning stage's extra fields (see :func:`crystal_pairs`), per detector.
CRYSTAL_DATA = {
    "seed": TRAIN_SEED + 20,
    "fields": 80,
    "size": 256,
    "short_doses": [1.0, 20.0],
    "shorts_per_field": 3,
    "long_dose": 1000.0,
    "max_shift_px": 2.0,
    "min_particle_fraction": 0.3,
    "version": 1,
}
CACHE = Path(os.environ.get("TEM_ACQ_CACHE", str(Path.home() / ".cache" / "tem-acq")))
_ARRAYS = (
    "low",
    "high",
    "counts_per_electron",
    "low_dose",
    "high_dose",
    "field",
    "shift",
    "truth",
    "vacuum",
    "pixel_size_A",
)


def _cached(name: str, spec: dict[str, Any], build: Any) -> PairArrays:
    """``build()``'s pairs, cached on disk under a key made from ``spec``."""
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    folder = CACHE / f"shipped-{name}-{key}"
    if (folder / "meta.json").is_file():
        meta = json.loads((folder / "meta.json").read_text())
        arrays = {n: _load_array(folder, n) for n in _ARRAYS}
        return PairArrays(
            **arrays, detector=meta["detector"], specimen=meta["specimen"], source=meta["source"]
        )
    pairs: PairArrays = build()
    folder.mkdir(parents=True, exist_ok=True)
    for n in _ARRAYS:
        np.save(folder / f"{n}.npy", getattr(pairs, n), allow_pickle=False)
    (folder / "meta.json").write_text(
        json.dumps(
            {
                "detector": pairs.detector,
                "specimen": pairs.specimen,
                "source": pairs.source,
                "data": spec,
            }
        )
    )
    return pairs


def _load_array(folder: Path, name: str) -> np.ndarray:
    """One cached array; caches written before the angstrom API hold pixel sizes in nm."""
    path = folder / f"{name}.npy"
    if name == "pixel_size_A" and not path.is_file():
        return np.load(folder / "pixel_size_nm.npy") * 10.0
    return np.load(path)


def training_pairs() -> PairArrays:
    """The training set (see the module docstring), cached on disk after the first run."""

    def build() -> PairArrays:
        parts = []
        for i, specimen in enumerate(SPECIMENS):
            for j, detector in enumerate(DETECTORS):
                parts.append(
                    simulate_pairs(
                        specimen,
                        detector,
                        n_fields=TRAIN_FIELDS[specimen],
                        short_doses=(1.0, 20.0),
                        random_doses=3,
                        long_dose=1000.0,
                        size=256,
                        seed=TRAIN_SEED + 10 * i + j,
                        max_shift_px=2.0,
                        min_vacuum_fraction=0.05,
                        max_vacuum_fraction=0.9,
                        vacuum_field_share=0.3,
                    )
                )
        return concatenate(parts)

    return _cached("train", TRAIN_DATA, build)


def crystal_pairs() -> PairArrays:
    """Atomic-resolution fields chosen to show nanocrystals (the fine-tuning stage's extra data).

    In the base set most atomic pixels are amorphous film, a random texture whose best
    estimate is close to linear (see the oracle Wiener column of the evaluation); the lattice
    of the Au nanocrystals is what a network can learn beyond that, so these fields have
    particles over at least 30 % of their area.
    """

    def build() -> PairArrays:
        return concatenate(
            [
                simulate_pairs(
                    "atomic",
                    detector,
                    n_fields=CRYSTAL_DATA["fields"],
                    short_doses=(1.0, 20.0),
                    random_doses=3,
                    long_dose=1000.0,
                    size=256,
                    seed=CRYSTAL_DATA["seed"] + j,
                    max_shift_px=2.0,
                    min_particle_fraction=CRYSTAL_DATA["min_particle_fraction"],
                )
                for j, detector in enumerate(DETECTORS)
            ]
        )

    return _cached("crystals", CRYSTAL_DATA, build)


def test_pairs(specimen: str, detector: str, size: int = 512, n_fields: int = 4) -> PairArrays:
    """The test set of one specimen kind and detector (fields never used in training)."""
    i, j = SPECIMENS.index(specimen), DETECTORS.index(detector)
    return simulate_pairs(
        specimen,
        detector,
        n_fields=n_fields,
        short_doses=(1.0, 5.0, 20.0),
        long_dose=1000.0,
        size=size,
        seed=TEST_SEED + 10 * i + j,
        min_vacuum_fraction=0.05,
        max_vacuum_fraction=0.6,
        vacuum_field_share=0.5,
        # low magnification: fields that show particles (bare film and holes alone have no
        # edges to measure); atomic fields always have contrast
        min_contrast=0.3 if specimen == "nanoparticles" else 0.0,
    )


def warm_start_compact(paper_package: Path, out: Path) -> Path:
    """A compact default (see ``CONFIGS``) holding a trained paper-model's weights.

    The paper's model (smp ``resnet18``, depth 5, decoder 256-128-64-32-16) and the compact one
    (timm ``resnet18`` to its third stage, depth 4, decoder 128-64-32-16) share the encoder's
    stem and first three stages, and the decoder's last four blocks have the same shapes
    (their inputs: 256+128, 128+64, 64+64, 32 channels): those weights are copied, the
    encoder's fourth stage and the decoder's first block are dropped. Fine-tuning then teaches
    the first decoder block its new input (the third stage's features).
    """
    import torch

    from tem_acq.denoise import build_model, load_package, save_package

    src = load_package(paper_package)
    if src.card.architecture_kwargs.get("encoder_depth", 5) != 5 or src.card.encoder != "resnet18":
        raise SystemExit(f"{paper_package} is not the paper's resnet18 depth-5 U-Net")
    model = build_model({**CONFIGS["default"].model_kwargs, "in_channels": 1, "classes": 1})
    target = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, value in src.model.state_dict().items():
        if key.startswith("encoder.layer4.") or key.startswith("decoder.blocks.0."):
            continue
        if key.startswith("encoder."):
            new = "encoder.model." + key[len("encoder.") :]
        elif key.startswith("decoder.blocks."):
            block, rest = key[len("decoder.blocks.") :].split(".", 1)
            new = f"decoder.blocks.{int(block) - 1}.{rest}"
        else:
            new = key
        mapped[new] = value
    missing = sorted(set(target) - set(mapped))
    wrong = [k for k in target if k in mapped and mapped[k].shape != target[k].shape]
    if missing or wrong:
        raise SystemExit(f"warm start: missing {missing[:5]}, shape mismatch {wrong[:5]}")
    model.load_state_dict({k: mapped[k] for k in target})
    save_package(
        model,
        out,
        name="default-warm-start",
        weights_dtype="float32",
        overwrite=True,
        trained=True,
        detectors=src.card.detectors,
        dose_range_e_per_px=src.card.dose_range_e_per_px,
        training_data=src.card.training_data,
        normalization=src.card.normalization,
        description=f"warm start from {src.package_hash} ({paper_package})",
    )
    return out


def _progress(name: str, t0: float) -> Any:
    def report(rec: dict[str, float]) -> None:
        print(
            f"[{name}] step {rec['step']:.0f} lr {rec['lr']:.2e} loss {rec['loss']:.4f} "
            f"val loss {rec['val_loss']:.4f} val PSNR {rec['val_psnr_db']:.2f} dB "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )

    return report


def _run(
    name: str,
    what: str,
    pairs: PairArrays,
    cfg: TrainConfig,
    init: Path | None,
    resume: bool,
    checkpoint: str,
) -> None:
    """Train ``models/<name>`` on ``pairs`` with progress lines (``what``: the stage)."""
    t0 = time.perf_counter()
    print(f"[{name}] {what}: {len(pairs)} pairs, {len(np.unique(pairs.field))} fields", flush=True)
    result = train(
        pairs,
        cfg,
        ROOT / "models" / name,
        name=name,
        overwrite=True,
        init=init,
        resume=resume,
        progress=False,
        on_validation=_progress(name, t0),
        checkpoint_dir=CACHE / checkpoint,
    )
    print(
        f"[{name}] {what}: {result.steps} steps in {result.wall_s:.0f} s; best val PSNR "
        f"{result.best_val_psnr_db:.2f} dB at step {result.best_step}",
        flush=True,
    )


def stage_train(
    name: str, steps: int | None, resume: bool = False, warm_start: Path | None = None
) -> None:
    """Train ``models/<name>`` on the base set (from scratch, or from a warm start)."""
    cfg = CONFIGS[name]
    if steps is not None:
        cfg = cfg.model_copy(update={"max_steps": steps})
    init = None
    if warm_start is not None:
        init = warm_start_compact(warm_start, CACHE / f"shipped-{name}-warm-start")
        print(f"[{name}] warm start from {warm_start}", flush=True)
    _run(name, "training", training_pairs(), cfg, init, resume, f"shipped-{name}.ckpt")


def stage_finetune(name: str, steps: int | None, resume: bool = False) -> None:
    """Fine-tune ``models/<name>`` on the base set plus the nanocrystal fields.

    The package it starts from is copied to the cache first (``shipped-<name>-stage1``), so
    that an interrupted run can resume from the same start; its ``training.json`` is kept in
    the package as ``training-stage<N>.json`` (with the records of the stages before it).
    """
    cfg, start = _from_shipped(name, FINETUNE[name], steps, resume, "stage1")
    pairs = concatenate([training_pairs(), crystal_pairs()])
    _run(name, "fine-tuning", pairs, cfg, start, resume, f"shipped-{name}-finetune.ckpt")
    _keep_stage_records(name, start)


#: The transfer stage (issue 14): from the shipped package, on the live simulator's sets plus
#: the multislice and low-magnification fields recorded with drawn cameras.
_TRANSFER_DATA = (
    "simulated low-dose TEM pairs: the live simulator's nanoparticles and atomic-resolution Au, "
    "plus multislice atomic-resolution fields (Au, Pt, Pd, Ag, CeO2 nanocrystals on amorphous "
    "carbon, 0.1-1 A/px, uncorrected and Cs-corrected) and low-magnification fields (spheres, "
    "rods, cubes, plates, octahedra, hollow shells, aggregates of metals and oxides on holey "
    "carbon, 5-50 A/px) recorded with counting and integrating cameras of drawn gain spread, "
    "light spread, read noise, offset and binning 1-8; 0.5-50 e-/px short frames, 1000 e-/px "
    "long exposures; detector-aware normalisation"
)
TRANSFER = {
    name: cfg.model_copy(
        update={
            "lr": cfg.lr * 0.5,
            "max_steps": 6000,
            "warmup_steps": 100,
            "dose_range_e_per_px": (0.5, 50.0),
            "description": cfg.description.split(" trained on ")[0]
            + " trained on "
            + _TRANSFER_DATA
            + ".",
        }
    )
    for name, cfg in CONFIGS.items()
}
#: Seeds of the cameras, doses and noise the field sets are recorded with.
FIELD_RECORDING_SEED = {"train": 1600, "test": 91600, "independent": 92600}


def field_pairs(split: str, kind: str | None = None) -> PairArrays:
    """The atomic and low-magnification field sets of ``split`` recorded with cameras.

    ``train`` draws cameras from ``DETECTORS_TRAIN`` and doses in 0.5-50 e-/px; ``test`` (the
    train recipes, other seeds) and ``independent`` (held-out recipes and cameras) record every
    field at 1, 5 and 20 e-/px with cameras of one ``kind``.
    """
    from tem_acq.pairs.fields import pairs_from_fields
    from tem_acq.sim.fields.detectors import DETECTORS_INDEPENDENT, DETECTORS_TRAIN

    cameras = DETECTORS_INDEPENDENT if split == "independent" else DETECTORS_TRAIN
    if kind is not None:
        cameras = cameras.model_copy(update={"kinds": (kind,)})
    fields = [f for s in ("atomic", "lowmag") for f in shipped_fields.load(f"{s}-{split}")]
    return pairs_from_fields(
        fields,
        cameras,
        seed=FIELD_RECORDING_SEED[split] + (0 if kind in (None, "counting") else 1),
        short_doses=None if split == "train" else (1.0, 5.0, 20.0),
        source=f"tem_acq.sim.fields sets atomic-{split} and lowmag-{split} "
        f"(benchmarks/shipped_fields.py), cameras "
        f"{'DETECTORS_INDEPENDENT' if split == 'independent' else 'DETECTORS_TRAIN'}",
    )


def stage_transfer(name: str, steps: int | None, resume: bool = False) -> None:
    """Retrain ``models/<name>`` from its shipped weights on the live simulator's sets plus
    the field sets (see ``TRANSFER``); the earlier stages' records are kept."""
    cfg, start = _from_shipped(name, TRANSFER[name], steps, resume, "before-transfer")
    pairs = concatenate([training_pairs(), crystal_pairs(), field_pairs("train")])
    _run(name, "transfer", pairs, cfg, start, resume, f"shipped-{name}-transfer.ckpt")
    _keep_stage_records(name, start)


def _from_shipped(
    name: str, cfg: TrainConfig, steps: int | None, resume: bool, label: str
) -> tuple[TrainConfig, Path]:
    """The stage's config (``steps`` overriding) and the copy of ``models/<name>`` it starts
    from (``shipped-<name>-<label>``, made afresh unless resuming, so a resume starts alike)."""
    if steps is not None:
        cfg = cfg.model_copy(update={"max_steps": steps})
    start = CACHE / f"shipped-{name}-{label}"
    if not resume:
        shutil.rmtree(start, ignore_errors=True)
        shutil.copytree(ROOT / "models" / name, start)
    return cfg, start


def _keep_stage_records(name: str, start: Path) -> None:
    """Copy the start package's stage records, and its own record as the next stage."""
    earlier = sorted(start.glob("training-stage*.json"))
    for record in earlier:
        shutil.copy2(record, ROOT / "models" / name / record.name)
    stage = ROOT / "models" / name / f"training-stage{len(earlier) + 1}.json"
    shutil.copy2(start / "training.json", stage)


#: Metrics recorded in the card for the model with test-time augmentation too (``_tta``).
TTA_METRICS = ("psnr_db", "ssim", "psnr_edge_db", "psnr_particles_db", "ssim_particles")


def stage_evaluate(name: str, device: str) -> None:
    """Evaluate ``models/<name>`` (as used live, and with ``tta``); write card and results."""
    from tem_acq.denoise import load_model
    from tem_acq.evaluate import evaluate_pairs, quality_rows, render_table, write_quality

    t0 = time.perf_counter()
    reports, tta_reports = [], []
    plain = load_model(ROOT / "models" / name, device)
    tta = load_model(ROOT / "models" / name, device, tta=True)
    for specimen in SPECIMENS:
        for detector in DETECTORS:
            pairs = test_pairs(specimen, detector)
            rep = evaluate_pairs(plain, pairs, flips_at_dose=5.0)
            reports.append(rep)
            print(render_table(rep), flush=True)
            rep = evaluate_pairs(tta, pairs, flips_at_dose=5.0, max_flip_frames=2)
            tta_reports.append(rep)
            print(render_table(rep), flush=True)
    sets = field_set_reports(plain)
    rows = [row for rep in reports for row in quality_rows(rep)]
    rows += [
        row.model_copy(update={"image_kind": f"{row.image_kind} ({split} fields)"})
        for split, reps in sets.items()
        for rep in reps
        for row in quality_rows(rep)
    ]
    rows += [
        row.model_copy(update={"metric": f"{row.metric}_tta"})
        for rep in tta_reports
        for row in quality_rows(rep)
        if row.metric in (*TTA_METRICS, "flip_max_db")
    ]
    write_quality(ROOT / "models" / name, rows)
    real = real_frame_checks(name, device)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"shipped-{name}.json").write_text(
        json.dumps(
            {
                "simulated": [rep.to_dict() for rep in reports],
                "simulated_tta": [rep.to_dict() for rep in tta_reports],
                "oneview": {k: v.to_dict() for k, v in real.items()},
                "fields": {k: [rep.to_dict() for rep in reps] for k, reps in sets.items()},
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    oneview = "\n\n".join(f"**{k}**\n\n```\n{v.render()}\n```" for k, v in real.items())
    (RESULTS / f"shipped-{name}.md").write_text(
        f"# Shipped model `{name}`: evaluation on unseen simulated fields\n\n"
        f"Generated by `python benchmarks/train_shipped_models.py --model {name} --stage "
        f"evaluate` ({time.perf_counter() - t0:.0f} s, {device}, 2 shared CPU cores: the "
        "ms/frame figures are from a loaded machine).\n\n"
        + "\n\n".join(render_table(rep, markdown=True) for rep in reports)
        + "\n\n## With test-time augmentation (`tta=True`: averaged over the 8 flips/rotations)"
        "\n\n"
        + "\n\n".join(render_table(rep, markdown=True) for rep in tta_reports)
        + "".join(
            f"\n\n## {split.capitalize()} fields (tem_acq.sim.fields)\n\n"
            + "\n\n".join(render_table(rep, markdown=True) for rep in reps)
            for split, reps in sets.items()
        )
        + "\n\n## Real Gatan OneView frames (two frames of one field each)\n\n"
        + (oneview or "shared/data/katsuno-oneview not found")
        + "\n",
        encoding="utf-8",
    )
    print(f"[{name}] evaluated in {time.perf_counter() - t0:.0f} s", flush=True)


def field_set_reports(model: Any) -> dict[str, list[Any]]:
    """The model on the in-distribution (``test``) and ``independent`` field sets, per
    specimen kind and detector (flip spread at 5 e-/px)."""
    from tem_acq.evaluate import evaluate_pairs, render_table

    out: dict[str, list[Any]] = {}
    for split in ("test", "independent"):
        out[split] = []
        for detector in DETECTORS:
            pairs = field_pairs(split, detector)
            for specimen in SPECIMENS:
                keep = np.flatnonzero(np.asarray(pairs.specimen) == specimen)
                rep = evaluate_pairs(model, pairs.subset(keep), flips_at_dose=5.0)
                print(f"[{split}] " + render_table(rep), flush=True)
                out[split].append(rep)
    return out


#: The README's quality tables are written between these markers by ``--stage summary``.
README_MARKERS = ("<!-- transfer-tables:start -->", "<!-- transfer-tables:end -->")
_SET_TITLES = {
    "simulated": "live simulator (the simulated camera's specimens; other seeds)",
    "test": "in-distribution fields (the training recipes and cameras; other seeds)",
    "independent": "independent fields (held-out materials, shapes, zone axes, optics, cameras)",
}


def _row(report: dict[str, Any], dose: float, metric: str) -> dict[str, Any]:
    for row in report["rows"]:
        if abs(row["dose"] - dose) < 1e-6 and row["metric"] == metric:
            return dict(row)
    return {}


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def transfer_tables() -> str:
    """The README's tables (5 e-/px; the atomic gain at 1, 5, 20) from both models' results."""
    results = {m: json.loads((RESULTS / f"shipped-{m}.json").read_text()) for m in CONFIGS}
    head = (
        "| specimen / detector | oracle Gaussian | 1000 e-/px long | **default** | fast | "
        "default - Gaussian (1 / 5 / 20 e-/px) | vacuum mean error raw / default % | "
        "vacuum structure Gaussian / default | flips dB |\n|---|---|---|---|---|---|---|---|---|"
    )
    out = []
    for key, title in _SET_TITLES.items():
        default = results["default"]["simulated" if key == "simulated" else "fields"]
        fast = results["fast"]["simulated" if key == "simulated" else "fields"]
        if key != "simulated":
            default, fast = default[key], fast[key]
        lines = [f"**{title}**", "", head]
        for rep, rep_fast in zip(default, fast, strict=True):
            lines.append(_table_line(rep, rep_fast))
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _table_line(rep: dict[str, Any], rep_fast: dict[str, Any]) -> str:
    psnr = _row(rep, 5.0, "psnr_db")
    gains = [
        (_row(rep, d, "psnr_db").get("model") or math.nan)
        - (_row(rep, d, "psnr_db").get("gaussian") or math.nan)
        for d in (1.0, 5.0, 20.0)
    ]
    vac = _row(rep, 5.0, "vacuum_mean_error_pct")
    struct = _row(rep, 5.0, "vacuum_structure_ratio")
    return (
        f"| {rep['specimen']} / {rep['detector']} | {_fmt(psnr.get('gaussian'))} | "
        f"{_fmt(psnr.get('long'))} | **{_fmt(psnr.get('model'))}** | "
        f"{_fmt(_row(rep_fast, 5.0, 'psnr_db').get('model'))} | "
        + " / ".join(f"{g:+.1f}" for g in gains)
        + f" | {_fmt(vac.get('raw'), '.2f')} / {_fmt(vac.get('model'), '.2f')} | "
        f"{_fmt(struct.get('gaussian'), '.2f')} / {_fmt(struct.get('model'), '.2f')} | "
        f"{_fmt(_row(rep, 5.0, 'flip_max_db').get('model'), '.2f')} |"
    )


def stage_summary() -> None:
    """Write the tables to ``benchmarks/results/transfer.md`` and between the README markers."""
    tables = transfer_tables()
    (RESULTS / "transfer.md").write_text(
        "# Shipped models on the three test sets (5 e-/px)\n\nGenerated by `python "
        "benchmarks/train_shipped_models.py --stage summary` from "
        "`benchmarks/results/shipped-*.json`.\n\n" + tables,
        encoding="utf-8",
    )
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    start, end = README_MARKERS
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        readme.write_text(f"{before}{start}\n{tables}{end}{after}", encoding="utf-8")
    print(tables)


def real_frame_checks(name: str, device: str) -> dict[str, Any]:
    """The frame-pair check on the four real OneView frames (two fields), when present."""
    from tem_acq.denoise.io import read_frames
    from tem_acq.evaluate import evaluate_frame_pair

    folder = ROOT.parent / "shared" / "data" / "katsuno-oneview"
    out: dict[str, Any] = {}
    if not folder.is_dir():
        return out
    for field in ("train", "val"):
        a = read_frames(folder / f"{field}-0001.tif")
        b = read_frames(folder / f"{field}-0002.tif")
        cpe = a.counts_per_electron or 44.0
        rep = evaluate_frame_pair(ROOT / "models" / name, a.data, b.data, cpe, device=device)
        out[f"{field}-0001/0002"] = rep
        print(f"[{name}] OneView {field}: {rep.render()}", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=[*CONFIGS, "both"], default="both")
    parser.add_argument(
        "--stage",
        choices=["all", "train", "finetune", "fields", "transfer", "evaluate", "summary"],
        default="all",
    )
    parser.add_argument("--jobs", type=int, default=1, help="processes for --stage fields")
    parser.add_argument("--steps", type=int, default=None, help="override max_steps")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the model's checkpoint (~/.cache/tem-acq/shipped-NAME.ckpt);"
        " with --steps, the cosine schedule is re-planned to the new total",
    )
    parser.add_argument(
        "--warm-start",
        type=Path,
        default=None,
        metavar="PAPER_PACKAGE",
        help="start the compact default from a trained paper-architecture "
        "package (resnet18, depth 5): see warm_start_compact",
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    names = list(CONFIGS) if args.model == "both" else [args.model]
    if args.warm_start is not None and names != ["default"]:
        parser.error("--warm-start builds the compact default: use it with --model default")
    if args.stage in ("all", "fields"):
        for name in shipped_fields.SETS:
            shipped_fields.generate(name, args.jobs)
    for name in names:
        if args.stage in ("all", "train"):
            stage_train(name, args.steps, args.resume, args.warm_start)
        if args.stage in ("all", "finetune"):
            finetune_only = args.stage == "finetune"
            stage_finetune(
                name, args.steps if finetune_only else None, args.resume and finetune_only
            )
        if args.stage in ("all", "transfer"):
            only = args.stage == "transfer"
            stage_transfer(name, args.steps if only else None, args.resume and only)
        if args.stage in ("all", "evaluate"):
            stage_evaluate(name, args.device)
    if args.stage in ("all", "summary"):
        stage_summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())
