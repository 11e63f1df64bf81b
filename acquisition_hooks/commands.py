"""``tem-acq acquire`` and ``collect-pairs``: real pycro-manager acquisitions, recorded live.

The hook layer contributes these commands to ``tem-acq`` through the ``tem_acq.commands``
entry points (pyproject.toml); pycro-manager is imported only when one runs, so the core
package never imports it.

Ctrl-C stops the beam, not the bookkeeping: while a command acquires, the first SIGINT aborts
the acquisition within milliseconds (the camera stops, pending events are cancelled), every
frame already handed over is written and the store is closed as ``aborted``; the command
then exits with code 130. A second Ctrl-C interrupts that closing too (the store stays
crash-safe: what was committed reads).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from tem_acq.cli.command import (
    COUNTS_PER_ELECTRON,
    DEVICE,
    JSON,
    MODEL,
    OVERWRITE,
    RESUME,
    SEED,
    Command,
    Option,
    keywords,
    require_finite,
)
from tem_acq.errors import AcquisitionError, ConfigError
from tem_acq.outputs import claim_output
from tem_acq.schema import as_model

#: The store a command creates.
NEW_STORE = Option(("--out",), {"required": True, "type": Path})
#: Run on the simulated TEM instead of the Micro-Manager that pycro-manager finds.
SIMULATED = Option(("--simulated",), {"action": "store_true", "help": "use the simulated TEM"})
#: The simulated camera's sensor, detector and specimen.
SENSOR_SIZE = Option(
    ("--size",),
    {
        "type": int,
        "default": 512,
        "help": "sensor size in pixels, 1 to 4096 (a 4096x4096 simulated camera takes about "
        "1.1 GB of memory)",
    },
)
DETECTOR = Option(("--detector",), {"choices": ("counting", "integrating"), "default": "counting"})
SPECIMEN = Option(
    ("--specimen",), {"choices": ("nanoparticles", "atomic"), "default": "nanoparticles"}
)
#: Which Python microscope stack runs the acquisition (``args.stack``).
STACK = Option(
    ("--stack",),
    {
        "choices": ("pycromanager", "pymmcore-plus"),
        "default": "pycromanager",
        "help": "the microscope stack that runs the acquisition: pycro-manager's Acquisition, "
        "or pymmcore-plus' MDA engine with a useq sequence (default: pycromanager)",
    },
)


#: Instrument options (argparse dests) and the simulation settings they set with --simulated.
_SIMULATED_INSTRUMENT = {
    "pixel_size_A": "pixel_size_A",
    "counts_per_electron": "counts_per_electron",
    "voltage_kV": "voltage_kv",
}
#: The accelerating voltage recorded for a real microscope when --voltage-kV is not given.
DEFAULT_VOLTAGE_KV = 200.0


def acquire_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``acquire`` arguments."""
    NEW_STORE.add(parser, help="new store path (*.ome.zarr)")
    SIMULATED.add(parser)
    STACK.add(parser)
    parser.add_argument("--frames", type=int, default=100, help="number of frames (default 100)")
    parser.add_argument("--exposure-ms", type=float, default=2.0, help="exposure per frame (ms)")
    MODEL.add(parser, default="none", help="model package name or path, or 'none'")
    DEVICE.add(parser, help="auto, cpu or cuda (for --model)")
    parser.add_argument(
        "--policy",
        choices=("skip", "block"),
        default="skip",
        help="when the denoiser falls behind: skip frames (default) or make the camera wait",
    )
    parser.add_argument(
        "--quality-every-s",
        type=float,
        default=5.0,
        metavar="S",
        help="with --model: estimate the denoising quality (no ground truth needed) on two "
        "consecutive frames every S seconds while the stage is still, into the store's rows "
        "(default 5; 0 turns it off)",
    )
    parser.add_argument(
        "--adapt-out",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --model: adapt the model to this specimen during the acquisition (a "
        "separate training process on raw frames of a still stage; candidate packages go to "
        "this new folder) and swap the adapted model in only when it beats the live model on "
        "frames held back from its training (off by default)",
    )
    parser.add_argument(
        "--adapt-steps",
        type=int,
        default=None,
        metavar="N",
        help="with --adapt-out: training steps of each adaptation round (default 300)",
    )
    OVERWRITE.add(parser)
    JSON.add(parser, help="print the run summary as JSON")
    add_simulation_arguments(parser)
    real = parser.add_argument_group(
        "the instrument (a real microscope's calibration; with --simulated, the simulation's)"
    )
    real.add_argument(
        "--pixel-size-A",
        type=float,
        default=None,
        help="pixel size in angstrom (default: Micro-Manager's pixel size calibration, or the "
        "simulated specimen's)",
    )
    COUNTS_PER_ELECTRON.add(
        real, help="the camera's counts per electron (needed for a real camera)"
    )
    real.add_argument(
        "--voltage-kV", type=float, default=None, help=f"default {DEFAULT_VOLTAGE_KV:g}"
    )


def add_simulation_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulated microscope's options (used with --simulated)."""
    sim = parser.add_argument_group("simulated microscope (--simulated)")
    SENSOR_SIZE.add(sim)
    sim.add_argument(
        "--dose-rate", type=float, default=2500.0, help="electrons per pixel per second"
    )
    DETECTOR.add(sim)
    SPECIMEN.add(sim)
    SEED.add(sim, default=0, help="specimen and noise seed")
    sim.add_argument("--drift", type=float, default=0.0, help="stage drift along x (px/s)")


def simulation_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The :func:`~acquisition_hooks.simulated_microscope` settings of the simulation options.

    The instrument options a command has (``acquire``: ``--pixel-size-A``,
    ``--counts-per-electron``, ``--voltage-kV``) are applied to the simulation when given,
    never ignored: a bad value is the simulation's one-line error.
    """
    settings = keywords(args, "dose_rate", "detector", "specimen", "seed", "size")
    instrument = {
        field: getattr(args, option)
        for option, field in _SIMULATED_INSTRUMENT.items()
        if getattr(args, option, None) is not None
    }
    return {**settings, "drift_px_per_s": args.drift, **instrument}


def require_frames(args: argparse.Namespace) -> None:
    """Check ``--frames``: an acquisition records at least one frame."""
    if args.frames < 1:
        raise ConfigError(f"--frames must be at least 1 (got {args.frames})")


#: The ``collect-pairs`` options that are :class:`~acquisition_hooks.pairs.PairPlan` fields.
PLAN_OPTIONS = (
    "fields",
    "n_short",
    "short_exposure_ms",
    "long_exposure_ms",
    "long_mode",
    "long_order",
    "settle_s",
    "max_shift_px",
)


def collect_pairs_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``collect-pairs`` arguments."""
    NEW_STORE.add(parser, help="pairs store path (*.ome.zarr)")
    SIMULATED.add(parser)
    parser.add_argument("--fields", type=int, default=6, help="number of fields (default 6)")
    parser.add_argument("--n-short", type=int, default=2, help="short exposures per field")
    parser.add_argument("--short-exposure-ms", type=float, default=2.0)
    parser.add_argument("--long-exposure-ms", type=float, default=400.0)
    parser.add_argument(
        "--long-mode",
        choices=("exposure", "sum"),
        default="exposure",
        help="one long exposure, or the sum of short frames (long/short of them)",
    )
    parser.add_argument("--long-order", choices=("after", "before"), default="after")
    parser.add_argument("--settle-s", type=float, default=0.0, help="wait after each stage move")
    parser.add_argument("--max-shift-px", type=float, default=2.0, help="flag pairs drifting more")
    OVERWRITE.add(parser)
    RESUME.add(parser, help="continue an interrupted collection")
    STACK.add(parser)
    add_simulation_arguments(parser)


#: Exit code of a command stopped by Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED = 130


@contextmanager
def ctrl_c_stops() -> Iterator[threading.Event]:
    """While the block runs, Ctrl-C (SIGINT) sets the yielded event instead of raising.

    The first SIGINT only sets the event (the acquisition code watching it aborts); a second
    one raises ``KeyboardInterrupt`` as usual. Outside the main thread, where no signal
    handler can be installed, the event is never set by a signal.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def on_sigint(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield stop
    finally:  # None: a handler installed outside Python, which cannot be put back
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


def run_collect_pairs(args: argparse.Namespace) -> int:
    """Collect pairs as ``args`` say; returns the exit code."""
    from acquisition_hooks.pairs import collect_pairs
    from acquisition_hooks.session import simulated_microscope

    if not args.simulated:
        raise AcquisitionError(
            "collect-pairs drives the stage and camera itself; on a real microscope use "
            "acquisition_hooks.pairs.PairCollector from your acquisition script (see the "
            "README), or pass --simulated"
        )
    plan = _pair_plan(args)
    if args.resume and args.out.exists():
        done = _finished_pairs(args.out)
        if done is not None:
            print(f"nothing to do: {args.out} is complete ({done}); --resume adds nothing")
            return 0
    if not (args.resume and args.out.exists()):  # before the microscope starts
        claim_output(
            args.out,
            overwrite=args.overwrite,
            kind="pairs store",
            parent_must_exist=True,
            alternatives="--resume (resume=True) to continue it",
        )
    with (
        ctrl_c_stops() as stop,
        simulated_microscope(
            **simulation_settings(args), exposure_ms=args.short_exposure_ms, stack=args.stack
        ) as scope,
        _field_progress(args.fields) as on_field,
    ):
        collect_pairs(
            scope,
            plan,
            args.out,
            overwrite=args.overwrite,
            resume=args.resume,
            on_field=on_field,
            stop=stop,
        )
    from tem_acq.store import open_pairs

    info = open_pairs(args.out).info()
    print(f"collected {info['pairs']} pairs from {info['fields']} fields into {args.out}")
    if stop.is_set():
        print(
            f"tem-acq collect-pairs: stopped by Ctrl-C; {args.out} is marked aborted and holds "
            "every complete field (the field in progress was dropped): continue with --resume",
            file=sys.stderr,
        )
        return INTERRUPTED
    return 0


def _pair_plan(args: argparse.Namespace) -> Any:
    """The :class:`~acquisition_hooks.pairs.PairPlan` the options describe, checked."""
    from acquisition_hooks.pairs import PairPlan

    plan = as_model(
        PairPlan,
        keywords(args, *PLAN_OPTIONS),
        "invalid collection plan",
        ConfigError,
        whole="plan",
    )
    require_finite(args, "short_exposure_ms", "long_exposure_ms", "settle_s")
    return plan


@contextmanager
def _field_progress(total: int) -> Iterator[Any]:
    """Progress over fields: a bar on a terminal, plain lines every 10 s otherwise."""
    from tem_acq.progress import Progress

    with Progress("collecting pairs", total, unit="fields") as bar:
        yield lambda field: bar.advance()


def _finished_pairs(path: Path) -> str | None:
    """What a complete pairs store at ``path`` holds (None: not one, or not complete)."""
    from tem_acq.errors import StoreError
    from tem_acq.store import open_pairs

    try:
        info = open_pairs(path).info()
    except StoreError:
        return None  # collect_pairs says what is wrong with it
    if not info["complete"]:
        return None
    return f"{info['pairs']} pairs from {info['fields']} fields"


def run_acquire(args: argparse.Namespace) -> int:
    """Run the acquisition described by ``args``; returns the exit code."""
    require_frames(args)
    if not args.exposure_ms > 0:
        raise ConfigError(f"--exposure-ms must be > 0 (got {args.exposure_ms})")
    require_finite(args, "exposure_ms", "quality_every_s")
    if not args.quality_every_s >= 0:
        raise ConfigError(
            f"--quality-every-s must be >= 0 s (0 turns it off), got {args.quality_every_s}"
        )
    model = _model_before_the_microscope(args)
    adapt = _adapt_settings(args, model)
    with _microscope(args) as (settings, scope):
        recorder, run = _recorder_for_stack(
            args,
            scope,
            exposure_ms=args.exposure_ms,
            model=model,
            device=args.device,
            policy=args.policy,
            overwrite=args.overwrite,
            quality_every_s=args.quality_every_s,
            adapt=adapt,
            **settings,
        )
        with ctrl_c_stops() as stop, recorder, _progress(recorder, args.frames):
            run(stop)
    summary = recorder.summary
    if args.json:
        print(
            json.dumps(
                {"store": str(args.out), "aborted": recorder.aborted, **summary.as_dict()},
                indent=2,
            )
        )
    else:
        print(_describe(args.out, summary))
    if stop.is_set():
        print(interrupted_message("acquire", args.out, recorder.aborted), file=sys.stderr)
        return INTERRUPTED
    return 0


def _recorder_for_stack(
    args: argparse.Namespace, scope: Any, **settings: Any
) -> tuple[Any, Callable[[threading.Event], None]]:
    """The recorder of ``args.stack`` and how to run ``args.frames`` frames through it.

    pycro-manager: a :class:`~acquisition_hooks.recorder.LiveRecorder` and an
    ``Acquisition`` of time events; pymmcore-plus: an
    :class:`~acquisition_hooks.mda.MDARecorder` and ``core.mda.run`` of a useq time series
    (both as fast as the camera goes).
    """
    if args.stack == "pymmcore-plus":
        from acquisition_hooks.mda import MDARecorder, run_sequence, time_series

        camera = getattr(scope.camera, "last_frame_tags", None)
        mda = MDARecorder(args.out, core=scope.core, camera_tags=camera, **settings)
        sequence = time_series(args.frames)
        return mda, lambda stop: run_sequence(sequence, mda, stop)
    from acquisition_hooks.recorder import LiveRecorder

    live = LiveRecorder(args.out, **settings)
    events = [{"axes": {"time": i}, "exposure": args.exposure_ms} for i in range(args.frames)]
    return live, lambda stop: run_events(events, live, stop)


def _model_before_the_microscope(args: argparse.Namespace) -> Any:
    """Load ``--model`` and claim ``--out`` (not the package's folder) before anything starts.

    A wrong model or output is one line before the microscope and camera are touched.
    Returns the loaded denoiser, or None for ``--model none``.
    """
    from tem_acq.denoise import load_model
    from tem_acq.denoise.package import package_folder

    model = None if args.model.lower() == "none" else args.model
    inputs = [package_folder(model)] if model is not None else []
    claim_output(args.out, overwrite=args.overwrite, parent_must_exist=True, inputs=inputs)
    return None if model is None else load_model(model, device=args.device)


def _adapt_settings(args: argparse.Namespace, model: Any) -> dict[str, Any] | None:
    """``--adapt-out`` and ``--adapt-steps`` as ``LiveRecorder(adapt=...)``; None when off."""
    if args.adapt_out is None:
        if args.adapt_steps is not None:
            raise ConfigError("--adapt-steps needs --adapt-out DIR (where adapted models go)")
        return None
    if model is None:
        raise ConfigError("--adapt-out needs --model (the model to adapt)")
    if args.adapt_steps is not None and args.adapt_steps < 1:
        raise ConfigError(f"--adapt-steps must be >= 1, got {args.adapt_steps}")
    settings: dict[str, Any] = {"out": args.adapt_out}
    if args.adapt_steps is not None:
        settings["max_steps"] = args.adapt_steps
    return settings


def interrupted_message(command: str, store: Path, aborted: bool) -> str:
    """The line a command stopped by Ctrl-C ends with."""
    if not aborted:  # pressed after the last frame: nothing was cut short
        return f"tem-acq {command}: Ctrl-C after the acquisition ended; {store} is complete"
    return (
        f"tem-acq {command}: stopped by Ctrl-C; {store} holds every frame recorded until then "
        "and is marked aborted"
    )


def run_events(
    events: list[dict[str, Any]], recorder: Any, stop: threading.Event | None = None
) -> None:
    """Run these acquisition events through pycro-manager, recorded by ``recorder``.

    Setting ``stop`` (Ctrl-C: :func:`ctrl_c_stops`) aborts the acquisition through
    ``recorder.abort``. The acquisition's end (what its ``with`` block does) stays inside the
    watch, so that a stop while pycro-manager works through the events aborts it.
    """
    from pycromanager import Acquisition

    from acquisition_hooks._engine import abort_when

    # directory=None with a processor that returns nothing: pycro-manager keeps no copy, the
    # recorder's store holds every frame
    hooks = recorder.acquisition_kwargs()
    acq = Acquisition(directory=None, name="tem-acq", show_display=False, **hooks)
    with abort_when(stop, lambda: recorder.abort(acq)):
        try:
            if stop is None or not stop.is_set():
                try:
                    acq.acquire(events)
                except Exception:
                    if not recorder.aborted:  # else: aborted as the events went in
                        raise
        finally:
            acq.mark_finished()
            acq.await_completion()


@contextmanager
def _microscope(args: argparse.Namespace) -> Iterator[tuple[dict[str, Any], Any]]:
    """Yield the recorder's instrument settings and the session (None: a real microscope)."""
    if args.simulated:
        from acquisition_hooks.session import simulated_microscope

        with simulated_microscope(
            **simulation_settings(args), exposure_ms=args.exposure_ms, stack=args.stack
        ) as scope:
            yield scope.recorder_settings(), scope
        return
    if args.stack == "pymmcore-plus":
        raise AcquisitionError(
            "tem-acq acquire --stack pymmcore-plus runs on the simulated microscope only "
            "(--simulated); on your microscope, pass acquisition_hooks.mda.MDARecorder as "
            "output= to your CMMCorePlus's core.mda.run (see the README)"
        )
    yield _real_microscope_settings(args), None


def _real_microscope_settings(args: argparse.Namespace) -> dict[str, Any]:
    from pyjavaz import DEFAULT_BRIDGE_PORT

    if not _listening(DEFAULT_BRIDGE_PORT):  # pyjavaz's thread would print a traceback
        raise AcquisitionError(
            "no Micro-Manager found: start Micro-Manager with its pycro-manager server "
            f"(Tools > Options > Run pycro-manager server on port {DEFAULT_BRIDGE_PORT}), or "
            f"use --simulated to run on the simulated microscope (nothing listens on port "
            f"{DEFAULT_BRIDGE_PORT})"
        )
    try:
        from pycromanager import Core

        core = Core()
        pixel_um = float(core.get_pixel_size_um())
        camera = str(core.get_camera_device())
        frame_shape = (int(core.get_image_height()), int(core.get_image_width()))
    except Exception as exc:
        raise AcquisitionError(
            "no Micro-Manager found: start Micro-Manager with its pycro-manager server "
            "(Tools > Options > Run pycro-manager server on port 4827), or use --simulated "
            f"to run on the simulated microscope ({exc})"
        ) from None
    pixel_size_A = args.pixel_size_A if args.pixel_size_A is not None else pixel_um * 1e4
    if args.counts_per_electron is None:
        raise AcquisitionError(
            "--counts-per-electron is needed for a real camera (the camera's conversion "
            "factor, e.g. 44 for a Gatan OneView in counting-free linear mode)"
        )
    return {
        "pixel_size_A": pixel_size_A,
        "counts_per_electron": args.counts_per_electron,
        "voltage_kV": DEFAULT_VOLTAGE_KV if args.voltage_kV is None else args.voltage_kV,
        "camera": camera,
        "frame_shape": frame_shape,
    }


def _listening(port: int) -> bool:
    """Whether something accepts connections on ``port`` of this machine (within 1 s)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


@contextmanager
def _progress(recorder: Any, total: int) -> Iterator[None]:
    """Live frames / fps / queue display on a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        with nullcontext():
            yield
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    done = threading.Event()
    columns = (
        TextColumn("[bold]acquiring"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} frames"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("acquire", total=total, status="")

        def refresh() -> None:
            start = time.perf_counter()
            while not done.wait(0.25):
                s = recorder.summary
                pending = recorder.pending_frames
                fps = s.frames / max(time.perf_counter() - start, 1e-9)
                bar.update(
                    task,
                    completed=s.frames,
                    status=f"{fps:5.1f} fps  denoised {s.denoised}  skipped {s.skipped}  "
                    f"queue {pending}",
                )

        thread = threading.Thread(target=refresh, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


def _describe(path: Path, summary: Any) -> str:
    lines = [
        f"recorded {summary.frames} frames to {path} in {summary.elapsed_s:.1f} s "
        f"({summary.fps:.1f} fps)",
    ]
    if summary.denoised or summary.skipped:
        lat = (
            f"latency p50 {summary.latency_ms_p50:.1f} ms, p95 {summary.latency_ms_p95:.1f} ms"
            if summary.latency_ms_p50 is not None
            else "no latency measured"
        )
        lines.append(f"denoised {summary.denoised}, skipped {summary.skipped}; {lat}")
    lines += _describe_quality(summary.quality)
    lines += _describe_adaptation(summary.adaptation)
    for error in summary.errors:
        lines.append(f"error recorded in the store: {error}")
    return "\n".join(lines)


def _describe_quality(quality: dict[str, Any] | None) -> list[str]:
    """The live quality estimate's lines of the run summary (none when it was off)."""
    if quality is None:
        return []
    skipped = quality["skipped_busy"] + quality["skipped_stage"]
    lines = [
        f"quality estimates {quality['estimates']} ({quality['untrusted']} not trusted), "
        f"{skipped} skipped ({quality['skipped_stage']} stage moved, "
        f"{quality['skipped_busy']} busy); rows in the store"
    ]
    latest = quality.get("latest")
    if latest and latest.get("trusted"):
        psnr = latest["psnr_db"]
        gain = latest.get("gain_db") or {}

        def db(value: Any) -> str:
            return "n/a" if value is None else f"{value:.1f} dB"

        lines.append(
            f"latest (frame {latest['frame']}): PSNR raw {db(psnr.get('raw'))}, best Gaussian "
            f"{db(psnr.get('gaussian'))}, model {db(psnr.get('model'))}; model - Gaussian "
            f"{db(gain.get('db'))}"
        )
    if quality.get("warning"):
        lines.append(f"warning: {quality['warning']}")
    return lines


def _describe_adaptation(adaptation: dict[str, Any] | None) -> list[str]:
    """The live adaptation's lines of the run summary (none when it was off)."""
    if adaptation is None:
        return []
    lines = [
        f"adaptation: {adaptation['frames_fed']} frames fed "
        f"({adaptation['frames_dropped']} dropped for adaptation, none for recording), "
        f"{adaptation['candidates']} candidate(s), {len(adaptation['swaps'])} swapped in, "
        f"{adaptation['refused']} refused; candidates in {adaptation['out']}"
    ]
    for done in adaptation["rounds"]:
        gain = done.get("gain_over_base_db") or {}
        ci = gain.get("ci") or [None, None]
        text = (
            "n/a"
            if gain.get("db") is None or None in ci
            else f"{gain['db']:+.2f} dB [{ci[0]:.2f}, {ci[1]:.2f}]"
        )
        what = "swapped in" if done.get("swapped") else "kept the live model"
        if "improved" not in done:
            what = "stopped at the end of the acquisition before its result"
        elif done.get("error"):
            what = f"failed: {done['error']}"
        lines.append(f"  round {done['round']}: gain over the live model {text}; {what}")
    return lines


def live_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``live`` arguments."""
    SIMULATED.add(parser)
    STACK.add(parser)
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="how long the live view runs (default 10)"
    )
    parser.add_argument("--exposure-ms", type=float, default=20.0, help="exposure per frame (ms)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="record every frame to this new store (*.ome.zarr); without it nothing is written",
    )
    MODEL.add(parser, default="none", help="model package name or path, or 'none'")
    DEVICE.add(parser, help="auto, cpu or cuda (for --model)")
    OVERWRITE.add(parser)
    add_simulation_arguments(parser)


def run_live(args: argparse.Namespace) -> int:
    """Run the denoised live view as ``args`` say; returns the exit code."""
    from acquisition_hooks.live_view import LiveViewRecorder, live_view
    from acquisition_hooks.session import simulated_microscope
    from tem_acq.denoise import load_model
    from tem_acq.denoise.package import package_folder

    if not args.simulated:
        raise AcquisitionError(
            "tem-acq live runs on the simulated TEM (--simulated); on a real microscope call "
            "acquisition_hooks.live_view.live_view(core, ...) from your script (see the README)"
        )
    require_finite(args, "seconds", "exposure_ms")
    if not (args.seconds > 0 and args.exposure_ms > 0):
        raise ConfigError("--seconds and --exposure-ms must be > 0")
    model = None if args.model.lower() == "none" else args.model
    if args.out is not None:  # never inside the model's package
        inputs = [] if model is None else [package_folder(model)]
        claim_output(args.out, overwrite=args.overwrite, parent_must_exist=True, inputs=inputs)
    denoiser = None if model is None else load_model(model, device=args.device)
    with (
        ctrl_c_stops() as stop,
        simulated_microscope(
            **simulation_settings(args), exposure_ms=args.exposure_ms, stack=args.stack
        ) as scope,
    ):
        recorder = None
        if args.out is not None:
            recorder = LiveViewRecorder(
                args.out,
                exposure_ms=args.exposure_ms,
                model=denoiser,
                device=args.device,
                overwrite=args.overwrite,
                quality_every_s=None,
                **scope.recorder_settings(),
            )
        with (
            recorder if recorder is not None else nullcontext(),
            live_view(scope, recorder=recorder, model=denoiser, device=args.device) as view,
        ):
            _watch_live(view, recorder, args.seconds, stop)
    s = view.stats
    denoised = recorder.summary.denoised if recorder is not None else s.denoised
    print(
        f"live view {s.elapsed_s:.1f} s on {args.stack}: {s.seen} frames seen, {denoised} "
        f"denoised, {s.recorded} recorded ({s.fps:.1f} fps)"
        + (f" into {args.out}" if args.out is not None else "")
    )
    return INTERRUPTED if stop.is_set() else 0


def _watch_live(view: Any, recorder: Any, seconds: float, stop: threading.Event) -> None:
    """Report the live view's counts while it runs ``seconds`` (or until ``stop``)."""
    from tem_acq.progress import Progress

    t0 = time.perf_counter()
    with Progress("live view", max(1, round(seconds)), unit="s") as progress:
        while not stop.wait(0.2) and (elapsed := time.perf_counter() - t0) < seconds:
            s = view.stats
            denoised = recorder.summary.denoised if recorder is not None else s.denoised
            progress.update(
                int(elapsed),
                seen=s.seen,
                denoised=denoised,
                recorded=s.recorded,
                fps=f"{s.seen / elapsed:.1f}" if elapsed > 0 else "0",
            )
        progress.update(progress.total, seen=view.stats.seen, recorded=view.stats.recorded)


LIVE = Command(
    "live",
    help="the live view (continuous acquisition) denoised, recording or not",
    description=(
        "Run the camera's live view (Micro-Manager's continuous sequence acquisition) on "
        "either stack and denoise it: without --out only the newest frame is denoised and "
        "nothing is written; with --out every frame is recorded (and denoised by the "
        "recorder). Prints frames seen, denoised, recorded and the frame rate."
    ),
    arguments=live_arguments,
    run=run_live,
    rank=115,
)

ACQUIRE = Command(
    "acquire",
    help="run an acquisition (pycro-manager or pymmcore-plus) and record raw (+ denoised) "
    "frames to OME-Zarr",
    description=(
        "Run a real pycro-manager acquisition (or, with --stack pymmcore-plus, a useq time "
        "series through pymmcore-plus' MDA engine) and record every raw frame to an OME-Zarr "
        "store, denoising live when a model is given. --simulated runs it on the simulated "
        "TEM (no microscope needed); without it, the Micro-Manager that pycro-manager finds "
        "(a running Micro-Manager with its pycro-manager server) is used."
    ),
    arguments=acquire_arguments,
    run=run_acquire,
    rank=100,
)

COLLECT_PAIRS = Command(
    "collect-pairs",
    help="collect short/long exposure pairs over many fields for training",
    description=(
        "For each field: K short exposures and one long exposure (or the sum of M short "
        "frames), through real pycro-manager events or pymmcore-plus useq events (--stack), "
        "written to a pairs store with registration shifts and quality flags."
        " Resumable with --resume."
    ),
    arguments=collect_pairs_arguments,
    run=run_collect_pairs,
    rank=110,
)
