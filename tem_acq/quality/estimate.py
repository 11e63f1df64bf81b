"""The denoising error on the user's own frames, without ground truth, from two exposures.

Two exposures ``a`` and ``b`` of one static field carry independent noise, so for any image
``f(a)`` computed from ``a`` alone

    E |f(a) - b|^2 = MSE(f(a), E[b]) + var(b),

and ``var(b)`` can itself be measured from the pair: ``|a - b|^2`` holds the noise of both.
Subtracting gives the mean squared error of ``f(a)`` against the noise-free image, in
electrons^2 per pixel^2, for the raw frame, a Gaussian filter and any denoiser alike.

What keeps the estimate unbiased:

- ``b`` is registered to ``a`` without smoothing its noise: ``b`` is only rolled by whole
  pixels, and the sub-pixel rest is applied to ``f(a)`` (a Fourier shift, which keeps every
  image's energy: it moves an error, it does not shrink it);
- ``b`` is scaled by the dose ratio, so a change of beam current between the frames is not
  counted as error;
- the borders that the shift wrapped are cropped;
- both directions (``f(a)`` against ``b`` and ``f(b)`` against ``a``) are averaged.

Intervals come from a bootstrap over 32-pixel tiles, the same draws for every row, so the gain
of a denoiser over the best Gaussian has an interval too. The best Gaussian's sigma is chosen by
this same estimate, so the baseline needs no ground truth either.

When the estimate cannot be trusted (the frames could not be registered, the field moved or
changed between them, the dose differs, saturation, too few pixels) it says why instead of
giving a number: :attr:`PairEstimate.trusted` is false and :attr:`PairEstimate.rows` is empty.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from tem_acq import metrics as M
from tem_acq.errors import ConfigError
from tem_acq.quality.results import Estimate, Gain, PairEstimate
from tem_acq.registration import Registration, register

#: Side of the tiles the bootstrap resamples (pixels): larger than the reach of a detector's
#: noise correlation, small enough that a 512-pixel frame gives over 200 tiles.
TILE_PX = 32
#: Fewest whole tiles an estimate is made from.
MIN_TILES = 16
#: A larger shift between the frames means the field moved: not one static field.
MAX_DRIFT_PX = 16.0
#: Largest relative dose difference between the two frames that is corrected by scaling.
MAX_DOSE_MISMATCH = 0.2
#: Smoothings (pixels) of the correlation tried when registering the frames.
REGISTRATION_SMOOTHING_PX = (0.0, 0.5, 1.0, 2.0, 4.0)
#: How many sigmas of noise a shift must improve the fit by to be preferred to no shift.
SHIFT_EVIDENCE_SIGMAS = 3.0
#: Smoothing (pixels) of the first frame when choosing among the candidate shifts.
SELECTION_SIGMA_PX = 1.5
#: Extra border cropped beyond the shift (the Fourier shift's ringing near wrapped edges).
MARGIN_PX = 8
#: Bootstrap draws.
N_BOOT = 1000
#: Largest share of pixels at the saturation level.
MAX_SATURATED = 1e-4
#: Tiles whose frame difference exceeds the noise this many robust sigmas show a change.
CHANGE_SIGMAS = 6.0
#: How much more a tile's mean difference may spread than white noise predicts (the noise of
#: an integrating detector is correlated over a few pixels: about 2.5 for the OneView model).
NOISE_CORRELATION = 3.0
#: Largest share of tiles that may show a change (they are left out; more: not trusted).
MAX_CHANGED_TILES = 0.05

Outputs = Mapping[str, tuple[np.ndarray, np.ndarray]]
Denoise = Callable[[np.ndarray], np.ndarray]


def estimate_pair(
    a_e: np.ndarray,
    b_e: np.ndarray,
    outputs: Outputs | None = None,
    denoisers: Mapping[str, Denoise] | None = None,
    *,
    saturation_e: float | None = None,
    gaussian: bool = True,
    seed: int = 0,
    tile_px: int = TILE_PX,
    n_boot: int = N_BOOT,
    max_drift_px: float = MAX_DRIFT_PX,
) -> PairEstimate:
    """Estimate, without ground truth, the error of images made from two frames of one field.

    Parameters
    ----------
    a_e, b_e
        Two exposures of one static field in electrons per pixel (2-D, same shape).
    outputs
        Images already made from the frames, by name: ``{"model": (f(a), f(b))}`` in electrons
        (the live pipeline's denoised frames, for instance).
    denoisers
        Callables from a 2-D electron image to its denoised image, by name; each is called on
        ``a`` and on ``b``.
    saturation_e
        The camera's saturation level in electrons (for example 65535 / counts per electron):
        more than :data:`MAX_SATURATED` of the pixels there makes the estimate untrusted.
    gaussian
        Include the best Gaussian filter (its sigma chosen by this estimate) and the gains over it.
    seed
        Seed of the bootstrap.
    tile_px
        Side of the bootstrap's tiles.
    n_boot
        Bootstrap draws.
    max_drift_px
        A larger shift between the frames makes the estimate untrusted (the field moved).

    Returns
    -------
    PairEstimate
        Rows ``"raw"``, ``"gaussian"`` and one per output and denoiser, or, when the frames do
        not allow an estimate, ``trusted=False`` and the reasons.

    Raises
    ------
    ConfigError
        If the frames are not two 2-D images of one shape, or an output's shape differs.
    """
    a, b = _checked_pair(a_e, b_e)
    problems = _frame_problems(a, b, saturation_e)
    if problems:
        return PairEstimate(trusted=False, problems=tuple(problems))
    images = _images(a, b, outputs, denoisers)
    guide = next(iter(images.values()), None)
    geometry = _Geometry.measure(a, b, tile_px, max_drift_px, guide)
    problems = geometry.problems(max_drift_px, MIN_TILES)
    if problems:
        return PairEstimate(trusted=False, problems=tuple(problems), shift_px=geometry.shift)
    comparison = _Comparison(a, b, geometry)
    keep, notes, problems = comparison.unchanged_tiles()
    if problems:
        return PairEstimate(trusted=False, problems=tuple(problems), shift_px=geometry.shift)
    comparison.keep(keep)
    sigma, filtered = _best_gaussian(comparison, a, b)
    stats = {"raw": comparison.raw_stat()}
    if gaussian:
        stats["gaussian"] = comparison.stat(*filtered)
    stats.update({name: comparison.stat(*pair) for name, pair in images.items()})
    peak = _peak(filtered[0], geometry)
    return _result(comparison, stats, peak, sigma if gaussian else None, notes, seed, n_boot)


def saturation_electrons(dtype: np.dtype[Any], counts_per_electron: float) -> float | None:
    """The saturation level in electrons of frames of ``dtype`` (integer: its maximum count).

    The ``saturation_e`` to give :func:`estimate_pair` for raw camera frames; floating-point
    frames have no known saturation (``None``).
    """
    if np.dtype(dtype).kind not in "iu":
        return None
    return float(np.iinfo(dtype).max) / counts_per_electron


def estimate_frames(
    frames_e: np.ndarray,
    outputs: Mapping[str, np.ndarray] | None = None,
    denoisers: Mapping[str, Denoise] | None = None,
    **options: object,
) -> list[PairEstimate]:
    """:func:`estimate_pair` on the consecutive pairs (0, 1), (2, 3), ... of a stack.

    The pairs do not overlap, so their noise is independent and :func:`summarize` may combine
    them. ``outputs`` maps a name to the stack of images made from each frame (same shape as
    ``frames_e``); ``options`` are those of :func:`estimate_pair`.
    """
    frames = np.asarray(frames_e)
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ConfigError(f"need a stack of at least 2 frames (n, y, x), got shape {frames.shape}")
    for name, stack in (outputs or {}).items():
        if np.shape(stack) != frames.shape:
            raise ConfigError(f"output {name!r} has shape {np.shape(stack)}, frames {frames.shape}")
    return [
        estimate_pair(
            frames[i],
            frames[i + 1],
            {name: (stack[i], stack[i + 1]) for name, stack in (outputs or {}).items()},
            denoisers,
            **options,  # type: ignore[arg-type]
        )
        for i in range(0, frames.shape[0] - 1, 2)
    ]


def summarize(estimates: Sequence[PairEstimate]) -> PairEstimate:
    """One estimate over many pairs of frames: their mean error, with intervals from their draws.

    Only trusted pairs count; the others are counted, with their reasons, in ``notes`` (or in
    ``problems`` when no pair can be trusted). The pairs' bootstrap draws are averaged draw by
    draw (their noise is independent), so the interval narrows as pairs are added.
    """
    good = [e for e in estimates if e.trusted]
    skipped = _skipped_lines(estimates)
    if not good:
        return PairEstimate(
            trusted=False, problems=tuple(skipped or ["no pairs of frames"]), pairs=0
        )
    names = [n for n in good[0].rows if all(n in e.rows for e in good)]
    draws = {n: np.mean([e.draws[n] for e in good], axis=0) for n in names}
    points = {n: float(np.mean([e.rows[n].mse for e in good])) for n in names}
    systematic = {n: float(np.mean([e.systematic.get(n, 0.0) for e in good])) for n in names}
    peak = float(np.median([e.peak_e for e in good]))
    sigmas = [e.rows["gaussian"].sigma_px for e in good if "gaussian" in e.rows]
    sigma = float(np.median([s for s in sigmas if s is not None])) if sigmas else None
    rows, gains = _rows_and_gains(points, draws, systematic, peak, sigma)
    return PairEstimate(
        trusted=True,
        problems=(),
        notes=tuple(skipped),
        shift_px=(
            float(np.mean([e.shift_px[0] for e in good])),
            float(np.mean([e.shift_px[1] for e in good])),
        ),
        dose_e_per_px=float(np.mean([e.dose_e_per_px for e in good])),
        noise_var_e2=float(np.mean([e.noise_var_e2 for e in good])),
        pixels=sum(e.pixels for e in good),
        peak_e=peak,
        rows=rows,
        gains=gains,
        pairs=len(good),
        draws=draws,
        systematic=systematic,
    )


def _skipped_lines(estimates: Sequence[PairEstimate]) -> list[str]:
    """``"k of n pairs skipped: reason"`` for each distinct reason (its first words)."""
    bad = [e for e in estimates if not e.trusted]
    if not bad:
        return []
    reasons: dict[str, int] = {}
    for e in bad:
        key = e.problems[0] if e.problems else "not trusted"
        reasons[key] = reasons.get(key, 0) + 1
    first = ", ".join(f"{k} x {n}" if n > 1 else k for k, n in reasons.items())
    return [f"{len(bad)} of {len(estimates)} pairs skipped: {first}"]


# --- checks -----------------------------------------------------------------------------------


def _checked_pair(a_e: np.ndarray, b_e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a_e, dtype=np.float64)
    b = np.asarray(b_e, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ConfigError(
            f"the estimate needs two single frames of one shape, got {np.shape(a_e)} and "
            f"{np.shape(b_e)}"
        )
    return a, b


def _frame_problems(a: np.ndarray, b: np.ndarray, saturation_e: float | None) -> list[str]:
    """Why the frames themselves allow no estimate (non-finite values, saturation)."""
    problems = []
    for name, f in (("first", a), ("second", b)):
        bad = int(np.count_nonzero(~np.isfinite(f)))
        if bad:
            problems.append(f"the {name} frame holds {bad} NaN or infinite pixels")
        elif saturation_e is not None:
            share = float(np.mean(f >= saturation_e * (1 - 1e-6)))
            if share > MAX_SATURATED:
                problems.append(
                    f"{100 * share:.2g} % of the {name} frame's pixels are saturated (at "
                    f"{saturation_e:.4g} e-): lower the dose or the exposure"
                )
    if not problems and min(a.mean(), b.mean()) <= 0:
        problems.append("a frame holds no electrons (mean <= 0): is the beam on?")
    return problems


@dataclass(frozen=True)
class _Geometry:
    """How the second frame lies on the first, and the region both directions compare."""

    shift: tuple[float, float]
    whole: tuple[int, int]
    rest: tuple[float, float]
    crop: int
    tiles: tuple[int, int]
    tile_px: int

    @classmethod
    def measure(
        cls,
        a: np.ndarray,
        b: np.ndarray,
        tile_px: int,
        max_drift_px: float,
        guide: tuple[np.ndarray, np.ndarray] | None,
    ) -> _Geometry:
        """Register ``b`` to ``a`` (see :func:`_register`) and lay out the compared region."""
        reg = _register(a, b, max_drift_px, guide)
        whole = (round(reg.dy), round(reg.dx))
        crop = max(abs(whole[0]), abs(whole[1])) + MARGIN_PX
        tiles = ((a.shape[0] - 2 * crop) // tile_px, (a.shape[1] - 2 * crop) // tile_px)
        return cls(
            shift=reg.shift,
            whole=whole,
            rest=(reg.dy - whole[0], reg.dx - whole[1]),
            crop=crop,
            tiles=(max(tiles[0], 0), max(tiles[1], 0)),
            tile_px=tile_px,
        )

    def problems(self, max_drift_px: float, min_tiles: int) -> list[str]:
        """Why the two frames are not one static field that can be compared."""
        drift = math.hypot(*self.shift)
        if drift > max_drift_px:
            return [
                f"the field moved {drift:.1f} px between the frames (more than "
                f"{max_drift_px:g} px): not one static field"
            ]
        if self.tiles[0] * self.tiles[1] < min_tiles:
            return [
                f"too few pixels: {self.tiles[0] * self.tiles[1]} tiles of {self.tile_px} px "
                f"after cropping {self.crop} px borders (need {min_tiles}); use larger frames"
            ]
        return []

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of the compared region."""
        c, t = self.crop, self.tile_px
        return (c, c + self.tiles[0] * t, c, c + self.tiles[1] * t)

    def region(self, image: np.ndarray) -> np.ndarray:
        """The compared region of an image on the target's pixels."""
        y0, y1, x0, x1 = self.bounds
        return image[y0:y1, x0:x1]

    def tile_sums(self, image: np.ndarray) -> np.ndarray:
        """Sum of ``image``'s compared region over each tile, one value per tile."""
        t = self.tile_px
        r = self.region(image)
        return r.reshape(self.tiles[0], t, self.tiles[1], t).sum(axis=(1, 3)).ravel()


def _register(
    a: np.ndarray,
    b: np.ndarray,
    max_drift_px: float,
    guide: tuple[np.ndarray, np.ndarray] | None,
) -> Registration:
    """The shift of ``b`` on ``a`` that leaves the least difference between them.

    Candidates: the peaks within ``max_drift_px`` of the frames' correlation smoothed by each of
    :data:`REGISTRATION_SMOOTHING_PX` (at very low dose a noise peak among all shifts can
    outgrow the true one, among nearby shifts it rarely does), a clear peak anywhere (a field
    that moved further wins with it, and is then refused), and, when a denoiser's images of both
    frames are given as ``guide``, the peak of theirs (at a few electrons per pixel the raw
    frames hold too little of a fine lattice to find its shift).

    The winner leaves the least difference between the guide's image of ``a`` (without a guide:
    ``a`` smoothed by :data:`SELECTION_SIGMA_PX`), moved, and the raw ``b``. Choosing by the raw
    frames' difference would pick the shift where their noise happens to match best, making the
    noise look smaller than it is; a denoised or smoothed image carries little noise to match.
    Smoothing only finds the shift: the images compared are never smoothed.
    """
    candidates = [
        register(a, b, smooth_sigma_px=s, upsample=100, max_shift_px=max_drift_px)
        for s in REGISTRATION_SMOOTHING_PX
    ]
    anywhere = register(a, b, smooth_sigma_px=2.0)
    if math.hypot(*anywhere.shift) > max_drift_px and anywhere.reliable:
        candidates.append(anywhere)
    if guide is not None:
        candidates.append(
            register(*guide, smooth_sigma_px=0.0, upsample=100, max_shift_px=max_drift_px)
        )
    crop = math.ceil(max(max(abs(c.dy), abs(c.dx)) for c in candidates)) + 1
    if 2 * crop >= min(a.shape):
        return candidates[0]
    inner = (slice(crop, a.shape[0] - crop), slice(crop, a.shape[1] - crop))
    source = M.gaussian_filter(a, SELECTION_SIGMA_PX) if guide is None else guide[0]
    target = b[inner]

    def difference(c: Registration) -> float:
        return float(np.mean((_moved(source, c.shift)[inner] - target) ** 2))

    best = min(candidates, key=difference)
    still = Registration(0.0, 0.0, 0.0)
    # a static field is the common case: a shift must fit clearly better than none
    noise_var = 0.5 * float(np.mean((a[inner] - target) ** 2))
    change = float(np.mean((_moved(source, best.shift)[inner] - source[inner]) ** 2))
    margin = SHIFT_EVIDENCE_SIGMAS * 2 * math.sqrt(noise_var * change / target.size)
    return best if difference(still) - difference(best) > margin else still


class _Comparison:
    """Both directions of one pair: each source's images against the other frame, registered.

    Direction ``ab`` compares images of ``a``, moved by the sub-pixel rest of the shift, with
    ``b`` rolled by the whole pixels and scaled by the dose ratio; ``ba`` the reverse.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, geometry: _Geometry) -> None:
        self.geometry = geometry
        g = geometry
        ratio = float(a.mean() / b.mean())
        self.targets = (
            np.roll(b, (-g.whole[0], -g.whole[1]), axis=(0, 1)) * ratio,
            np.roll(a, g.whole, axis=(0, 1)) / ratio,
        )
        self.rests = (g.rest, (-g.rest[0], -g.rest[1]))
        # the share of the frame difference's energy that is the target's noise: between the
        # two frames having equal noise and noise proportional to the dose (Poisson)
        weights = []
        for q in (ratio, 1.0 / ratio):
            equal, poisson = q * q / (1 + q * q), q / (1 + q)
            weights.append((0.5 * (equal + poisson), 0.5 * abs(equal - poisson)))
        self.weights = weights
        difference_a = self._difference(a, 0)
        self.diff = [g.tile_sums(difference_a**2), self._residual_tiles(b, 1)]
        self.mean_diff = g.tile_sums(difference_a) / g.tile_px**2
        # the frames' difference energy per pixel, per tile, both directions averaged
        self.diff_per_px = 0.5 * (self.diff[0] + self.diff[1]) / g.tile_px**2
        self.mean_tiles = 0.5 * (g.tile_sums(a) + g.tile_sums(b)) / g.tile_px**2
        self.kept = np.ones(g.tiles[0] * g.tiles[1], dtype=bool)

    def _difference(self, image: np.ndarray, direction: int) -> np.ndarray:
        """``image`` moved onto the other frame, minus that frame (scaled)."""
        return _moved(image, self.rests[direction]) - self.targets[direction]

    def _residual_tiles(self, image: np.ndarray, direction: int) -> np.ndarray:
        return self.geometry.tile_sums(self._difference(image, direction) ** 2)

    def unchanged_tiles(self) -> tuple[np.ndarray, list[str], list[str]]:
        """The tiles where the field did not change, and the notes or problems about the rest.

        A tile changed where the frames' registered difference has a mean, or an energy, far
        beyond the other tiles' (robust sigmas): something darkened, appeared or moved there.
        """
        n = self.geometry.tile_px**2
        # the spread a tile's mean difference has from noise alone, allowing for noise correlated
        # over a few pixels (as a scintillator's is): bounds the robust spread when many tiles
        # changed and inflate it
        noise = NOISE_CORRELATION * np.sqrt(self.diff_per_px / n)
        changed = _outliers(self.mean_diff, floor=noise) | self._excess_energy()
        share = float(changed.mean())
        if share > MAX_CHANGED_TILES:
            return (
                changed,
                [],
                [
                    f"the field changed between the frames in {int(changed.sum())} of "
                    f"{changed.size} tiles ({100 * share:.0f} %): not one static field"
                ],
            )
        notes = (
            [f"{int(changed.sum())} tiles where the field changed were left out"]
            if changed.any()
            else []
        )
        return ~changed, notes, []

    def _excess_energy(self) -> np.ndarray:
        """Tiles whose difference energy exceeds what their brightness predicts for noise."""
        q = self.diff_per_px
        design = np.stack([np.ones_like(self.mean_tiles), self.mean_tiles], axis=1)
        coef, *_ = np.linalg.lstsq(design, q, rcond=None)
        residual = q - design @ coef
        return _outliers(residual, one_sided=True) & (residual > 0.05 * float(np.median(q)))

    def keep(self, kept: np.ndarray) -> None:
        """Compare only these tiles from now on."""
        self.kept = kept

    def stat(self, image_a: np.ndarray, image_b: np.ndarray) -> tuple[np.ndarray, float]:
        """Per-tile estimated squared error of ``(f(a), f(b))`` (summed), and its systematic."""
        res = [
            self._residual_tiles(np.asarray(img, np.float64), d)
            for d, img in enumerate((image_a, image_b))
        ]
        return self._combine(res)

    def raw_stat(self) -> tuple[np.ndarray, float]:
        """:meth:`stat` of the frames themselves."""
        return self._combine(self.diff)

    def _combine(self, residuals: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
        per_tile = np.zeros_like(residuals[0])
        systematic = 0.0
        for res, diff, (w, half) in zip(residuals, self.diff, self.weights, strict=True):
            per_tile += 0.5 * (res - w * diff)
            systematic += 0.5 * half * float(diff[self.kept].sum())
        n = self.geometry.tile_px**2 * int(self.kept.sum())
        return per_tile[self.kept] / self.geometry.tile_px**2, systematic / n

    @property
    def noise_var(self) -> float:
        """The target frames' noise variance, averaged over both directions."""
        n = self.geometry.tile_px**2 * int(self.kept.sum())
        return float(
            sum(w * d[self.kept].sum() for d, (w, _) in zip(self.diff, self.weights, strict=True))
            / (2 * n)
        )

    @property
    def pixels(self) -> int:
        """Pixels compared in each direction."""
        return self.geometry.tile_px**2 * int(self.kept.sum())


def _moved(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """``image`` moved by ``shift`` (a Fourier shift) all but its Nyquist row and column.

    Below Nyquist a Fourier shift keeps the energy of noise (and of any error) exactly; at
    Nyquist a sub-pixel shift of a sampled image loses part of it (a half-pixel shift all),
    which would make the noise look smaller. That row and column hold noise and sampling
    artefacts (a checkerboard), not the specimen, so they stay where they are.
    """
    if shift[0] == 0 and shift[1] == 0:
        return np.asarray(image, dtype=np.float64)
    return np.fft.irfft2(np.fft.rfft2(image) * _phase(image.shape, shift), s=image.shape)


@lru_cache(maxsize=8)
def _phase(shape: tuple[int, ...], shift: tuple[float, float]) -> np.ndarray:
    """The rfft2 phase ramp of :func:`_moved` (one per frame shape and shift: reused)."""
    h, w = shape
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    phase = np.exp(-2j * np.pi * (ky * shift[0] + kx * shift[1]))
    if h % 2 == 0:
        phase[h // 2, :] = 1
    if w % 2 == 0:
        phase[:, -1] = 1
    return phase


def _outliers(
    values: np.ndarray, *, one_sided: bool = False, floor: np.ndarray | None = None
) -> np.ndarray:
    """Values more than :data:`CHANGE_SIGMAS` robust sigmas from the median.

    The sigma is the MAD's, or, where smaller, ``floor`` (per value): a MAD is inflated when many
    values are outliers.
    """
    centred = values - np.median(values)
    spread = np.full(values.shape, 1.4826 * float(np.median(np.abs(centred))))
    if floor is not None:
        spread = np.minimum(spread, floor)
    if not np.all(spread > 0):
        return np.zeros(values.shape, dtype=bool)
    z = centred / spread
    return np.asarray(z > CHANGE_SIGMAS if one_sided else np.abs(z) > CHANGE_SIGMAS)


def _images(
    a: np.ndarray,
    b: np.ndarray,
    outputs: Outputs | None,
    denoisers: Mapping[str, Denoise] | None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every image to judge, by name: the outputs given, then each denoiser's on both frames."""
    images: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (fa, fb) in (outputs or {}).items():
        if np.shape(fa) != a.shape or np.shape(fb) != a.shape:
            raise ConfigError(
                f"output {name!r} has shapes {np.shape(fa)} and {np.shape(fb)}; the frames are "
                f"{a.shape}"
            )
        images[name] = (np.asarray(fa), np.asarray(fb))
    for name, denoise in (denoisers or {}).items():
        images[name] = (
            np.asarray(denoise(a.astype(np.float32)), np.float64),
            np.asarray(denoise(b.astype(np.float32)), np.float64),
        )
    if {"raw", "gaussian"} & set(images):
        raise ConfigError("'raw' and 'gaussian' name the estimate's own rows: rename the output")
    return images


def _best_gaussian(
    comparison: _Comparison, a: np.ndarray, b: np.ndarray
) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """The Gaussian sigma with the lowest estimated error, and the two filtered frames.

    Every third sigma of :data:`tem_acq.metrics.ORACLE_SIGMAS` first (the error is unimodal in
    sigma: stop 1 dB past the best), then the two neighbours on each side of the best.
    """
    sigmas = M.ORACLE_SIGMAS
    tried: dict[int, tuple[float, tuple[np.ndarray, np.ndarray]]] = {}

    def error(i: int) -> float:
        if i not in tried:
            pair = (M.gaussian_filter(a, sigmas[i]), M.gaussian_filter(b, sigmas[i]))
            tried[i] = (float(comparison.stat(*pair)[0].mean()), pair)
        return tried[i][0]

    best = 0
    for i in range(0, len(sigmas), 3):
        if error(i) < error(best):
            best = i
        elif error(i) > 1.26 * error(best) > 0:
            break
    for i in range(max(best - 2, 0), min(best + 3, len(sigmas))):
        if error(i) < error(best):
            best = i
    return sigmas[best], tried[best][1]


def _peak(filtered_a: np.ndarray, geometry: _Geometry) -> float:
    """The robust range of the best-Gaussian image: the one peak every row's PSNR uses."""
    lo, hi = np.percentile(geometry.region(filtered_a), [0.1, 99.9])
    return max(float(hi - lo), 1e-12)


def _result(
    comparison: _Comparison,
    stats: Mapping[str, tuple[np.ndarray, float]],
    peak: float,
    sigma: float | None,
    notes: list[str],
    seed: int,
    n_boot: int,
) -> PairEstimate:
    tiles = len(next(iter(stats.values()))[0])
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(tiles, np.full(tiles, 1.0 / tiles), size=n_boot).astype(np.float64)
    draws = {name: counts @ per_tile / tiles for name, (per_tile, _) in stats.items()}
    points = {name: float(per_tile.mean()) for name, (per_tile, _) in stats.items()}
    systematic = {name: sys for name, (_, sys) in stats.items()}
    rows, gains = _rows_and_gains(points, draws, systematic, peak, sigma)
    return PairEstimate(
        trusted=True,
        problems=(),
        notes=tuple(notes),
        shift_px=comparison.geometry.shift,
        dose_e_per_px=float(comparison.mean_tiles[comparison.kept].mean()),
        noise_var_e2=comparison.noise_var,
        pixels=comparison.pixels,
        peak_e=peak,
        rows=rows,
        gains=gains,
        draws=draws,
        systematic=systematic,
        region_px=comparison.geometry.bounds,
    )


def _rows_and_gains(
    points: Mapping[str, float],
    draws: Mapping[str, np.ndarray],
    systematic: Mapping[str, float],
    peak: float,
    sigma: float | None,
) -> tuple[dict[str, Estimate], dict[str, Gain]]:
    rows = {}
    for name, mse in points.items():
        lo, hi = np.percentile(draws[name], [2.5, 97.5])
        ci = (float(lo) - systematic[name], float(hi) + systematic[name])
        rows[name] = Estimate(
            mse=mse,
            mse_ci=ci,
            psnr_db=_psnr(peak, mse),
            ci=(_psnr(peak, ci[1]), _psnr(peak, ci[0])),
            sigma_px=sigma if name == "gaussian" else None,
        )
    gains = {}
    if "gaussian" in points:
        for name in points:
            if name not in ("raw", "gaussian"):
                gains[name] = _gain(points, draws, name)
    return rows, gains


def gain(estimate: PairEstimate, name: str, over: str = "gaussian") -> Gain:
    """The dB by which row ``name`` of an estimate beats row ``over``, with its interval.

    Both rows' bootstrap draws share the resampling, so the interval is the paired one (noise
    common to both rows cancels). An untrusted estimate has no gain: ``Gain(None, (None, None))``.
    """
    if not estimate.trusted:
        return Gain(db=None, ci=(None, None))
    points = {n: row.mse for n, row in estimate.rows.items()}
    return _gain(points, estimate.draws, name, over)


def _gain(
    points: Mapping[str, float],
    draws: Mapping[str, np.ndarray],
    name: str,
    over: str = "gaussian",
) -> Gain:
    """How ``name`` compares with ``over``: dB and the difference of errors, paired intervals.

    The dB interval is given only where both errors' draws stay above 0 (else ``(None,
    None)``); the difference's interval always.
    """
    g, m = draws[over], draws[name]
    diff_lo, diff_hi = np.percentile(m - g, [2.5, 97.5])
    point = (
        10 * math.log10(points[over] / points[name])
        if points[over] > 0 and points[name] > 0
        else None
    )
    ok = (g > 0) & (m > 0)
    ci: tuple[float | None, float | None] = (None, None)
    if ok.mean() >= 0.975:
        lo, hi = np.percentile(10 * np.log10(g[ok] / m[ok]), [2.5, 97.5])
        ci = (float(lo), float(hi))
    return Gain(
        db=point,
        ci=ci,
        mse_diff=points[name] - points[over],
        mse_diff_ci=(float(diff_lo), float(diff_hi)),
    )


def _psnr(peak: float, mse: float) -> float | None:
    return 10 * math.log10(peak * peak / mse) if mse > 0 else None
