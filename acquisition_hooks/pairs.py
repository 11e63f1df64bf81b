"""Automated paired-data collection through real pycro-manager events.

For each field (a stage position), K short exposures and one long exposure (or M short frames
to be summed), with ``exposure`` set per event; the long one before or after the shorts. The
image processor only files each frame under its field (the shorts arrive as a hardware
sequence: the processor must stay thin); a worker thread assembles a complete field into pairs
(:func:`tem_acq.pairs.assemble_field`) and writes them to a pairs store, a field at a time, so
an interrupted run resumes at the first field the store does not hold.

::

    from acquisition_hooks import simulated_microscope
    from acquisition_hooks.pairs import PairPlan, collect_pairs

    with simulated_microscope(dose_rate=2500.0, size=256) as scope:
        plan = PairPlan(fields=6, n_short=2, short_exposure_ms=2.0, long_exposure_ms=400.0)
        collect_pairs(scope, plan, "pairs.ome.zarr")
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tem_acq.errors import AcquisitionError
from tem_acq.pairs import assemble_field, grid_positions_um
from tem_acq.store import PairRecord, PairsMetadata, PairsWriter
from tem_acq.store.metadata import AcquisitionProtocol, Camera, Instrument

from .session import MicroscopeSession

SHORT, LONG = 0, 1


class PairPlan(BaseModel):
    """What to collect: the fields, the exposures and their order.

    Attributes
    ----------
    fields
        Number of fields, on a grid of non-overlapping stage positions.
    positions_um
        Explicit stage positions (x, y) in micrometres instead of a grid.
    n_short
        Short exposures per field.
    short_exposure_ms, long_exposure_ms
        Exposures. In ``long_mode="sum"`` the long exposure is ``n_sum`` short frames.
    long_mode
        ``"exposure"``: one long exposure; ``"sum"``: the sum of ``n_sum`` short frames (for
        cameras that saturate or when a long exposure is not possible).
    n_sum
        Short frames summed in ``"sum"`` mode (default: long_exposure_ms / short_exposure_ms).
    long_order
        Whether the long exposure comes ``"after"`` or ``"before"`` the shorts.
    settle_s
        Wait after each stage move before the first exposure (stage settling).
    max_shift_px
        Pairs whose registration shift exceeds this are flagged ``"drift"``.
    spacing
        Grid spacing between field centres, in field widths.
    """

    model_config = ConfigDict(extra="forbid")

    fields: int = Field(default=6, ge=1)
    positions_um: list[tuple[float, float]] | None = None
    n_short: int = Field(default=2, ge=1)
    short_exposure_ms: float = Field(default=2.0, gt=0)
    long_exposure_ms: float = Field(default=400.0, gt=0)
    long_mode: Literal["exposure", "sum"] = "exposure"
    n_sum: int | None = Field(default=None, ge=1)
    long_order: Literal["after", "before"] = "after"
    settle_s: float = Field(default=0.0, ge=0)
    max_shift_px: float = Field(default=2.0, gt=0)
    spacing: float = Field(default=1.5, gt=1.0)

    def long_frames(self) -> int:
        """Frames that make up the long exposure (1 unless summing)."""
        if self.long_mode == "exposure":
            return 1
        return self.n_sum or max(1, round(self.long_exposure_ms / self.short_exposure_ms))

    def long_frame_exposure_ms(self) -> float:
        """Exposure of each long-exposure event."""
        return self.long_exposure_ms if self.long_mode == "exposure" else self.short_exposure_ms

    def positions(self, field_size_um: float) -> list[tuple[float, float]]:
        """Stage positions of every field."""
        if self.positions_um is not None:
            return list(self.positions_um)
        return grid_positions_um(self.fields, field_size_um=field_size_um, spacing=self.spacing)

    def events(self, field: int, x_um: float, y_um: float) -> list[dict[str, Any]]:
        """pycro-manager events of one field, with exposure (ms) and stage position."""
        shorts = [
            {
                "axes": {"field": field, "kind": SHORT, "frame": k},
                "exposure": self.short_exposure_ms,
            }
            for k in range(self.n_short)
        ]
        longs = [
            {
                "axes": {"field": field, "kind": LONG, "frame": m},
                "exposure": self.long_frame_exposure_ms(),
            }
            for m in range(self.long_frames())
        ]
        ordered = shorts + longs if self.long_order == "after" else longs + shorts
        for event in ordered:
            event["x"], event["y"] = float(x_um), float(y_um)
        return ordered


class PairCollector:
    """Image processor + hooks that file frames by field and write complete fields as pairs.

    Parameters
    ----------
    writer
        The pairs store being written.
    plan
        The collection plan (to know when a field is complete).
    counts_per_electron
        The camera's conversion factor.
    positions_um
        Stage position of each field.
    truth
        For simulated microscopes: maps a frame's metadata to its noise-free expected electrons
        per pixel (None for a real microscope).
    """

    def __init__(
        self,
        writer: PairsWriter,
        plan: PairPlan,
        *,
        counts_per_electron: float,
        positions_um: list[tuple[float, float]],
        truth: Callable[[Mapping[str, Any]], np.ndarray | None] | None = None,
        on_field: Callable[[int], None] | None = None,
    ) -> None:
        self._writer = writer
        self._plan = plan
        self._cpe = counts_per_electron
        self._positions = positions_um
        self._truth = truth
        self._on_field = on_field
        self._frames: dict[
            int, dict[int, list[tuple[int, np.ndarray, Mapping[str, Any], str]]]
        ] = {}
        self._work: queue.Queue[int | None] = queue.Queue()
        self._error: BaseException | None = None
        self._last_xy: tuple[float, float] | None = None
        self._worker = threading.Thread(
            target=self._assemble_loop, name="tem-acq pairs", daemon=True
        )
        self._worker.start()

    def process(self, image: np.ndarray, metadata: Mapping[str, Any]) -> None:
        """Image processor: file the frame under its field; queue complete fields."""
        axes = metadata.get("Axes") or {}
        try:
            field, kind, frame = int(axes["field"]), int(axes["kind"]), int(axes["frame"])
        except (KeyError, TypeError, ValueError):
            raise AcquisitionError(
                f"frame without pair-collection axes (field, kind, frame): {dict(axes)}"
            ) from None
        stamp = datetime.now(UTC).isoformat()
        slots = self._frames.setdefault(field, {SHORT: [], LONG: []})
        slots[kind].append((frame, np.asarray(image), dict(metadata), stamp))
        if len(slots[SHORT]) == self._plan.n_short and len(slots[LONG]) == self._plan.long_frames():
            self._work.put(field)
        return None

    def post_hardware_hook(self, event: Any) -> Any:
        """Let the stage settle after a move (sequences share one position). Returns ``event``."""
        first = event[0] if isinstance(event, list) else event
        xy = (first.get("x"), first.get("y"))
        if xy[0] is not None and xy != self._last_xy:
            self._last_xy = xy
            if self._plan.settle_s > 0:
                time.sleep(self._plan.settle_s)
        return event

    def acquisition_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that attach the collector to ``pycromanager.Acquisition``."""
        return {"image_process_fn": self.process, "post_hardware_hook_fn": self.post_hardware_hook}

    def close(self) -> None:
        """Write the fields still queued and stop the worker; raise its error if any."""
        self._work.put(None)
        self._worker.join()
        if self._error is not None:
            raise AcquisitionError(f"writing pairs failed: {self._error}") from self._error

    def _assemble_loop(self) -> None:
        while (field := self._work.get()) is not None:
            if self._error is not None:
                continue
            try:
                self._write_field(field)
            except BaseException as exc:  # reported at close; later fields are not written
                self._error = exc

    def _write_field(self, field: int) -> None:
        slots = self._frames.pop(field)
        shorts = sorted(slots[SHORT], key=lambda s: s[0])
        longs = sorted(slots[LONG], key=lambda s: s[0])
        pairs = assemble_field(
            [s[1] for s in shorts],
            [f[1] for f in longs],
            counts_per_electron=self._cpe,
            max_shift_px=self._plan.max_shift_px,
        )
        x_um, y_um = self._positions[field]
        truths = None
        if self._truth is not None:
            found = [self._truth(s[2]) for s in shorts]
            if all(t is not None for t in found):
                truths = np.stack([np.asarray(t, np.float32) for t in found])
        records = [
            PairRecord(
                field=field,
                pair_in_field=k,
                stage_x_um=x_um,
                stage_y_um=y_um,
                low_exposure_ms=self._plan.short_exposure_ms,
                high_exposure_ms=self._plan.long_exposure_ms,
                low_dose_e_per_px=p.low_dose_e_per_px,
                high_dose_e_per_px=p.high_dose_e_per_px,
                counts_per_electron=self._cpe,
                low_timestamp=shorts[k][3],
                high_timestamp=longs[-1][3],
                order=self._plan.long_order,
                shift_dy_px=p.shift_dy_px,
                shift_dx_px=p.shift_dx_px,
                shift_significance=p.shift_significance,
                flag=p.flag,
            )
            for k, p in enumerate(pairs)
        ]
        self._writer.append_field(
            field,
            low=np.stack([p.low for p in pairs]),
            high=np.stack([p.high for p in pairs]),
            records=records,
            truth=truths,
        )
        if self._on_field is not None:
            self._on_field(field)


