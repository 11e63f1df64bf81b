"""Attach a Python Micro-Manager core to pycro-manager's Python acquisition engine, and detach it.

pycro-manager (1.0.2) finds its Python-backend core through two pieces of global state:
``mmpycorex.launcher._PYMMCORES`` (``Acquisition`` picks the Python backend when it is non-empty)
and the class-level singleton ``Engine.singleton`` (set once, never cleared by
``stop_headless``). Its engine also calls the core with snake_case names and two shims
(``get_tagged_image``, ``pop_next_tagged_image``) that mmpycorex adds to pymmcore cores.

This module does exactly that for any pymmcore-based core (``CMMCore``, ``CMMCorePlus``,
``UniMMCore``), and undoes all of it on exit, so that a process can open and close sessions
many times (tests do) without the stale-singleton failure ("Camera byte depth cannot be zero")
or crashes at interpreter exit. It is private to ``acquisition_hooks``: users call
``simulated_microscope`` or ``attach_core``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from tem_acq.errors import AcquisitionError

log = logging.getLogger(__name__)

#: How long ``pop_next_tagged_image`` waits for a frame before reporting an empty buffer.
#: pycro-manager's engine polls in a tight loop; without this back-off the poll took 98 % of a
#: core and starved the camera, the denoiser and the writer (see docs/design/microscope-stacks.md).
POP_BACKOFF_S = 0.001

_FIRST_CAP = re.compile(r"(.)([A-Z][a-z]+)")
_ALL_CAP = re.compile(r"([a-z0-9])([A-Z])")

_lock = threading.Lock()
_attached: list[Any] = []


def camel_to_snake(name: str) -> str:
    """Convert a camelCase core method name to the snake_case name pycro-manager calls."""
    return _ALL_CAP.sub(r"\1_\2", _FIRST_CAP.sub(r"\1_\2", name)).lower()


class TaggedImage:
    """Pixels plus a dict of string tags, the shape pycro-manager's engine expects from a core."""

    def __init__(self, tags: dict[str, Any] | None, pix: np.ndarray | None) -> None:
        self.tags = tags
        self.pix = pix


class _SnakeCaseMixin:
    """Gives a pymmcore core the snake_case API and the tagged-image shims pycro-manager uses.

    Names are resolved lazily from the class's real camelCase methods (so ``get_xy_stage_device``
    maps to ``getXYStageDevice``, which naive case conversion would get wrong).
    """

    TaggedImage = TaggedImage
    _snake_names: dict[str, str]
    #: Returns extra tags for a snapped frame. Snaps lose the camera's own metadata on their
    #: way through the core (only sequences keep it), so a Python camera can hand them over.
    snap_tags: Callable[[], Mapping[str, str]] | None = None

    def __getattr__(self, name: str) -> Any:
        camel = type(self)._snake_names.get(name)
        if camel is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self, camel)

    def pop_next_tagged_image(self) -> TaggedImage:
        """Pop the oldest frame of a running sequence; raise when none arrived within 1 ms."""
        core: Any = self
        if core.getRemainingImageCount() == 0:
            time.sleep(POP_BACKOFF_S)
            if core.getRemainingImageCount() == 0:
                raise IndexError("circular buffer is empty")
        pix, md = core.popNextImageAndMD()
        return TaggedImage(_tags_as_dict(md), pix)

    def clear_circular_buffer(self) -> None:
        """Empty the core's buffer as pycro-manager asks, keeping the frames still in it.

        pycro-manager clears the buffer whenever it stops a sequence. At a sequence's normal
        end it is empty; after an abort it still holds the frames the camera finished last
        (the one in exposure when the sequence stopped, at least), which would be lost: they
        are kept, in order, for :func:`take_left_frames`.
        """
        core: Any = self
        kept: list[TaggedImage] = self.__dict__.setdefault("_left_frames", [])
        while core.getRemainingImageCount() > 0:
            pix, md = core.popNextImageAndMD()
            kept.append(TaggedImage(_tags_as_dict(md), pix))
        core.clearCircularBuffer()

    def snap_image(self) -> None:
        """Snap a frame, noting it until pycro-manager fetches it with ``get_tagged_image``.

        After an abort pycro-manager never fetches the frame it was snapping; it is then kept
        for :func:`take_left_frames`.
        """
        core: Any = self
        self.__dict__.pop("_left_frames", None)  # a new acquisition: nothing left is its own
        core.snapImage()
        self.__dict__["_unfetched_snap"] = True

    def start_sequence_acquisition(self, *args: Any) -> None:
        """Start a camera sequence, forgetting frames an earlier acquisition left behind."""
        core: Any = self
        self.__dict__.pop("_left_frames", None)
        self.__dict__.pop("_unfetched_snap", None)
        core.startSequenceAcquisition(*args)

    def get_tagged_image(
        self,
        cam_index: int,
        camera: str,
        height: int,
        width: int,
        binning: int | None = None,
        pixel_type: str | None = None,
        roi_x_start: int | None = None,
        roi_y_start: int | None = None,
    ) -> TaggedImage:
        """Return the last snapped frame with the few tags pycro-manager's engine reads."""
        core: Any = self
        self.__dict__.pop("_unfetched_snap", None)
        pix = core.getImage()
        tags: dict[str, Any] = {
            "Camera": camera,
            "Height": height,
            "Width": width,
            "PixelType": pixel_type,
            "CameraChannelIndex": cam_index,
        }
        if binning is not None:
            tags["Binning"] = binning
        if self.snap_tags is not None:
            tags.update(self.snap_tags())
        return TaggedImage(tags, pix)


