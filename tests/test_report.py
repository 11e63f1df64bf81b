"""tem-acq report: a self-contained HTML page with metadata, per-frame plots and frames."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tem_acq.cli import main as cli
from tem_acq.errors import StoreError
from tem_acq.report import default_report_path, pick_frames, write_report
from tem_acq.store import (
    AcquisitionMetadata,
    AcquisitionWriter,
    FrameRecord,
    ModelProvenance,
    open_store,
)

SHA = "ab" * 32
SHAPE = (48, 64)
CPE = 44.0

MetadataBuilder = Callable[..., AcquisitionMetadata]  # the conftest fixture `metadata`


def truth(shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """Expected electrons per pixel: 4.6 e-/px background with a dark particle."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    particle = np.exp(-((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 3) ** 2) / 40.0)
    return 4.6 * (1.0 - 0.6 * particle)


def make_store(
    path: Path,
    metadata: MetadataBuilder,
    n: int = 30,
    *,
    model: bool = True,
    denoise_every: int = 2,
    close: bool = True,
    error: str | None = None,
) -> Path:
    """A store of low-dose frames (counts = Poisson electrons x 44); every ``denoise_every``-th
    frame denoised (none for 0), the rest skipped with a reason."""
    rng = np.random.default_rng(0)
    clean = truth()
    meta = metadata(
        camera={"counts_per_electron": CPE, "detector_kind": "integrating"},
        model=ModelProvenance(name="unet-test", sha256=SHA, architecture="Unet(resnet18)")
        if model
        else None,
        description="gold nanoparticles on carbon",
    )
    writer = AcquisitionWriter(path, meta, SHAPE, denoised=model)
    for i in range(n):
        electrons = rng.poisson(clean)
        index = writer.append_raw(
            (electrons * CPE).astype(np.uint16),
            FrameRecord(dose_e_per_px=float(electrons.mean()), elapsed_ms=8.0 * i),
        )
        if not model:
            continue
        if denoise_every and i % denoise_every == 0:
            writer.write_denoised(index, clean.astype(np.float32), latency_ms=7.0 + i / 10)
        else:
            writer.mark_skipped(index, "denoiser busy")
    if error:
        writer.record_error(error)
    if close:
        writer.close()
    else:
        writer.flush()
    return path


def images(document: str) -> list[bytes]:
    found = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', document)
    return [base64.b64decode(data) for data in found]


def assert_self_contained(document: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", document, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", document, re.I)
    assert "<script" not in document.lower() and "<link" not in document.lower()
    # every image is embedded
    assert document.count("<img") == len(images(document))


def test_report_of_a_denoised_acquisition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], metadata: MetadataBuilder
) -> None:
    store = make_store(tmp_path / "run.ome.zarr", metadata)
    assert cli(["report", str(store)]) == 0
    out = tmp_path / "run.report.html"
    assert f"wrote {out}" in capsys.readouterr().out
    document = out.read_text(encoding="utf-8")
    assert document.startswith("<!DOCTYPE html>") and document.rstrip().endswith("</html>")
    assert_self_contained(document)
    # one per-frame plot plus first, middle and last frame (raw next to denoised)
    pngs = images(document)
    assert len(pngs) == 4
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in pngs)
    for expected in (
        "4.6 e-/px",  # dose per frame
        "0.005152 e-/\u00c5\u00b2",  # 4.6 / 29.88^2
        "3.3 ms",  # exposure
        "29.88 \u00c5",  # pixel size
        "200 kV",
        "20,000x",
        "Gatan OneView",
        "<th>counts per electron</th><td>44</td>",
        "unet-test",
        SHA,  # the whole hash
        "15 of 30",  # denoised frames
        "denoiser busy: 15",
        "Complete: the writer closed the store cleanly.",
        "No errors recorded.",
        "gold nanoparticles on carbon",
    ):
        assert expected in document, expected
    # the frames shown are denoised ones near first, middle and last
    for index in (0, 14, 28):
        assert f"Frame {index} (" in document


