"""Evaluation (per-dose metrics, checks, card quality, figure, real frame pairs) and the CLIs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tem_acq.cli import main
from tem_acq.denoise import Denoiser, load_model, load_package
from tem_acq.denoise.package import write_quality
from tem_acq.errors import TemAcqError
from tem_acq.evaluate import (
    evaluate_frame_pair,
    evaluate_groups,
    evaluate_pairs,
    figure,
    quality_rows,
    render_table,
    vacuum_from_truth,
)
from tem_acq.pairs import PairArrays, from_pairs_store, simulate_pairs
from tem_acq.train import TrainConfig, train

TINY = {
    "fast": True, "crop": 32, "batch_size": 2, "max_steps": 2, "warmup_steps": 1,
    "val_every": 2, "checkpoint_every": 2, "val_fraction": 0.5, "val_max_frames": 2,
    "num_threads": 2, "precision": "fp32",
}


@pytest.fixture(scope="module")
def pairs() -> PairArrays:
    return simulate_pairs(
        "nanoparticles", "counting", n_fields=2, short_doses=(1.0, 5.0), size=64, seed=21,
        max_shift_px=1.0, min_vacuum_fraction=0.1, vacuum_field_share=1.0,
    )


@pytest.fixture(scope="module")
def den(fast_pkg: Path) -> Denoiser:
    # eager: skips the execution-path trials at warm-up, which only cost time here
    return load_model(fast_pkg, "cpu", path="eager")


@pytest.fixture(scope="module")
def trained(pairs: PairArrays, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pkg") / "tiny"
    train(pairs, TrainConfig(**TINY), out)
    return out


def write_store(pairs: PairArrays, path: Path, *, truth: bool = True) -> Path:
    """Write simulated pairs into a pairs store with the store's own writer."""
    from tem_acq.store import (
        AcquisitionProtocol,
        Camera,
        Instrument,
        PairRecord,
        PairsMetadata,
        PairsWriter,
    )

    assert pairs.high is not None and pairs.shift is not None and pairs.truth is not None
    fields = np.unique(pairs.field)
    k = int(np.sum(pairs.field == fields[0]))
    assert pairs.pixel_size_A is not None
    meta = PairsMetadata(
        instrument=Instrument(voltage_kV=200, pixel_size_A=float(pairs.pixel_size_A[0])),
        camera=Camera(name="simulated", counts_per_electron=float(pairs.counts_per_electron[0]),
                      detector_kind=pairs.detector[0]),
        short_exposure_ms=5.0, long_exposure_ms=1000.0, long_mode="sum", n_short=k,
        protocol=AcquisitionProtocol(simulated=True, backend="test",
                                     settings={"specimen": pairs.specimen[0]}),
    )
    writer = PairsWriter(path, meta, pairs.shape, truth=truth)
    for f in fields:
        idx = np.flatnonzero(pairs.field == f)
        cpe = float(pairs.counts_per_electron[idx[0]])
        records = [
            PairRecord(
                field=int(f), pair_in_field=j, low_exposure_ms=5.0, high_exposure_ms=1000.0,
                low_dose_e_per_px=float(pairs.low[i].mean()) / cpe,
                high_dose_e_per_px=float(pairs.high[i].mean()) / cpe,
                counts_per_electron=cpe, shift_dy_px=float(pairs.shift[i, 0]),
                shift_dx_px=float(pairs.shift[i, 1]),
            )
            for j, i in enumerate(idx)
        ]
        writer.append_field(
            int(f), low=pairs.low[idx], high=pairs.high[idx].astype(np.float32), records=records,
            truth=pairs.truth[idx] if truth else None,
        )
    writer.close()
    return path


# --- evaluate_pairs ----------------------------------------------------------------------------


