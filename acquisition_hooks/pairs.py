"""Automated paired-data collection on both Python microscope stacks.

For each field (a stage position), K short exposures and one long exposure (or M short frames
to be summed), with the exposure set per event; the long one before or after the shorts. On
pycro-manager they are events of one ``Acquisition``; on pymmcore-plus ``useq.MDAEvent``s that
``core.mda.run`` executes (it runs the equal short exposures as one hardware sequence). One
:class:`PairCollector` serves both: its pycro-manager image processor
(:meth:`PairCollector.process`) and its pymmcore-plus handler (:meth:`PairCollector.frameReady`)
only file each frame under its
field (:meth:`PairCollector.file`: the processor must stay thin and the relay thread must never
block); a worker thread assembles a complete field into pairs
(:func:`tem_acq.pairs.assemble_field`) and writes them to a pairs store, a field at a time, so
an interrupted run resumes at the first field the store does not hold.

::

    from acquisition_hooks import simulated_microscope
    from acquisition_hooks.pairs import PairPlan, collect_pairs

    with simulated_microscope(dose_rate=2500.0, size=256) as scope:
        plan = PairPlan(fields=6, n_short=2, short_exposure_ms=2.0, long_exposure_ms=400.0)
        collect_pairs(scope, plan, "pairs.ome.zarr")

The same on pymmcore-plus (``collect_pairs`` follows ``scope.stack``)::

    with simulated_microscope(dose_rate=2500.0, size=256, stack="pymmcore-plus") as scope:
        collect_pairs(scope, plan, "pairs.ome.zarr")
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tem_acq.errors import AcquisitionError
from tem_acq.pairs import assemble_field
from tem_acq.pairs.plan import PairPlan as CorePairPlan
from tem_acq.store import PairRecord, PairsMetadata, PairsWriter
from tem_acq.store.metadata import AcquisitionProtocol, Camera, Instrument

from ._engine import abort_acquisition, abort_when
from .session import MicroscopeSession

#: The ``kind`` axis of the events: short frames and (frames of) the long exposure.
SHORT, LONG = 0, 1
_KIND = {"short": SHORT, "long": LONG}


def field_events(plan: CorePairPlan, field: int, x_um: float, y_um: float) -> list[dict[str, Any]]:
    """pycro-manager events of one field of ``plan``, with exposure (ms) and stage position."""
    return [
        {
            "axes": {"field": field, "kind": _KIND[e.kind], "frame": e.frame},
            "exposure": e.exposure_ms,
            "x": float(x_um),
            "y": float(y_um),
        }
        for e in plan.exposures()
    ]


def field_mda_events(plan: CorePairPlan, field: int, x_um: float, y_um: float) -> list[Any]:
    """The same field as ``useq.MDAEvent``s for pymmcore-plus (index keys field, kind, frame)."""
    import useq

    return [
        useq.MDAEvent(index=e["axes"], exposure=e["exposure"], x_pos=e["x"], y_pos=e["y"])
        for e in field_events(plan, field, x_um, y_um)
    ]


class PairPlan(CorePairPlan):
    """The collection plan (:class:`tem_acq.pairs.PairPlan`), written as pycro-manager events.

    Its settings are the core plan's; this class only adds :meth:`events`, the field's
    pycro-manager events (:func:`field_events`), for acquisition scripts. Every function here
    takes either plan.
    """

    def events(self, field: int, x_um: float, y_um: float) -> list[dict[str, Any]]:
        """pycro-manager events of one field, with exposure (ms) and stage position."""
        return field_events(self, field, x_um, y_um)

    def mda_events(self, field: int, x_um: float, y_um: float) -> list[Any]:
        """pymmcore-plus ``useq.MDAEvent``s of one field (:func:`field_mda_events`)."""
        return field_mda_events(self, field, x_um, y_um)


class PairCollector:
    """Files frames by field and writes complete fields as pairs, for either stack.

    On pycro-manager it is the acquisition's image processor and post-hardware hook
    (:meth:`acquisition_kwargs`); on pymmcore-plus the ``output`` handler of
    ``core.mda.run(events, output=collector)`` (:meth:`frameReady`). Both only call
    :meth:`file`.

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
    on_field
        Called with each field number once it is written.
    snap_tags
        pymmcore-plus only: the camera's tags of a snapped frame by its event index (snaps reach
        a handler without them; hardware sequences carry their own), e.g. :class:`SnapTags`.
    """

    def __init__(
        self,
        writer: PairsWriter,
        plan: CorePairPlan,
        *,
        counts_per_electron: float,
        positions_um: list[tuple[float, float]],
        truth: Callable[[Mapping[str, Any]], np.ndarray | None] | None = None,
        on_field: Callable[[int], None] | None = None,
        snap_tags: Callable[[Mapping[str, int]], Mapping[str, str]] | None = None,
    ) -> None:
        self._writer = writer
        self._snap_tags = snap_tags
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
        self._aborted = threading.Event()
        self._last_xy: tuple[float, float] | None = None
        self._worker = threading.Thread(
            target=self._assemble_loop, name="tem-acq pairs", daemon=True
        )
        self._worker.start()

    def file(self, axes: Mapping[str, Any], image: np.ndarray, metadata: Mapping[str, Any]) -> None:
        """File a frame under its field by its ``axes`` (field, kind, frame); queue complete fields.

        Cheap and never blocking: called on the stack's frame thread.
        """
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

    def process(self, image: np.ndarray, metadata: Mapping[str, Any]) -> None:
        """pycro-manager image processor: file the frame by its ``Axes`` tag."""
        self.file(metadata.get("Axes") or {}, image, metadata)
        return None

    def frameReady(self, image: np.ndarray, event: Any, metadata: Mapping[str, Any]) -> None:
        """pymmcore-plus handler: file the frame by its event's index (field, kind, frame).

        The camera's tags (``TEM-FrameId`` and the rest) are the frame's metadata, as on
        pycro-manager.
        """
        tags = dict(metadata.get("camera_metadata") or {})
        if not tags and self._snap_tags is not None:  # snaps lose the camera's tags
            tags = dict(self._snap_tags(event.index))
        tags["Axes"] = dict(event.index)
        self.file(event.index, image, tags)

    def post_hardware_hook(self, event: Any) -> Any:
        """Let the stage settle after a move (sequences share one position). Returns ``event``.

        Once :meth:`abort` was called it returns ``None``, which cancels the event.
        """
        first = event[0] if isinstance(event, list) else event
        xy = (first.get("x"), first.get("y"))
        if xy[0] is not None and xy != self._last_xy:
            self._last_xy = xy
            if self._plan.settle_s > 0:
                self._aborted.wait(self._plan.settle_s)  # a settling stage is no reason to wait
        return None if self._aborted.is_set() else event

    def wait_aborted(self, seconds: float) -> bool:
        """Wait up to ``seconds`` (a settling stage); True when aborted meanwhile."""
        return self._aborted.wait(seconds)

    @property
    def aborted(self) -> bool:
        """True once :meth:`abort` was called."""
        return self._aborted.is_set()

    def abort(self) -> None:
        """Stop collecting (from any thread): later events are cancelled by the hook.

        Fields already complete are still written; a field in progress is dropped, so that a
        resumed collection starts with it. Abort the pycro-manager acquisition too (as
        :func:`collect_pairs` does) to stop a hardware sequence in progress.
        """
        self._aborted.set()

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


class SnapTags:
    """The camera's tags of frames pymmcore-plus snapped, by event index.

    A snapped frame reaches ``frameReady`` handlers without its camera's tags (the core keeps
    them only for sequences). Connected synchronously to ``core.mda.events.frameReady``, this
    reads ``camera_tags()`` on the runner thread right after each snap, before the next one,
    and hands them out by the event's index (:meth:`pop`).
    """

    def __init__(self, core: Any, camera_tags: Callable[[], Mapping[str, str]]) -> None:
        self._signal = core.mda.events.frameReady
        self._camera_tags = camera_tags
        self._tags: dict[tuple[tuple[str, int], ...], dict[str, str]] = {}
        self._lock = threading.Lock()
        self._signal.connect(self._on_frame)

    def _on_frame(self, image: Any, event: Any, metadata: Mapping[str, Any]) -> None:
        if "camera_metadata" not in metadata:
            with self._lock:
                self._tags[tuple(sorted(event.index.items()))] = dict(self._camera_tags())

    def pop(self, index: Mapping[str, int]) -> dict[str, str]:
        """The tags of the snapped frame with this event index (empty when none were taken)."""
        with self._lock:
            return self._tags.pop(tuple(sorted(index.items())), {})

    def close(self) -> None:
        """Stop listening."""
        self._signal.disconnect(self._on_frame)


def collect_pairs(
    scope: MicroscopeSession,
    plan: CorePairPlan,
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    on_field: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> Path:
    """Collect pairs on a simulated microscope session into a pairs store; returns its path.

    The session's stack (``scope.stack``) runs the events: a pycro-manager ``Acquisition``, or
    pymmcore-plus' ``core.mda.run`` with ``useq.MDAEvent``s; both write the same store (its
    protocol's ``backend`` names the stack).

    With ``resume``, an existing store made with the same plan continues at the first field it
    does not hold; fields already written are never acquired again. Setting ``stop`` (from any
    thread: a Ctrl-C handler) aborts the collection within milliseconds: the camera stops, the
    complete fields are written, the field in progress is dropped and the store is closed as
    aborted, so that ``resume`` starts with that field.
    """
    camera = scope.camera
    if camera is None:
        raise AcquisitionError("pair collection needs the simulated TEM camera (camera='tem')")
    settings = scope.recorder_settings()
    frame_shape = settings["frame_shape"]
    field_um = frame_shape[1] * settings["pixel_size_A"] * 1e-4
    positions = plan.positions(field_um)
    metadata = _pairs_metadata(
        settings, plan, camera.config, planned_fields=len(positions), backend=scope.stack
    )
    writer = PairsWriter(out, metadata, frame_shape, truth=True, overwrite=overwrite, resume=resume)
    todo = [f for f in range(len(positions)) if f not in writer.completed_fields]

    def truth_of(md: Mapping[str, Any]) -> np.ndarray | None:
        frame_id = md.get("TEM-FrameId")
        info = camera.frame_info(int(frame_id)) if frame_id is not None else None
        return camera.ground_truth(info) if info is not None else None

    snaps = SnapTags(scope.core, camera.last_frame_tags) if scope.stack == "pymmcore-plus" else None
    collector = PairCollector(
        writer,
        plan,
        counts_per_electron=settings["counts_per_electron"],
        positions_um=positions,
        truth=truth_of,
        on_field=on_field,
        snap_tags=None if snaps is None else snaps.pop,
    )
    completed = False
    try:
        if scope.stack == "pymmcore-plus":
            _acquire_fields_mda(scope, collector, plan, [(f, positions[f]) for f in todo], stop)
        else:
            _acquire_fields(collector, [field_events(plan, f, *positions[f]) for f in todo], stop)
        collector.close()
        completed = not collector.aborted
    finally:
        if not completed:
            try:  # write the fields already assembled; the store stays resumable
                collector.close()
            except AcquisitionError:
                pass
        writer.close(complete=completed, aborted=collector.aborted)
        if snaps is not None:
            snaps.close()
    return Path(out)


def _acquire_fields(
    collector: PairCollector, fields: list[list[dict[str, Any]]], stop: threading.Event | None
) -> None:
    """Acquire each field's events (one ``acquire`` each), aborting when ``stop`` is set.

    The acquisition's end (what its ``with`` block does) stays inside the watch, so that a
    stop while pycro-manager works through the events aborts it.
    """
    from pycromanager import Acquisition

    acq = Acquisition(directory=None, show_display=False, **collector.acquisition_kwargs())

    def abort() -> None:
        collector.abort()
        abort_acquisition(acq)

    with abort_when(stop, abort):
        try:
            for events in fields:
                if collector.aborted:
                    break
                try:
                    acq.acquire(events)
                except Exception:
                    if collector.aborted:  # aborted between the check and the call
                        break
                    raise
        finally:
            acq.mark_finished()
            acq.await_completion()


def _acquire_fields_mda(
    scope: MicroscopeSession,
    collector: PairCollector,
    plan: CorePairPlan,
    fields: list[tuple[int, tuple[float, float]]],
    stop: threading.Event | None,
) -> None:
    """Run each field as one ``core.mda.run`` on pymmcore-plus, aborting when ``stop`` is set.

    The stage moves and settles (``plan.settle_s``, cut short by an abort) before a field's
    events run; the events carry the same position, so the engine does not move it again.
    An abort cancels the running sequence (``core.mda.cancel()``): its field is incomplete and
    dropped.
    """
    core = scope.core

    def abort() -> None:
        collector.abort()
        core.mda.cancel()

    def cancel_if_aborted(*_: Any) -> None:  # an abort just before a run had nothing to cancel
        if collector.aborted:
            core.mda.cancel()

    core.mda.events.sequenceStarted.connect(cancel_if_aborted)
    try:
        with abort_when(stop, abort):
            for field, (x_um, y_um) in fields:
                if collector.aborted:
                    break
                scope.move_stage(x_um, y_um)
                if plan.settle_s > 0 and collector.wait_aborted(plan.settle_s):
                    break
                # a list, so that the engine runs the equal short exposures as one sequence
                core.mda.run(field_mda_events(plan, field, x_um, y_um), output=collector)
    finally:
        core.mda.events.sequenceStarted.disconnect(cancel_if_aborted)


def _pairs_metadata(
    settings: Mapping[str, Any],
    plan: CorePairPlan,
    sim_config: Any,
    *,
    planned_fields: int,
    backend: str = "pycromanager",
) -> PairsMetadata:
    """The pairs store's metadata: the session's instrument and camera, and the plan."""
    return PairsMetadata(
        instrument=Instrument(
            voltage_kV=settings["voltage_kV"], pixel_size_A=settings["pixel_size_A"]
        ),
        camera=Camera(
            name=settings["camera"],
            counts_per_electron=settings["counts_per_electron"],
            detector_kind=settings["detector"],
            detector_model=settings.get("detector_model"),
            binning=settings.get("binning", 1),
        ),
        short_exposure_ms=plan.short_exposure_ms,
        long_exposure_ms=plan.long_exposure_ms,
        long_mode=plan.long_mode,
        n_short=plan.n_short,
        long_order=plan.long_order,
        planned_fields=planned_fields,
        dose_rate_e_per_px_per_s=settings["dose_rate_e_per_px_per_s"],
        protocol=AcquisitionProtocol(
            simulated=True,
            backend=backend,
            settings={
                "plan": plan.model_dump(mode="json"),
                "specimen": sim_config.specimen,
                "detector": sim_config.detector,
                "seed": sim_config.seed,
            },
        ),
        description=settings["description"],
    )
