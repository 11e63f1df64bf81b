"""Acquisition stores: raw plus denoised TEM frames in one OME-Zarr 0.5 store per acquisition.

Write with :class:`AcquisitionWriter`, read with :func:`open_store`; ``tem-acq info STORE``
summarises a store. This package never imports pycro-manager.

Every store kind (this one, and the pairs stores of :mod:`tem_acq.store.pairs`) shares a root
(:mod:`tem_acq.store.root`: the one :func:`store_kind`, schema-version and kind checks), a
metadata header (:class:`StoreHeader`), one event-log reader (a torn last line is a crash's
leftover and is dropped; damage elsewhere is reported); every writer claims its output path
with :func:`tem_acq.outputs.claim_output`, the one overwrite check of every command.

Layout
------
::

    run.zarr/
    ├── zarr.json             bioformats2raw.layout 3 collection; attributes["tem_acq"]:
    │                         AcquisitionMetadata (schema_version, kind="acquisition", ...)
    ├── OME/
    │   ├── zarr.json         "series": ["raw", "denoised"]
    │   └── METADATA.ome.xml  Image ID="Image:raw", "Image:denoised" (napari-ome-zarr reads it)
    ├── raw/                  NGFF image: axes t (second), y, x (angstrom)
    │   ├── zarr.json
    │   └── 0/                (t, y, x) camera dtype
    │       ├── zarr.json     its shape along t is the committed frame count
    │       └── c.0.0.0 ...   one shard file per 16 frames, one chunk per frame (+ its crc32c)
    ├── denoised/             same geometry, float32 electrons per pixel, NaN = no frame
    │   ├── zarr.json
    │   └── 0/
    ├── tem_acq_log.jsonl     per-frame table and events, one JSON document per line
    └── .tem_acq_reserve      64 KiB held back for the error of a full disk (removed at close)

``yaozarrs validate`` passes on the whole store; each image is a plain NGFF image that any
OME-Zarr 0.5 reader can open on its own (zarr-python and tensorstore are checked in the
tests). Chunks are compressed with blosc-lz4 and bit-shuffle by default (1.7x on
integrating-camera counts, 7-8x on sparse counting-camera frames, 1.45x on denoised floats,
over 2.5 GB/s on one core); ``zstd`` and ``none`` are the alternatives.
The log holds a row per frame (``event: frame``, with its
:class:`FrameRecord`), ``denoised`` (with latency and, since schema 1.2, the model that
denoised it), ``skipped`` (with reason), ``quality`` (a live quality estimate of a pair of
frames, on the pair's second frame: schema 1.2), ``error`` and ``closed`` events;
:func:`open_store` turns it into the per-frame table. The OME-XML's sizes are written at
close; before that, and after a crash, ``zarr.json`` is what counts (``tem-acq recover``
writes them then). The time scale is the frames' measured interval
(:mod:`tem_acq.store.timing`). A multi-dimensional acquisition (a useq sequence with time,
positions, z) keeps its frames in acquisition order along t; the header states its axes
(``axes``, schema 1.4), each row the frame's place, and ``open_store(...).hyperstack()`` is the
view by those axes (:mod:`tem_acq.store.axes`).

Damage
------
Every chunk and every shard index carries a crc32c. Readers hand out
:class:`~tem_acq.store.chunks.CheckedArray` (a missing or damaged frame raises a
:class:`~tem_acq.errors.StoreError` naming it); opening checks cheaply that the files the
committed frames need are there and whole at their ends; :func:`tem_acq.store.check.check_store`
(``tem-acq info --check``) verifies every committed frame, and
:func:`tem_acq.store.recover.recover_store` (``tem-acq recover``) brings the metadata in line
with the frames without writing any frame data.

Crash safety
------------
If the writing process dies at any moment (``kill -9``, an exception, a lost power supply on a
disk that honours fsync), the store still opens and reads, and its metadata agrees with the
frames on disk:

- Every frame counted in ``raw/0/zarr.json`` (the array's length along t) is on disk, fsynced,
  and has its row in the per-frame table. Frames are committed one shard at a time (16 frames;
  fewer when 16 frames would exceed 32 MiB) and also when a partly filled shard has waited
  ``flush_interval_s`` (5 s by default, checked as frames arrive) or on ``flush()``. A crash
  therefore loses at most the frames of the last unfinished shard: at most 16.
- The order makes this so: shard files and table rows are written and fsynced first; then
  ``zarr.json`` is replaced by an fsynced temporary file renamed over it, and its directory is
  fsynced. That rename is the commit. A shard that already holds committed frames is only ever
  replaced the same atomic way, so readers never see one half-written.
- Denoised frames (which may arrive late and in any order) become durable shard by shard in the
  same commits; a frame is reported denoised only once its data is durably there. The
  ``denoised`` array may trail ``raw`` by a shard or two until the store is closed; frames it
  does not hold read as NaN.
- A store whose writer did not close it reports ``complete: false`` and still reads. It may
  hold a few empty shard files beyond the array's length (created ahead of time, never read).
- A write that fails (a full disk) raises :class:`~tem_acq.errors.StoreError` naming the frames
  that are safe; nothing committed is touched, the frames not yet written stay in memory, and
  ``flush()`` or ``close()`` writes them once there is space. The error is recorded at once,
  the space reserve released for it when the disk has no room left.
"""

from tem_acq.store.axes import FramePlaces, Hyperstack
from tem_acq.store.metadata import (
    SCHEMA_VERSION,
    AcquisitionAxes,
    AcquisitionMetadata,
    AcquisitionProtocol,
    Camera,
    FrameModel,
    FrameRecord,
    FrameRow,
    Instrument,
    ModelProvenance,
    SoftwareVersions,
    StoreHeader,
    collect_software_versions,
    validate_metadata,
)
from tem_acq.store.pairs import (
    PairRecord,
    PairRow,
    PairsMetadata,
    PairsStore,
    PairsWriter,
    open_pairs,
)
from tem_acq.store.reader import AcquisitionStore, open_store
from tem_acq.store.root import store_kind
from tem_acq.store.writer import MAX_SHARD_FRAMES, AcquisitionWriter

__all__ = [
    "MAX_SHARD_FRAMES",
    "SCHEMA_VERSION",
    "AcquisitionAxes",
    "AcquisitionMetadata",
    "AcquisitionProtocol",
    "AcquisitionStore",
    "AcquisitionWriter",
    "Camera",
    "FrameModel",
    "FramePlaces",
    "FrameRecord",
    "FrameRow",
    "Hyperstack",
    "Instrument",
    "ModelProvenance",
    "PairRecord",
    "PairRow",
    "PairsMetadata",
    "PairsStore",
    "PairsWriter",
    "SoftwareVersions",
    "StoreHeader",
    "collect_software_versions",
    "open_pairs",
    "open_store",
    "store_kind",
    "validate_metadata",
]