def test_evaluate_reports_every_dose_and_baseline(pairs: PairArrays, den: Denoiser) -> None:
    rep = evaluate_pairs(den, pairs, max_flip_frames=1, timing_repeats=1)
    assert rep.reference == "truth" and rep.specimen == "nanoparticles"
    assert rep.detector == "counting" and rep.n_pairs == 4
    psnr5 = rep.get(5.0, "psnr_db")
    assert psnr5 is not None and psnr5.n == 2
    assert psnr5.raw is not None and psnr5.gaussian is not None and psnr5.long is not None
    # the protocol's baselines: Gaussian >> raw, and the long exposure beats both
    assert psnr5.gaussian > psnr5.raw + 10
    assert psnr5.long > psnr5.gaussian
    # the oracle Wiener (knows the clean spectrum) is measured against truth, beside its note
    assert psnr5.wiener is not None and psnr5.wiener > psnr5.raw + 10
    assert rep.get(5.0, "ssim").wiener is not None  # type: ignore[union-attr]
    assert rep.get(5.0, "mean_shift_pct").wiener is None  # type: ignore[union-attr]
    assert any("oracle Wiener" in n for n in rep.notes)
    metrics = {r.metric for r in rep.rows}
    assert {"psnr_db", "ssim", "psnr_edge_db", "psnr_vs_long_db", "mean_shift_pct",
            "vacuum_structure_ratio", "vacuum_max_z", "flip_max_db"} <= metrics
    shift = rep.get(1.0, "mean_shift_pct")
    assert shift is not None and shift.model is not None and abs(shift.model) < 1e-3
    assert rep.ms_per_frame > 0
    json.dumps(rep.to_dict())
    names = [c.name for c in rep.checks]
    assert any("long exposure" in n for n in names) and any("mean shift" in n for n in names)
    text = render_table(rep)
    assert "psnr_db" in text and ("PASS" in text or "FAIL" in text)
    assert render_table(rep, markdown=True).count("|") > 40


def test_evaluate_against_the_long_exposure(pairs: PairArrays, den: Denoiser) -> None:
    no_truth = pairs.subset(range(len(pairs)))
    no_truth.truth = None
    rep = evaluate_pairs(den, no_truth, flips_at_dose=None, timing_repeats=1)
    assert rep.reference == "long"
    r = rep.get(5.0, "psnr_db")
    assert r is not None and r.long is None and r.wiener is None  # no truth: no oracle
    assert "oracle Wiener" not in render_table(rep)
    assert rep.get(5.0, "psnr_vs_long_db") is None
    with pytest.raises(TemAcqError, match="no ground truth"):
        evaluate_pairs(den, no_truth, reference="truth")
    rows = quality_rows(rep)
    assert rows and all("(vs long exposure)" in q.image_kind for q in rows)


def test_evaluate_bad_inputs(pairs: PairArrays, den: Denoiser) -> None:
    no_high = pairs.subset(range(len(pairs)))
    no_high.high = None
    with pytest.raises(TemAcqError, match="no long exposures"):
        evaluate_pairs(den, no_high)
    tiny = simulate_pairs("nanoparticles", "counting", n_fields=1, size=8, seed=1)
    with pytest.raises(TemAcqError, match="smaller than model"):
        evaluate_pairs(den, tiny)
    with pytest.raises(TemAcqError, match="unknown reference"):
        evaluate_pairs(den, pairs, reference="best")
    with pytest.raises(TemAcqError, match="does not exist"):
        evaluate_pairs(Path("/nonexistent/model"), pairs)


def test_vacuum_from_truth_finds_the_flat_bright_region() -> None:
    t = np.full((64, 64), 5.0)
    xx = np.mgrid[:64, :64][1]
    t[:, 32:] = 3.0 + 0.5 * np.sin(xx[:, 32:] / 2.0)  # specimen with structure
    m = vacuum_from_truth(t)
    assert m[:, :28].all() and not m[:, 34:].any()
    assert not vacuum_from_truth(3.0 + np.sin(xx / 2.0)).any()


