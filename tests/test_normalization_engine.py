"""The engine and card side of the detector-aware rule: what the camera says reaches the rule.

Old cards (not ``detector_aware``) denoise exactly as before whatever the camera says; a
``detector_aware`` card corrects for the model the camera gives, or for its own model of the
camera's detector kind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tem_acq.denoise import load_model
from tem_acq.denoise.card import read_card, write_card
from tem_acq.denoise.package import shipped_models_dir
from tem_acq.detector import ONEVIEW, response_table
from tem_acq.errors import ConfigError
from tem_acq.sim.detector import IntegratingDetector

CUSTOM = ONEVIEW.model_copy(update={"dark_offset_e": -0.8, "read_noise_e": 1.5})


def _integrating_frames(n: int = 2, dose: float = 1.0, size: int = 64) -> np.ndarray:
    det = IntegratingDetector.from_model(ONEVIEW, 44.0)
    flat = np.full((size, size), dose, np.float32)
    return np.stack([det.sample(flat, np.random.default_rng([3, i]), 1) for i in range(n)])


def _aware_copy(fast_pkg: Path, tmp_path: Path, models: dict | None) -> Path:
    pkg = tmp_path / "aware"
    shutil.copytree(fast_pkg, pkg)
    card = read_card(pkg / "card.json")
    card = card.model_copy(
        update={
            "normalization": card.normalization.model_copy(update={"detector_aware": True}),
            "detector_models": models,
        }
    )
    write_card(card, pkg / "card.json")
    return pkg


def test_old_cards_read_back_byte_identical_and_ignore_the_camera(
    fast_pkg: Path, tmp_path: Path
) -> None:
    path = fast_pkg / "card.json"  # a card of before the rule (no detector_aware written)
    card = read_card(path)
    assert not card.normalization.detector_aware and card.detector_models is None
    assert "detector_aware" not in json.loads(path.read_text())["normalization"]
    copy = tmp_path / "card-again.json"
    write_card(card, copy)
    assert copy.read_bytes() == path.read_bytes()
    for name in ("default", "fast"):  # the shipped models are trained with the rule
        shipped = read_card(shipped_models_dir() / name / "card.json")
        assert shipped.normalization.detector_aware and shipped.detector_models is not None
    den = load_model(fast_pkg, "cpu", path="eager")
    frames = _integrating_frames()
    plain = den.denoise(frames, counts_per_electron=44.0)
    for detector in ("integrating", ONEVIEW, CUSTOM, "counting"):
        out = den.denoise(frames, counts_per_electron=44.0, detector=detector, binning=2)
        np.testing.assert_array_equal(out, plain)
    np.testing.assert_allclose(plain.mean(axis=(1, 2)), frames.mean(axis=(1, 2)) / 44.0, rtol=1e-5)


def test_an_aware_card_corrects_for_the_camera_s_model(fast_pkg: Path, tmp_path: Path) -> None:
    den = load_model(_aware_copy(fast_pkg, tmp_path, {"integrating": CUSTOM}), "cpu", path="eager")
    frames = _integrating_frames()
    observed = frames.mean(axis=(1, 2), dtype=np.float64) / 44.0
    by_kind = den.denoise(frames, counts_per_electron=44.0, detector="integrating")
    by_model = den.denoise_batch(frames, 44.0, detector=CUSTOM)
    np.testing.assert_array_equal(by_kind, by_model)  # the card's model for the kind
    response = response_table(CUSTOM).value(by_model.astype(np.float64)).mean(axis=(1, 2))
    np.testing.assert_allclose(response, observed, rtol=1e-4)
    oneview = den.denoise(frames, counts_per_electron=44.0, detector=ONEVIEW, binning=2)
    response = response_table(ONEVIEW, 2).value(oneview.astype(np.float64)).mean(axis=(1, 2))
    np.testing.assert_allclose(response, observed, rtol=1e-4)
    # no detector: the counting rule, the input's mean kept
    plain = den.denoise(frames, counts_per_electron=44.0)
    np.testing.assert_allclose(plain.mean(axis=(1, 2)), observed, rtol=1e-5)
    assert den.card.detector_model("counting").kind == "counting"
    assert "detector-aware" in den.card.describe_normalization()


def test_without_its_own_models_an_aware_card_uses_the_defaults(
    fast_pkg: Path, tmp_path: Path
) -> None:
    den = load_model(_aware_copy(fast_pkg, tmp_path, None), "cpu", path="eager")
    frames = _integrating_frames(1)
    np.testing.assert_array_equal(
        den.denoise(frames, counts_per_electron=44.0, detector="integrating"),
        den.denoise(frames, counts_per_electron=44.0, detector=ONEVIEW),
    )


def test_bad_detector_or_binning_is_one_clear_error(fast_pkg: Path) -> None:
    den = load_model(fast_pkg, "cpu", path="eager")
    frame = _integrating_frames(1)[0]
    with pytest.raises(ConfigError, match="unknown detector 'oneview'"):
        den.denoise(frame, detector="oneview")
    with pytest.raises(ConfigError, match="binning must be a positive integer"):
        den.denoise_batch(frame, 44.0, binning=0)


def test_a_card_model_must_match_its_kind(tmp_path: Path, fast_pkg: Path) -> None:
    from tem_acq.errors import ModelPackageError

    pkg = _aware_copy(fast_pkg, tmp_path, None)
    raw = json.loads((pkg / "card.json").read_text())
    raw["detector_models"] = {"counting": ONEVIEW.model_dump()}
    (pkg / "card.json").write_text(json.dumps(raw))
    with pytest.raises(ModelPackageError, match="detector_models"):
        read_card(pkg / "card.json")
