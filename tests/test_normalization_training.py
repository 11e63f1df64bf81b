"""Training with the detector-aware rule: per-pair detector models in the loss and the card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tem_acq.denoise import load_package
from tem_acq.denoise.normalization import DoseNormalization, keep_input_mean
from tem_acq.detector import COUNTING, DEFAULT_MODELS, ONEVIEW
from tem_acq.errors import TemAcqError
from tem_acq.pairs import PairArrays, concatenate, simulate_pairs
from tem_acq.train import TrainConfig, prepare, train
from tem_acq.train.losses import delivered

OFFSET_COUNTS = -30.0  # -0.68 e-: not the OneView default (-12 counts)
TINY = {
    "fast": True,
    "crop": 32,
    "batch_size": 4,
    "max_steps": 20,
    "val_every": 10,
    "val_fraction": 0.34,
    "val_max_frames": 2,
    "num_threads": 2,
    "precision": "fp32",
}


@pytest.fixture(scope="module")
def integrating_pairs() -> PairArrays:
    return simulate_pairs(
        "nanoparticles",
        "integrating",
        n_fields=3,
        short_doses=(1.0, 5.0),
        size=64,
        seed=4,
        sim_options={"dark_offset": OFFSET_COUNTS},
    )


def test_simulated_pairs_record_a_non_default_detector(integrating_pairs: PairArrays) -> None:
    models = integrating_pairs.detector_models()
    assert models is not None and len(set(models)) == 1
    assert models[0].dark_offset_e == pytest.approx(OFFSET_COUNTS / 44.0)
    assert models[0] != ONEVIEW
    default = simulate_pairs("nanoparticles", "integrating", n_fields=1, size=64, seed=1)
    assert default.detector_model is None and default.detector_models() == [ONEVIEW] * len(default)
    joined = concatenate([integrating_pairs, default])
    assert joined.detector_models() == models + [ONEVIEW] * len(default)
    sub = joined.subset([0, len(joined) - 1])
    assert sub.detector_models() == [models[0], ONEVIEW]
    assert integrating_pairs.sha256() != default.sha256()
    with pytest.raises(TemAcqError, match="disagree"):
        PairArrays(**{**_fields(default), "detector_model": [COUNTING] * len(default)})
    with pytest.raises(TemAcqError, match="binning"):
        PairArrays(**{**_fields(default), "binning": 0})


def _fields(p: PairArrays) -> dict:
    return {
        "low": p.low,
        "high": p.high,
        "counts_per_electron": p.counts_per_electron,
        "low_dose": p.low_dose,
        "high_dose": p.high_dose,
        "field": p.field,
        "detector": p.detector,
    }


def test_the_loss_sees_each_pair_s_detector_shift(integrating_pairs: PairArrays) -> None:
    data = prepare(integrating_pairs, "supervised", "none", measure=False)
    assert data.detector is not None and data.binning is not None
    picks = np.array([0, 1, 2, 3])
    x = torch.from_numpy(data.inputs[picks]).unsqueeze(1)
    y = x * 0.5 + 0.5
    norm = DoseNormalization(detector_aware=True)
    mixed = [data.camera(0), (COUNTING, 1), data.camera(2), (ONEVIEW, 2)]
    out = delivered(y, x, norm, data.scale[picks], mixed)
    for k, (det, b) in enumerate(mixed):  # the same as one frame at a time
        s = torch.tensor(data.scale[picks[k]], dtype=torch.float32).view(1, 1, 1, 1)
        one = keep_input_mean(y[k : k + 1], x[k : k + 1], norm, detector=det, scale=s, binning=b)
        torch.testing.assert_close(out[k : k + 1], one)
    plain = keep_input_mean(y, x, DoseNormalization())
    assert not torch.allclose(out[0], plain[0], atol=1e-3)  # the integrating pair shifted
    torch.testing.assert_close(out[1], plain[1])  # the counting one did not


@pytest.mark.parametrize(
    "steps", [4, pytest.param(20, marks=pytest.mark.slow)], ids=["4 steps", "20 steps"]
)
def test_a_tiny_training_on_integrating_pairs_records_its_models(
    integrating_pairs: PairArrays, tmp_path: Path, steps: int
) -> None:
    config = TrainConfig(**{**TINY, "max_steps": steps, "val_every": steps // 2})
    result = train(integrating_pairs, config, tmp_path / "m")
    assert result.steps == steps and np.isfinite(result.best_val_psnr_db)
    card = load_package(tmp_path / "m").card
    assert card.normalization.detector_aware
    assert card.detector_models == {"integrating": DEFAULT_MODELS["integrating"]}
    assert "detector-aware" in card.describe_normalization()