def test_groups_and_quality_table(
    pairs: PairArrays, trained: Path, tmp_path: Path, fast_pkg: Path
) -> None:
    other = simulate_pairs("nanoparticles", "integrating", n_fields=1, short_doses=(5.0,),
                           size=64, seed=22)
    from tem_acq.pairs import concatenate

    model = load_model(trained, "cpu", path="eager")
    reps = evaluate_groups(model, concatenate([pairs, other]), flips_at_dose=None)
    assert [(r.specimen, r.detector) for r in reps] == [
        ("nanoparticles", "counting"), ("nanoparticles", "integrating")
    ]
    rows = [q for r in reps for q in quality_rows(r)]
    assert {q.detector for q in rows} == {"counting", "integrating"}
    assert any(q.metric == "psnr_db_long_exposure" for q in rows)
    assert any(q.metric == "psnr_db" and q.wiener is not None for q in rows)
    write_quality(trained, rows)
    card = load_package(trained).card  # weights untouched: the package still verifies
    assert len(card.quality) == len(rows)
    assert card.quality[0].image_kind == "low magnification"
    with pytest.raises(TemAcqError, match="untrained"):
        write_quality(fast_pkg, rows)


def test_figure(pairs: PairArrays, den: Denoiser, tmp_path: Path) -> None:
    out = figure(den, pairs, tmp_path / "f.png")
    assert out.stat().st_size > 10_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(TemAcqError, match="out of range"):
        figure(den, pairs, tmp_path / "g.png", index=99)


# --- real frames -------------------------------------------------------------------------------


def _oneview(oneview_dir: Path, name: str) -> np.ndarray:
    import tifffile

    return tifffile.imread(oneview_dir / name)


def test_frame_pair_check_runs_on_real_oneview_frames(oneview_dir: Path, den: Denoiser) -> None:
    a, b = _oneview(oneview_dir, "val-0001.tif"), _oneview(oneview_dir, "val-0002.tif")
    rep = evaluate_frame_pair(den, a[:128, :128], b[:128, :128], 44.0)
    assert 4.0 < rep.dose_e_per_px < 5.5
    assert np.isfinite(rep.check.psnr_raw_db) and np.isfinite(rep.check.structure_ratio)
    assert "PSNR between the two frames" in rep.render()
    with pytest.raises(TemAcqError, match="two single frames"):
        evaluate_frame_pair(den, a, b[:10], 44.0)
    with pytest.raises(TemAcqError, match="counts_per_electron"):
        evaluate_frame_pair(den, a, b, 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["default", "fast"])
def test_shipped_models_invent_nothing_on_real_frames(oneview_dir: Path, model: str) -> None:
    for field in ("train", "val"):
        a = _oneview(oneview_dir, f"{field}-0001.tif")
        b = _oneview(oneview_dir, f"{field}-0002.tif")
        rep = evaluate_frame_pair(model, a, b, 44.0, device="cpu")
        assert rep.check.passed, rep.render()
        assert rep.check.psnr_denoised_db > rep.check.psnr_raw_db + 10


# --- the command line --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(pairs: PairArrays, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(pairs, tmp_path_factory.mktemp("st") / "p.ome.zarr")


def test_pairs_store_adapter(pairs: PairArrays, store: Path) -> None:
    back = from_pairs_store([store])
    assert len(back) == len(pairs)
    np.testing.assert_array_equal(back.low, pairs.low)
    np.testing.assert_allclose(back.high, pairs.high)
    assert back.truth is not None and back.shift is not None and pairs.shift is not None
    np.testing.assert_allclose(back.shift, pairs.shift)
    assert back.detector == pairs.detector and back.specimen == pairs.specimen
    # measured doses: the target keeps the input's electron total
    assert back.low_dose[0] == pytest.approx(pairs.low[0].mean() / pairs.counts_per_electron[0])
    assert back.source.startswith("pairs store")
    two = from_pairs_store([store, store])
    assert len(np.unique(two.field)) == 2 * len(np.unique(back.field))
    with pytest.raises(TemAcqError, match="does not exist"):
        from_pairs_store([store.parent / "missing.ome.zarr"])
    with pytest.raises(TemAcqError, match="no pairs stores"):
        from_pairs_store([])


