"""The evaluation figures.

- Pairs (:func:`figure`): raw | oracle Gaussian | model | long exposure | difference.
- Two real frames of one field (:func:`frame_pair_figure`): raw | model | raw - model for each.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tem_acq import metrics as M
from tem_acq.denoise.normalization import counts_to_electrons
from tem_acq.errors import TemAcqError
from tem_acq.evaluate.loop import dose_groups
from tem_acq.evaluate.runner import load_denoiser
from tem_acq.evaluate.targets import TARGET_DOSE
from tem_acq.pairs import PairArrays, aligned_long_electrons


def figure(
    model: Any,
    pairs: PairArrays,
    path: str | os.PathLike[str],
    *,
    index: int | None = None,
    device: str = "auto",
) -> Path:
    """Save raw | oracle Gaussian | model | long exposure | difference, one shared scale.

    Parameters
    ----------
    model
        Package name/folder or a loaded denoiser.
    pairs
        The pairs; ``index`` picks the frame (default: the first one nearest 5 e-/px).
    path
        PNG file to write.
    index
        Which pair.
    device
        Device for the model.

    Returns
    -------
    The file written. The first four panels share one grey scale (0.5-99.5 percentiles of the
    reference); the difference panel (model - reference) has its own symmetric scale.
    """
    try:
        import matplotlib
    except ImportError as exc:
        raise TemAcqError(
            "the figure needs matplotlib; install it (pip install matplotlib)"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if pairs.high is None:
        raise TemAcqError("the figure needs pairs with long exposures")
    den = load_denoiser(model, device)
    i = _figure_index(pairs) if index is None else index
    if not 0 <= i < len(pairs):
        raise TemAcqError(f"pair index {i} out of range (0-{len(pairs) - 1})")
    panels, ref = _panels(den, pairs, i)
    fig = _draw(plt, panels, ref, reference_name="truth" if pairs.truth is not None else "long")
    out = Path(path)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def _panels(den: Any, pairs: PairArrays, i: int) -> tuple[list[tuple[np.ndarray, str]], np.ndarray]:
    """The four images of pair ``i`` (dose-normalised, with their titles) and the reference.

    Raw frame, oracle Gaussian and model output; the long exposure registered onto the
    short frame; the reference is the ground truth when the pairs have it, else the long
    exposure.
    """
    cpe, dose = float(pairs.counts_per_electron[i]), float(pairs.low_dose[i])
    raw = np.asarray(counts_to_electrons(pairs.low[i], cpe), np.float64) / dose
    mod = np.asarray(den.denoise(pairs.low[i], counts_per_electron=cpe), np.float64) / dose
    sh = (0.0, 0.0) if pairs.shift is None else (float(pairs.shift[i, 0]), float(pairs.shift[i, 1]))
    long_n = aligned_long_electrons(pairs, i, sh, "fourier").astype(np.float64) / float(
        pairs.high_dose[i]
    )
    ref = np.asarray(pairs.truth[i], np.float64) / dose if pairs.truth is not None else long_n
    gauss, sigma = M.oracle_gaussian(raw, ref)
    panels = [
        (raw, f"raw {dose:.3g} e-/px"),
        (gauss, f"oracle Gaussian (sigma {sigma:.1f} px)"),
        (mod, f"model {den.card.name}"),
        (long_n, f"long exposure {float(pairs.high_dose[i]):.4g} e-/px"),
    ]
    return panels, ref


def _draw(
    plt: Any, panels: list[tuple[np.ndarray, str]], ref: np.ndarray, *, reference_name: str
) -> Any:
    """The figure: the panels on the reference's grey scale, then the model's difference."""
    vmin, vmax = np.percentile(ref, [0.5, 99.5])
    diff = panels[2][0] - ref
    dmax = float(np.percentile(np.abs(diff), 99.5)) or 1.0
    fig, axes = plt.subplots(1, 5, figsize=(20, 4.4), constrained_layout=True)
    im: Any = None
    for ax, (img, title) in zip(axes[:4], panels, strict=True):
        im = ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.colorbar(im, ax=list(axes[:4]), shrink=0.8, label="electrons / dose (vacuum = 1)")
    imd = axes[4].imshow(diff, cmap="RdBu_r", vmin=-dmax, vmax=dmax, interpolation="nearest")
    axes[4].set_title(f"model - {reference_name}", fontsize=10)
    axes[4].axis("off")
    fig.colorbar(imd, ax=axes[4], shrink=0.8)
    return fig


def _figure_index(pairs: PairArrays) -> int:
    """The frame nearest 5 e-/px with the most structure (largest relative reference std).

    So the figure shows edges rather than bare film.
    """
    labels = dose_groups(pairs.low_dose)
    target = labels[np.argmin(np.abs(np.log(labels / TARGET_DOSE)))]
    cands = np.flatnonzero(labels == target)
    refs = pairs.truth if pairs.truth is not None else pairs.high
    assert refs is not None
    spread = [float(np.std(refs[i]) / max(float(np.mean(refs[i])), 1e-12)) for i in cands]
    return int(cands[int(np.argmax(spread))])


def frame_pair_figure(
    raw: tuple[np.ndarray, np.ndarray],
    denoised: tuple[np.ndarray, np.ndarray],
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> Path:
    """Save raw | model | raw - model for both frames of a frame pair (electrons per pixel).

    The raw and model panels share one grey scale (0.5-99.5 percentiles of the two model
    outputs); the differences (what the model removed: noise only, if it invents nothing) share
    one symmetric scale.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outs = [np.asarray(d, np.float64) for d in denoised]
    raws = [np.asarray(r, np.float64) for r in raw]
    vmin, vmax = np.percentile(np.concatenate([o.ravel() for o in outs]), [0.5, 99.5])
    diffs = [r - o for r, o in zip(raws, outs, strict=True)]
    dmax = float(np.percentile(np.abs(np.concatenate([d.ravel() for d in diffs])), 99.5)) or 1.0
    fig, axes = plt.subplots(2, 3, figsize=(12, 8.4), constrained_layout=True)
    for row, (r, o, d) in enumerate(zip(raws, outs, diffs, strict=True)):
        name = "ab"[row]
        for ax, img, label in ((axes[row, 0], r, "raw"), (axes[row, 1], o, "model")):
            im = ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_title(f"frame {name}: {label} ({img.mean():.3g} e-/px)", fontsize=10)
            ax.axis("off")
        imd = axes[row, 2].imshow(d, cmap="RdBu_r", vmin=-dmax, vmax=dmax, interpolation="nearest")
        axes[row, 2].set_title(f"frame {name}: raw - model", fontsize=10)
        axes[row, 2].axis("off")
    fig.colorbar(im, ax=list(axes[:, :2].ravel()), shrink=0.6, label="electrons per pixel")
    fig.colorbar(imd, ax=list(axes[:, 2]), shrink=0.6, label="electrons per pixel")
    if title:
        fig.suptitle(title, fontsize=11)
    out = Path(path)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