def collect_pairs(
    scope: MicroscopeSession,
    plan: PairPlan,
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    on_field: Callable[[int], None] | None = None,
) -> Path:
    """Collect pairs on a simulated microscope session into a pairs store; returns its path.

    With ``resume``, an existing store made with the same plan continues at the first field it
    does not hold; fields already written are never acquired again.
    """
    from pycromanager import Acquisition

    camera = scope.camera
    if camera is None:
        raise AcquisitionError("pair collection needs the simulated TEM camera (camera='tem')")
    settings = scope.recorder_settings()
    frame_shape = settings["frame_shape"]
    field_um = frame_shape[1] * settings["pixel_size_A"] * 1e-4
    positions = plan.positions(field_um)
    metadata = PairsMetadata(
        instrument=Instrument(
            voltage_kV=settings["voltage_kV"], pixel_size_A=settings["pixel_size_A"]
        ),
        camera=Camera(
            name=settings["camera"],
            counts_per_electron=settings["counts_per_electron"],
            detector_kind=settings["detector"],
        ),
        short_exposure_ms=plan.short_exposure_ms,
        long_exposure_ms=plan.long_exposure_ms,
        long_mode=plan.long_mode,
        n_short=plan.n_short,
        long_order=plan.long_order,
        planned_fields=len(positions),
        dose_rate_e_per_px_per_s=settings["dose_rate_e_per_px_per_s"],
        protocol=AcquisitionProtocol(
            simulated=True,
            backend="pycromanager",
            settings={
                "plan": plan.model_dump(mode="json"),
                "specimen": camera.config.specimen,
                "detector": camera.config.detector,
                "seed": camera.config.seed,
            },
        ),
        description=settings["description"],
    )
    writer = PairsWriter(out, metadata, frame_shape, truth=True, overwrite=overwrite, resume=resume)
    todo = [f for f in range(len(positions)) if f not in writer.completed_fields]

    def truth_of(md: Mapping[str, Any]) -> np.ndarray | None:
        frame_id = md.get("TEM-FrameId")
        info = camera.frame_info(int(frame_id)) if frame_id is not None else None
        return camera.ground_truth(info) if info is not None else None

    collector = PairCollector(
        writer,
        plan,
        counts_per_electron=settings["counts_per_electron"],
        positions_um=positions,
        truth=truth_of,
        on_field=on_field,
    )
    completed = False
    try:
        with Acquisition(
            directory=None, show_display=False, **collector.acquisition_kwargs()
        ) as acq:
            for field in todo:
                acq.acquire(plan.events(field, *positions[field]))
        collector.close()
        completed = True
    finally:
        if not completed:
            try:  # write the fields already assembled; the store stays resumable
                collector.close()
            except AcquisitionError:
                pass
        writer.close(complete=completed)
    return Path(out)