def test_pixel_sizes_are_in_angstrom(pairs: PairArrays, store: Path, trained: Path) -> None:
    from tem_acq.sim import SimulationConfig, TEMSimulator

    sim = TEMSimulator(SimulationConfig(specimen="nanoparticles", detector="counting", seed=21,
                                        size=64))
    assert pairs.pixel_size_A is not None
    np.testing.assert_array_equal(pairs.pixel_size_A, sim.pixel_size_A)
    back = from_pairs_store([store])  # the store records the instrument's pixel_size_A
    assert back.pixel_size_A is not None
    np.testing.assert_allclose(back.pixel_size_A, pairs.pixel_size_A)
    card = load_package(trained).card
    assert card.pixel_size_A_range == (sim.pixel_size_A, sim.pixel_size_A)


def test_cli_train_and_evaluate(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "m"
    t0 = time.perf_counter()
    assert main(["train", "--pairs", str(store), "--out", str(out), "--config", str(cfg),
                 "--max-steps", "3", "--quiet"]) == 0
    assert time.perf_counter() - t0 < 60
    text = capsys.readouterr().out
    assert "trained 3/3 steps" in text and "wrote" in text
    assert load_package(out).card.trained
    fig = tmp_path / "f.png"
    assert main(["evaluate", "--model", str(out), "--pairs", str(store), "--json", "--no-flips",
                 "--figure", str(fig), "--write-card"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert reports[0]["reference"] == "truth" and reports[0]["rows"]
    assert fig.is_file() and load_package(out).card.quality
    assert main(["evaluate", "--model", str(out), "--pairs", str(store), "--json", "--tta"]) == 0
    tta = json.loads(capsys.readouterr().out)
    assert tta[0]["device"].endswith("+tta")
    flips = [r["model"] for r in tta[0]["rows"] if r["metric"] == "flip_max_db"]
    assert flips and max(flips) < 0.01  # averaged over the 8 transforms: orientation-free


def test_cli_errors(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], fast_pkg: Path
) -> None:
    assert main(["train", "--pairs", str(tmp_path / "nope.ome.zarr"), "--out",
                 str(tmp_path / "m")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("crop: 64\nepochz: 3\n")
    assert main(["train", "--pairs", str(store), "--out", str(tmp_path / "m"), "--config",
                 str(bad)]) == 2
    assert "epochz" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "none"), "--pairs", str(store)]) == 2
    assert "does not exist" in capsys.readouterr().err
    no_truth = write_store(from_pairs_store([store]), tmp_path / "nt.ome.zarr", truth=False)
    assert main(["evaluate", "--model", str(fast_pkg), "--pairs", str(no_truth),
                 "--reference", "truth"]) == 2
    assert "no ground truth" in capsys.readouterr().err


def test_cli_frame_pair(
    oneview_dir: Path, fast_pkg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = oneview_dir / "val-0001.tif", oneview_dir / "val-0002.tif"
    assert main(["evaluate", "--model", str(fast_pkg), "--frame-pair", str(a), str(b),
                 "--json", "--device", "cpu"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["counts_per_electron"] == pytest.approx(44.0, rel=0.01)  # from the Gatan tags
    assert main(["evaluate", "--model", str(fast_pkg), "--frame-pair", str(a), str(b),
                 "--write-card"]) == 2


def test_particle_metrics_follow_the_mask(pairs: PairArrays, den: Denoiser) -> None:
    masked = pairs.subset(range(len(pairs)))
    masked.particles = np.zeros(masked.low.shape, bool)
    masked.particles[:, 8:40, 8:40] = True  # 1024 px: measured
    rep = evaluate_pairs(den, masked, flips_at_dose=None, timing_repeats=1)
    inside = rep.get(5.0, "psnr_particles_db")
    assert inside is not None and None not in (inside.raw, inside.gaussian, inside.model)
    assert rep.get(5.0, "ssim_particles") is not None
    assert "ssim_particles" in render_table(rep)
    masked.particles[:] = False
    masked.particles[:, :10, :10] = True  # 100 px: too few for a number
    rep = evaluate_pairs(den, masked, flips_at_dose=None, timing_repeats=1)
    assert rep.get(5.0, "psnr_particles_db") is None
