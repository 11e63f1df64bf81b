"""Write ``metrics_before.npz``: what the hand-written metrics and registration returned.

Run at commit 21c97fd, the last one before ``tem_acq.metrics`` and ``tem_acq.registration``
moved onto scipy.ndimage and scikit-image, so that ``tests/test_metrics_equivalence.py`` can show
that the library-based functions give the same numbers on the same fixed inputs (and the
README's quality tables stay valid). Rerunning it now would only record the new code's numbers.

    python tests/data/metrics_reference.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tem_acq import metrics, registration

OUT = Path(__file__).with_name("metrics_before.npz")


def inputs() -> dict[str, np.ndarray]:
    """Fixed inputs: a simulated field (truth, vacuum), its 5 e-/px frame, a smoothed 'denoised'."""
    from tem_acq.sim import SimulationConfig, TEMSimulator

    sim = TEMSimulator(SimulationConfig.model_validate({"size": 128, "seed": 4}))
    centre = (2626.0, -1312.0)  # a field with particles (11 %) and vacuum (48 %)
    truth = sim.expected_electrons(exposure_s=0.002, stage_xy_px=centre) / 5.0
    rng = np.random.default_rng(7)
    raw = rng.poisson(truth * 5.0) / 5.0
    denoised = 0.7 * truth + 0.3 * metrics.gaussian_filter(raw, 2.0)
    x0, y0 = sim.field_origin(centre)
    vacuum = sim.vacuum_mask(int(x0), int(y0), 128, 128)
    shifted = np.roll(truth, (3, -2), axis=(0, 1))
    moving = rng.poisson(registration.shift_image(truth, 1.3, -2.6) * 20.0) / 20.0
    texture = 1.0 + 0.5 * metrics.gaussian_filter(rng.normal(size=(128, 128)), 2.0)
    texture_moved = registration.shift_image(texture, -0.7, 2.35) + rng.normal(0, 0.05, (128, 128))
    return {"truth": truth, "raw": raw, "denoised": denoised, "vacuum": vacuum,
            "shifted": shifted, "moving": moving, "texture": texture,
            "texture_moved": texture_moved}  # fmt: skip


def outputs(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every metric and registration result on the fixed inputs."""
    truth, raw, den, vac = x["truth"], x["raw"], x["denoised"], x["vacuum"]
    out: dict[str, np.ndarray] = {}
    for s in (0.3, 0.7, 1.5, 3.0, 8.0, 24.0):
        out[f"gauss_{s}"] = metrics.gaussian_filter(raw, s)
    out["gauss_stack"] = metrics.gaussian_filter(np.stack([raw, den]), 1.5)
    out["ssim"] = np.array(metrics.ssim(den, truth))
    out["ssim_raw"] = np.array(metrics.ssim(raw, truth))
    edges = metrics.edge_mask(truth)
    out["edge_mask"] = edges
    out["ssim_masked"] = np.array(metrics.ssim(den, truth, mask=edges))
    filtered, sigma = metrics.oracle_gaussian(raw, truth)
    out["oracle_gaussian"], out["oracle_sigma"] = filtered, np.array(sigma)
    out["oracle_wiener"] = metrics.oracle_wiener(raw, truth)
    for r in (1, 3, 9):
        out[f"erode_{r}"] = metrics.erode(vac, r)
    check = metrics.vacuum_structure(den, raw, truth, vac)
    out["vacuum"] = np.array([np.nan, np.nan] if check is None else [check.ratio, check.max_z])
    pair = metrics.frame_pair_check(raw, x["moving"], den, den)
    out["frame_pair"] = np.array([pair.psnr_raw_db, pair.psnr_denoised_db,
                                  pair.structure_ratio, pair.outlier_fraction])  # fmt: skip
    for name, options in REGISTRATIONS.items():
        kwargs = dict(options)
        reference = x[kwargs.pop("reference", "truth")]
        reg = registration.register(reference, x[kwargs.pop("moving")], **kwargs)
        out[f"register_{name}"] = np.array([reg.dy, reg.dx, reg.significance])
    return out


#: The registrations recorded: options as the project's callers use them.
REGISTRATIONS: dict[str, dict] = {
    "default": {"moving": "moving"},
    "integer": {"moving": "shifted"},
    "whitened": {"moving": "moving", "whitening": 1.0, "smooth_sigma_px": 0.0},
    "near": {"moving": "moving", "smooth_sigma_px": 2.0, "upsample": 100, "max_shift_px": 4.0},
    "band": {"moving": "moving", "max_frequency": 0.25},
    "texture": {"reference": "texture", "moving": "texture_moved"},
    "texture_near": {
        "reference": "texture",
        "moving": "texture_moved",
        "max_shift_px": 3.0,
        "upsample": 100,
    },
    "texture_whitened": {"reference": "texture", "moving": "texture_moved", "whitening": 0.5},
}


def _small(value: np.ndarray) -> np.ndarray:
    return value.astype(np.float32) if value.dtype == np.float64 and value.size > 8 else value


if __name__ == "__main__":
    fixed = inputs()
    # images kept as float32: the comparison's tolerance is far above float32's rounding
    saved = {f"in_{k}": v for k, v in fixed.items()} | outputs(fixed)
    np.savez_compressed(OUT, **{k: _small(v) for k, v in saved.items()})
    print(f"wrote {OUT}")
