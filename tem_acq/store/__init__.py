"""Acquisition stores: raw plus denoised TEM frames in one OME-Zarr 0.5 store per acquisition.

Write with :class:`AcquisitionWriter`, read with :func:`open_store`; ``tem-acq info STORE``
summarises a store. This package never imports pycro-manager.

Layout
------
::

    run.zarr/
    ├── zarr.json             bioformats2raw.layout 3 collection; attributes["tem_acq"]:
    │                         AcquisitionMetadata (schema_version, kind="acquisition", ...)
    ├── OME/
    │   ├── zarr.json         "series": ["raw", "denoised"]
    │   └── METADATA.ome.xml  Image Name="raw", Image Name="denoised" (for napari-ome-zarr)
    ├── raw/                  NGFF image: axes t (second), y, x (angstrom)
    │   ├── zarr.json
    │   └── 0/                (t, y, x) camera dtype; chunk 1 frame, shard <= 16 frames
    ├── denoised/             same geometry, float32 electrons per pixel, NaN = not denoised
    │   ├── zarr.json
    │   └── 0/
    └── tem_acq_log.jsonl     per-frame table and events, one JSON document per line

Each image opens on its own in napari, ndv, zarr, xarray or tensorstore; ``yaozarrs validate``
passes on the whole store. Raw chunks are blosc-zstd (level 1, bit-shuffle); denoised chunks are
uncompressed by default.

Crash safety
------------
After the writing process dies at any moment (``kill -9``, power loss on a disk that honours
fsync), the store opens and reads, and its metadata agrees with the frames on disk:

- Every frame counted in ``raw/0/zarr.json`` (the array's length along t) is on disk, fsynced,
  with its row in the per-frame table. Frames are committed a shard at a time (16 frames, fewer
  for frames over 2 MiB) and whenever a partly filled shard has waited ``flush_interval_s``
  (5 s by default, checked as frames arrive), so a crash loses at most the frames of the last
  unfinished shard: at most 16.
- A shard is written to a temporary file, fsynced and renamed into place; the table rows are
  appended to ``tem_acq_log.jsonl`` and fsynced; then ``zarr.json`` is replaced the same atomic
  way with the new length. That rename is the commit: nothing a reader sees ever points at
  data that is not durably there, and a rewritten shard is never seen half-written.
- Denoised frames become durable shard by shard as well (frames may arrive late and out of
  order); a frame is reported denoised only after its data is on disk. ``denoised`` may be
  shorter than ``raw`` after a crash; its frames that are not written read as NaN.
- A store whose writer did not close it reports ``complete: false`` and still reads. A write
  that fails (a full disk) raises :class:`~tem_acq.errors.StoreError` naming the frames that
  are safe; nothing committed before is touched and the frames not yet written stay in memory
  for another try.
"""

from tem_acq.store.metadata import (
    SCHEMA_VERSION,
    AcquisitionMetadata,
    AcquisitionProtocol,
    Camera,
    FrameRecord,
    FrameRow,
    Instrument,
    ModelProvenance,
    SoftwareVersions,
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
    store_kind,
)
from tem_acq.store.reader import AcquisitionStore, open_store
from tem_acq.store.writer import MAX_SHARD_FRAMES, AcquisitionWriter

__all__ = [
    "MAX_SHARD_FRAMES",
    "SCHEMA_VERSION",
    "AcquisitionMetadata",
    "AcquisitionProtocol",
    "AcquisitionStore",
    "AcquisitionWriter",
    "Camera",
    "FrameRecord",
    "FrameRow",
    "Instrument",
    "ModelProvenance",
    "PairRecord",
    "PairRow",
    "PairsMetadata",
    "PairsStore",
    "PairsWriter",
    "SoftwareVersions",
    "collect_software_versions",
    "open_pairs",
    "open_store",
    "store_kind",
    "validate_metadata",
]
