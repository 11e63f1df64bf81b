"""Picture for the README: the real OneView frames of one field, raw and denoised.

``python benchmarks/oneview_figure.py --model default --out docs/oneview-val.png``

Two short exposures of the same field (Katsuno et al.'s public sample data, Gatan OneView,
about 4.6 e-/px each) side by side, raw and denoised, on one colour scale in electrons per
pixel, with the difference of the two denoised frames: anything the model invented in one
frame and not the other would show there. The numbers (PSNR between the two frames, raw and
denoised; structure in neither input) come from ``tem-acq evaluate --frame-pair``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tifffile

from tem_acq import load_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "katsuno-oneview"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--field", default="val", choices=("train", "val"))
    parser.add_argument("--out", type=Path, default=Path("docs/oneview-val.png"))
    parser.add_argument("--counts-per-electron", type=float, default=44.0)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cpe = args.counts_per_electron
    raw = [tifffile.imread(DATA / f"{args.field}-000{i}.tif").astype(np.float32) for i in (1, 2)]
    model = load_model(args.model, device="cpu")
    den = [model.denoise(r, counts_per_electron=cpe) for r in raw]
    electrons = [r / cpe for r in raw]
    lo, hi = np.percentile(np.concatenate([d.ravel() for d in den]), [0.5, 99.5])
    fig, axes = plt.subplots(1, 5, figsize=(20, 4.6), constrained_layout=True)
    panels = [
        (electrons[0], "raw frame 1 (~4.6 e-/px)"),
        (electrons[1], "raw frame 2, same field"),
        (den[0], f"{args.model}: frame 1"),
        (den[1], f"{args.model}: frame 2"),
    ]
    for ax, (image, title) in zip(axes[:4], panels, strict=True):
        shown = ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(title)
        ax.set_axis_off()
    fig.colorbar(shown, ax=axes[:4], shrink=0.8, label="electrons per pixel")
    diff = den[0] - den[1]
    lim = float(np.percentile(np.abs(diff), 99.5))
    d = axes[4].imshow(diff, cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[4].set_title("denoised 1 - denoised 2")
    axes[4].set_axis_off()
    fig.colorbar(d, ax=axes[4], shrink=0.8, label="e-/px")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=60)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