def _tags_as_dict(md: Any) -> dict[str, Any]:
    if isinstance(md, Mapping):
        return dict(md)
    # pymmcore's SWIG Metadata (plain CMMCore without pymmcore-plus)
    return {key: md.GetSingleTag(key).GetValue() for key in md.GetKeys()}


_snake_classes: dict[type, type] = {}


def snake_case_core_class(core_cls: type) -> type:
    """Return a subclass of ``core_cls`` that pycro-manager's Python engine can drive."""
    cached = _snake_classes.get(core_cls)
    if cached is not None:
        return cached
    names = {
        camel_to_snake(n): n
        for klass in core_cls.__mro__
        for n in vars(klass)
        if not n.startswith("_") and camel_to_snake(n) != n
    }
    cls = type(
        f"{core_cls.__name__}SnakeCase", (_SnakeCaseMixin, core_cls), {"_snake_names": names}
    )
    _snake_classes[core_cls] = cls
    return cls


def _engine_class() -> Any:
    from pycromanager.acquisition.acq_eng_py.internal.engine import Engine

    return Engine


@contextmanager
def attach_core(core: Any) -> Iterator[Any]:
    """Make ``core`` the core of pycro-manager's Python backend for the ``with`` block.

    ``core`` must be an instance of a class made by :func:`snake_case_core_class`. Any stale
    engine left by an earlier session in this process is shut down first; on exit the engine
    is shut down and every global that pycro-manager reads is restored, also after an exception.

    Raises
    ------
    AcquisitionError
        If another core is attached (by this function or by ``pycromanager.start_headless``).
    """
    from mmpycorex import launcher

    if not isinstance(core, _SnakeCaseMixin):
        raise TypeError("attach_core needs a core made with snake_case_core_class(...)()")
    engine_cls = _engine_class()
    with _lock:
        if _attached or launcher._PYMMCORES:
            raise AcquisitionError(
                "another Micro-Manager core is already active in this process (a simulated "
                "microscope session or pycromanager.start_headless); close it first "
                "(leave its `with` block or call pycromanager.stop_headless())"
            )
        stale = engine_cls.get_instance()
        if stale is not None:
            # left behind by stop_headless(), which never clears the singleton
            stale.shutdown()
            del engine_cls.singleton
        engine_cls(core)
        launcher._PYMMCORES.append(core)
        _attached.append(core)
    try:
        yield core
    finally:
        with _lock:
            engine = engine_cls.get_instance()
            if engine is not None:
                engine.shutdown()
                del engine_cls.singleton
            if core in launcher._PYMMCORES:
                launcher._PYMMCORES.remove(core)
            _attached.remove(core)


def attached_core() -> Any | None:
    """The core attached by :func:`attach_core`, or None outside a session."""
    return _attached[0] if _attached else None


def take_left_frames() -> list[TaggedImage]:
    """The frames an aborted acquisition left in the attached core, oldest first.

    Those a stopped sequence left in the buffer (see ``clear_circular_buffer``) and a snap
    never fetched (see ``snap_image``). Each is returned once; none outside a session or when
    nothing was cut short.
    """
    core = attached_core()
    if core is None:
        return []
    frames: list[TaggedImage] = core.__dict__.pop("_left_frames", [])
    if core.__dict__.pop("_unfetched_snap", False):
        tags = {} if core.snap_tags is None else dict(core.snap_tags())
        frames.append(TaggedImage(tags, core.getImage()))
    return frames


def abort_acquisition(acquisition: Any) -> None:
    """Abort a running ``pycromanager.Acquisition`` from any thread, so its ``with`` block ends.

    ``abort()`` cancels the pending events; the engine notices within a frame, stops the camera
    sequence and clears the core's buffer (frames already handed to the image processor are
    still processed). ``abort()`` alone leaves pycro-manager's event thread waiting for more
    events, so that ``await_completion()`` would hang: ``mark_finished()`` ends it (after the
    abort, which would otherwise discard that signal). An acquisition that has already
    finished is left alone.
    """
    try:
        acquisition.abort()
    except AttributeError:  # finished: pycro-manager has dropped its engine-side acquisition
        return
    acquisition.mark_finished()


@contextmanager
def abort_when(stop: threading.Event | None, abort: Callable[[], None]) -> Iterator[None]:
    """Call ``abort`` once, on a helper thread, if ``stop`` is set while the block runs.

    ``stop`` is set from anywhere (a Ctrl-C handler, a GUI); ``abort`` runs within 20 ms, on
    a thread of its own, so that a signal handler never has to take the locks of the code it
    interrupted. ``stop=None`` watches nothing.
    """
    if stop is None:
        yield
        return
    over = threading.Event()

    def watch() -> None:
        while not over.is_set():
            if stop.wait(0.02):
                try:
                    abort()
                except Exception:  # nothing to raise into: the block's own checks report
                    log.exception("aborting the acquisition failed")
                return

    watcher = threading.Thread(target=watch, name="tem-acq abort", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        over.set()
        watcher.join()
