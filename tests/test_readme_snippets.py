"""The README's "Open stores with" snippet runs as written, on a recorded store."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tem_acq.store import AcquisitionWriter, FrameRecord

README = Path(__file__).resolve().parents[1] / "README.md"


def _open_stores_snippet() -> str:
    text = README.read_text(encoding="utf-8")
    after = text[text.index("Open stores with:") :]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)  # type: ignore[union-attr]


def test_open_stores_snippet_runs(
    tmp_path: Path, metadata: Callable[..., object], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("xarray")
    frames = np.arange(3 * 16 * 24, dtype=np.uint16).reshape(3, 16, 24)
    with AcquisitionWriter(tmp_path / "run.ome.zarr", metadata(), (16, 24)) as writer:  # type: ignore[arg-type]
        for frame in frames:
            index = writer.append_raw(frame, FrameRecord())
            writer.write_denoised(index, frame.astype(np.float32) / 44, latency_ms=1.0)
    monkeypatch.chdir(tmp_path)
    code = _open_stores_snippet()
    assert "xarray" in code and "zarr.open_array" in code
    names: dict[str, object] = {}
    for line in code.splitlines():  # each line is one statement; keep the last value of each
        statement = line.split("  #", 1)[0].strip()
        if statement:
            exec(statement, names)
    arr = eval(code.splitlines()[-1].split("  #", 1)[0].split(";", 1)[1].strip(), names)
    np.testing.assert_array_equal(np.asarray(arr), frames)
    assert os.path.isdir("run.ome.zarr")


def test_pymmcore_plus_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = README.read_text(encoding="utf-8")
    after = text[text.index("On **pymmcore-plus**") :]
    code = re.search(r"```python\n(.*?)```", after, re.S).group(1)  # type: ignore[union-attr]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    from tem_acq.store import open_store

    store = open_store(tmp_path / "run2.ome.zarr")
    assert store.n_frames == 20 and store.metadata.axes is not None
    assert store.metadata.protocol.backend == "pymmcore-plus"