def test_frames_shown_are_denoised_nearest_to_targets(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    store = open_store(make_store(tmp_path / "s.ome.zarr", metadata, 30, denoise_every=4))
    picks = pick_frames(store, 3)
    assert [p.index for p in picks] == [0, 16, 28]
    assert [p.target for p in picks] == ["first", "middle", "last"]
    raw_only = open_store(make_store(tmp_path / "r.ome.zarr", metadata, 7, model=False))
    assert [p.index for p in pick_frames(raw_only, 3)] == [0, 3, 6]
    assert [p.index for p in pick_frames(raw_only, 10)] == list(range(7))
    assert pick_frames(raw_only, 0) == []


def test_report_of_raw_only_store_and_frame_count(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    store = make_store(tmp_path / "raw.ome.zarr", metadata, 12, model=False)
    out = write_report(store, tmp_path / "r.html", frames=2)
    document = out.read_text(encoding="utf-8")
    assert_self_contained(document)
    assert len(images(document)) == 1 + 2
    assert "none (raw frames only)" in document
    assert "Denoise latency" not in document
    assert len(images(write_report(store, tmp_path / "r0.html", frames=0).read_text())) == 1


def test_raw_is_shown_in_electrons(tmp_path: Path, metadata: MetadataBuilder) -> None:
    """The raw panel's caption gives the mean in e-/px, not counts (counts / 44)."""
    store = make_store(tmp_path / "e.ome.zarr", metadata, 4)
    document = write_report(store, tmp_path / "e.html").read_text()
    means = [float(m) for m in re.findall(r"raw mean ([0-9.]+) e-/px", document)]
    assert means and all(3.5 < m < 5.0 for m in means)
    assert "raw counts / 44 counts per e-" in document


def test_incomplete_store_with_errors_is_flagged_and_escaped(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    store = make_store(
        tmp_path / "crash.ome.zarr", metadata, 20, close=False, error="camera <timeout> & retry"
    )
    document = write_report(store).read_text()
    assert "INCOMPLETE" in document
    assert "camera &lt;timeout&gt; &amp; retry" in document
    assert "<timeout>" not in document


def test_out_may_be_a_folder_and_existing_report_is_replaced(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    store = make_store(tmp_path / "a.ome.zarr", metadata, 5)
    folder = tmp_path / "reports"
    folder.mkdir()
    first = write_report(store, folder)
    assert first == folder / "a.report.html"
    first.write_text("old")
    assert write_report(store, folder) == first
    assert first.read_text().startswith("<!DOCTYPE html>")
    assert not list(folder.glob(".*tmp"))


def test_default_report_path() -> None:
    assert default_report_path("/data/run.ome.zarr") == Path("/data/run.report.html")
    assert default_report_path("/data/run.zarr") == Path("/data/run.report.html")
    assert default_report_path("/data/run") == Path("/data/run.report.html")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.zarr", "does not exist"),
        (lambda p: (p / "f.txt").write_text("x") and p / "f.txt", "is a file"),
        (lambda p: (p / "d").mkdir() or p / "d", "not a zarr v3 store"),
    ],
)
def test_bad_input_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object, message: str
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    assert cli(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tem-acq report: error:") and message in err
    with pytest.raises(StoreError, match=message):
        write_report(path)


def test_unwritable_output_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], metadata: MetadataBuilder
) -> None:
    store = make_store(tmp_path / "w.ome.zarr", metadata, 3)
    assert cli(["report", str(store), "--out", str(tmp_path / "no" / "such" / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "--out" in err
    assert cli(["report", str(store), "--frames", "-1"]) == 2
    assert "--frames" in capsys.readouterr().err


def test_pairs_store_is_refused_with_a_pointer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_view import make_pairs_store

    pairs = make_pairs_store(tmp_path / "p.ome.zarr")
    assert cli(["report", str(pairs)]) == 2
    err = capsys.readouterr().err
    assert "pairs store" in err and "tem-acq view" in err


def test_store_with_nothing_denoised_says_why(tmp_path: Path, metadata: MetadataBuilder) -> None:
    store = make_store(tmp_path / "none.ome.zarr", metadata, 6, denoise_every=0)
    document = write_report(store, frames=1).read_text()
    assert len(images(document)) == 2
    assert "Frame 0 (first): raw mean" in document and "skipped: denoiser busy" in document
    assert "0 of 6" in document


def test_empty_store(tmp_path: Path, metadata: MetadataBuilder) -> None:
    document = write_report(make_store(tmp_path / "empty.ome.zarr", metadata, 0)).read_text()
    assert_self_contained(document)
    assert "No frames were recorded." in document and not images(document)
