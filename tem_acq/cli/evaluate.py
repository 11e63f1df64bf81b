"""``tem-acq evaluate``: measure a denoiser on pairs, two real frames or a recorded run.

``--pairs P``: against raw and Gaussian with ground truth or long exposures; ``--frame-pair A
B`` and ``--store RUN``: the ground-truth-free estimate (:mod:`tem_acq.quality`) on frames of
the user's own specimen.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from tem_acq.cli.command import COUNTS_PER_ELECTRON, DEVICE, JSON, MODEL, PAIRS, TTA, Command

if TYPE_CHECKING:
    import numpy as np

    from tem_acq.store import AcquisitionStore


def arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``evaluate`` arguments."""
    MODEL.add(parser, required=True, default=None, help="package name or folder")
    src = parser.add_mutually_exclusive_group(required=True)
    PAIRS.add(src, help="pairs store(s)")
    src.add_argument(
        "--frame-pair",
        nargs=2,
        metavar=("A", "B"),
        help="two frame files (TIFF/.npy/MRC) of one field",
    )
    src.add_argument(
        "--store",
        metavar="RUN",
        help="an acquisition store: the ground-truth-free estimate over its consecutive frames",
    )
    COUNTS_PER_ELECTRON.add(
        parser, help="conversion factor for --frame-pair (default: from the file)"
    )
    parser.add_argument(
        "--blocks",
        type=int,
        default=None,
        help="--store: summarise per time block, this many of equal duration (default 8)",
    )
    parser.add_argument(
        "--block-s",
        type=float,
        default=None,
        help="--store: summarise per time block of this many seconds instead",
    )
    parser.add_argument(
        "--reference",
        choices=["auto", "truth", "long"],
        default="auto",
        help="compare with ground truth or the long exposure (default: truth "
        "when the pairs have it)",
    )
    JSON.add(parser, help="print JSON instead of tables")
    parser.add_argument(
        "--figure",
        metavar="PNG",
        help="save raw | Gaussian | model | long | difference of one frame",
    )
    parser.add_argument(
        "--no-flips",
        action="store_true",
        help="skip the flip/rotation check (8 denoisings per frame)",
    )
    parser.add_argument(
        "--write-card",
        action="store_true",
        help="write the measured quality table into the model's card.json",
    )
    TTA.add(
        parser,
        help="evaluate the model averaged over the 8 flips/rotations of each frame (8x cost)",
    )
    DEVICE.add(parser)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print; bad inputs raise TemAcqError (exit 2)."""
    from tem_acq.denoise import load_model
    from tem_acq.errors import TemAcqError

    if not args.store and (args.blocks is not None or args.block_s is not None):
        raise TemAcqError("--blocks and --block-s apply to --store only")
    if args.frame_pair or args.store:
        if args.write_card:
            raise TemAcqError("--write-card needs --pairs (with long exposures)")
        if args.store and args.figure:
            raise TemAcqError(
                "--figure applies to --pairs and --frame-pair; a store's estimate has no figure"
            )
        if args.figure:
            _check_figure_path(args)
        if args.reference != "auto":
            raise TemAcqError("--reference applies to --pairs only (these frames have none)")
        return _frame_pair(args) if args.frame_pair else _store(args)
    if args.counts_per_electron is not None:
        raise TemAcqError("--counts-per-electron applies to --frame-pair only (pairs record it)")
    if args.figure:
        _check_figure_path(args)
    from tem_acq.evaluate import (
        evaluate_groups,
        figure,
        quality_rows,
        render_table,
        write_quality,
    )
    from tem_acq.pairs import from_pairs_store
    from tem_acq.store import store_kind

    for path in args.pairs:
        if Path(path).is_dir() and store_kind(path) == "acquisition":
            raise TemAcqError(f"{path} is an acquisition store; evaluate it with --store {path}")
    pairs = from_pairs_store(args.pairs)
    den = load_model(args.model, args.device, tta=args.tta)
    reports = evaluate_groups(
        den, pairs, reference=args.reference, flips_at_dose=None if args.no_flips else 5.0
    )
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        print("\n\n".join(render_table(r) for r in reports))
    if args.figure:
        path = figure(den, pairs, args.figure)
        if not args.json:
            print(f"figure: {path}")
    if args.write_card:
        write_quality(den.source, [row for r in reports for row in quality_rows(r)])
        if not args.json:
            print(f"quality table written to {den.source / 'card.json'}")
    return 0


def _check_figure_path(args: argparse.Namespace) -> None:
    """Refuse, before evaluating, a ``--figure`` that cannot be written or overlaps an input.

    Its extension must be an image format matplotlib writes; an earlier figure is replaced,
    a folder never; it may not be one of the pairs stores or the model package, or inside one.
    """
    from tem_acq.denoise.package import package_folder
    from tem_acq.errors import TemAcqError
    from tem_acq.outputs import claim_output

    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise TemAcqError(
            "the figure needs matplotlib; install it (pip install matplotlib)"
        ) from None
    path = Path(args.figure)
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lower().lstrip(".") not in formats:
        raise TemAcqError(
            f"--figure {path}: the format comes from the extension, one of "
            f"{', '.join('.' + f for f in sorted(formats))} (e.g. eval.png)"
        )
    inputs = [*(args.pairs or []), *(args.frame_pair or []), package_folder(args.model)]
    claim_output(path, overwrite=True, kind="figure", parent_must_exist=True, inputs=inputs)


def _frame_pair(args: argparse.Namespace) -> int:
    from tem_acq.denoise import load_model
    from tem_acq.denoise.io import read_frames
    from tem_acq.errors import TemAcqError
    from tem_acq.evaluate import evaluate_frame_pair

    a, b = (read_frames(p) for p in args.frame_pair)
    cpe = args.counts_per_electron or a.counts_per_electron or b.counts_per_electron
    if cpe is None:
        raise TemAcqError(
            "the frame files do not give the camera's counts per electron; pass "
            "--counts-per-electron (44 for a Gatan OneView)"
        )
    frames = []
    for ff, path in zip((a, b), args.frame_pair, strict=True):
        data = ff.data
        if data.ndim == 3 and data.shape[0] == 1:
            data = data[0]
        if data.ndim != 2:
            raise TemAcqError(f"{path} holds {data.shape} frames; pass single-frame files")
        frames.append(data)
    den = load_model(args.model, args.device)
    report = evaluate_frame_pair(
        den, frames[0], frames[1], float(cpe), tta=args.tta, figure=args.figure
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
    if args.figure and not args.json:
        print(f"figure: {args.figure}")
    return 0


def _store(args: argparse.Namespace) -> int:
    """``--store RUN``: the estimate over the consecutive frames of a recorded acquisition."""
    from tem_acq.denoise import load_model
    from tem_acq.errors import TemAcqError
    from tem_acq.evaluate.estimates import DEFAULT_BLOCKS, check_blocks, estimate_sequence
    from tem_acq.store import open_store, store_kind

    if args.counts_per_electron is not None:
        raise TemAcqError("--counts-per-electron applies to --frame-pair only (a store records it)")
    blocks = DEFAULT_BLOCKS if args.blocks is None else args.blocks
    check_blocks(blocks, args.block_s)
    if store_kind(args.store) == "pairs":
        raise TemAcqError(f"{args.store} is a pairs store; evaluate it with --pairs {args.store}")
    store = open_store(args.store)
    if store.n_frames < 2:
        raise TemAcqError(
            f"{args.store} holds {store.n_frames} frame{'' if store.n_frames == 1 else 's'}; "
            "the estimate needs two or more consecutive frames of a static field"
        )
    times, stage = _frame_times_and_stage(store)
    den = load_model(args.model, args.device)
    result = estimate_sequence(
        den,
        store.raw,
        float(store.metadata.camera.counts_per_electron),
        times_s=times,
        stage_um=stage,
        tta=args.tta,
        blocks=blocks,
        block_s=args.block_s,
    )
    head = {"store": str(store.path), "model": den.card.name, "package_hash": den.package_hash}
    if args.json:
        print(json.dumps({**head, **result.to_dict()}, indent=2))
    else:
        print(f"model {den.card.name} on {store.path}: " + result.render())
    return 0


def _frame_times_and_stage(store: AcquisitionStore) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's time (s; NaN where unknown) and stage x, y (um; NaN where unknown).

    Times come from the frames' elapsed milliseconds when every row has them, else from their
    timestamps; a frame without its row (a damaged log) has neither.
    """
    import numpy as np

    table = store.frame_table()
    n = store.n_frames
    times, stage = np.full(n, np.nan), np.full((n, 2), np.nan)
    index = table["index"]
    elapsed = table["elapsed_ms"]
    if len(index) and np.all(np.isfinite(elapsed)):
        times[index] = elapsed / 1e3
    elif len(index):
        stamps = table["timestamp"]
        times[index] = (stamps - stamps[0]) / np.timedelta64(1, "us") / 1e6
    stage[index, 0], stage[index, 1] = table["stage_x_um"], table["stage_y_um"]
    return times, stage


COMMAND = Command(
    "evaluate",
    help="measure a denoiser's quality on pairs (or on two real frames of one field)",
    description=(
        "Per dose: PSNR, SSIM and edge-masked PSNR of the raw frame, an oracle Gaussian and "
        "the model against ground truth (simulated pairs) or the long exposure; mean shift, "
        "structure invented in vacuum, flip/rotation consistency and ms per frame. With "
        "--frame-pair: how alike two frames of one field denoise and whether anything "
        "appears that is in neither input."
    ),
    arguments=arguments,
    run=run,
    rank=50,
)
