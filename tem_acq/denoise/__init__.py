"""The denoiser: model packages, dose-aware normalisation and the inference engine.

::

    import tem_acq

    den = tem_acq.load_model("default", device="auto")    # a name, or a package folder
    den.warmup((512, 512))                                 # path selection, before frame 1
    electrons = den.denoise(raw_counts, counts_per_electron=44.0)   # (y, x) or (n, y, x)
    den.card, den.package_hash, den.device, den.path_name  # provenance and active path
    den.denoise_batch(waiting_frames, 44.0)                # the live pipeline's call

- :mod:`tem_acq.denoise.package`: the package format (smp ``config.json`` +
  ``model.safetensors`` + ``card.json``), loading without unpickling, names.
- :mod:`tem_acq.denoise.card`: the versioned model card.
- :mod:`tem_acq.denoise.normalization`: counts → electrons → dose-normalised network input
  and back; shared with training.
- :mod:`tem_acq.denoise.engine`: devices, checked fast paths, padding, batching.
- :mod:`tem_acq.denoise.tiling`: receptive field, tile layout and blending.
- :mod:`tem_acq.denoise.io`: TIFF (Gatan) / NPY / MRC files for ``tem-acq denoise``.
- :mod:`tem_acq.denoise.bench`: eager float32 versus the best path.
"""

from __future__ import annotations

import os
from typing import Any

from tem_acq.denoise.card import SCHEMA_VERSION, ModelCard, QualityRow, TrainingData
from tem_acq.denoise.engine import FAST_PATH_TOLERANCE, Denoiser, PathName, select_device
from tem_acq.denoise.normalization import (
    DoseNormalization,
    counts_to_electrons,
    dose_scale,
    from_network,
    to_network,
)
from tem_acq.denoise.package import (
    FAST_CONFIG,
    PAPER_CONFIG,
    LoadedPackage,
    build_model,
    compute_package_hash,
    iter_packages,
    load_package,
    model_config,
    model_search_dirs,
    new_package,
    rehash_package,
    resolve_package,
    save_package,
)

__all__ = [
    "FAST_CONFIG",
    "FAST_PATH_TOLERANCE",
    "PAPER_CONFIG",
    "SCHEMA_VERSION",
    "Denoiser",
    "DoseNormalization",
    "LoadedPackage",
    "ModelCard",
    "PathName",
    "QualityRow",
    "TrainingData",
    "build_model",
    "compute_package_hash",
    "counts_to_electrons",
    "dose_scale",
    "from_network",
    "iter_packages",
    "load_model",
    "load_package",
    "model_config",
    "model_search_dirs",
    "new_package",
    "rehash_package",
    "resolve_package",
    "save_package",
    "select_device",
    "to_network",
]


def load_model(
    name_or_path: str | os.PathLike[str] = "default",
    device: str | Any = "auto",
    *,
    path: PathName = "auto",
    compile: bool = False,
    batch_size: int | None = None,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    tta: bool = False,
) -> Denoiser:
    """Load a model package and return a :class:`Denoiser` for it.

    Parameters
    ----------
    name_or_path
        A package folder, or a package name looked up in ``$TEM_ACQ_MODELS``,
        ``~/.local/share/tem-acq/models`` and the shipped ``models/`` folder (in that order).
    device
        ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    path
        Execution path: ``"auto"`` picks the fastest one that matches eager float32 within
        :data:`FAST_PATH_TOLERANCE` on these weights; or ``"eager"``, ``"channels_last"``,
        ``"bf16"`` (CPU), ``"fp16"`` (CUDA), still checked, falling back to eager.
    compile
        Also try ``torch.compile`` (5-40 s per input shape at warm-up; worth it for live use).
    batch_size
        Frames or tiles per network call (default 8 on CUDA, 1 on CPU).
    tile_size, tile_overlap
        Frames larger than ``tile_size`` (default 2560) are denoised in blended tiles; the
        default overlap (twice the receptive-field radius plus a blend zone) makes the tiled
        output equal the untiled one up to float rounding.
    tta
        Average the network over the 8 flips/90-degree rotations of each frame: output
        independent of orientation, at 8x the cost (see :class:`Denoiser`).

    Returns
    -------
    The denoiser; call ``warmup(shape)`` before the first real frame.
    """
    package = load_package(resolve_package(name_or_path))
    return Denoiser(
        package,
        device,
        path=path,
        compile=compile,
        batch_size=batch_size,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        tta=tta,
    )
