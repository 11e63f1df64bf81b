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
- :mod:`tem_acq.denoise.options`: the denoiser's options (device, path, batch, tiles, tta).
- :mod:`tem_acq.denoise.tiling`: receptive field, tile layout and blending.
- :mod:`tem_acq.denoise.io`: TIFF (Gatan) / NPY / MRC files for ``tem-acq denoise``.
- :mod:`tem_acq.denoise.bench`: eager float32 versus the best path.
"""

from __future__ import annotations

import os
from typing import Any

from tem_acq.denoise.card import SCHEMA_VERSION, ModelCard, QualityRow, TrainingData
from tem_acq.denoise.engine import FAST_PATH_TOLERANCE, Denoiser, select_device
from tem_acq.denoise.normalization import (
    DoseNormalization,
    counts_to_electrons,
    dose_scale,
    from_network,
    to_network,
)
from tem_acq.denoise.options import DenoiseOptions, PathName
from tem_acq.denoise.package import (
    FAST_CONFIG,
    PAPER_CONFIG,
    LoadedPackage,
    architecture_config,
    build_model,
    compute_package_hash,
    iter_packages,
    load_package,
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
    "DenoiseOptions",
    "Denoiser",
    "DoseNormalization",
    "LoadedPackage",
    "ModelCard",
    "PathName",
    "QualityRow",
    "TrainingData",
    "architecture_config",
    "build_model",
    "compute_package_hash",
    "counts_to_electrons",
    "dose_scale",
    "from_network",
    "iter_packages",
    "load_model",
    "load_package",
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
    device: str | Any | None = None,
    *,
    options: DenoiseOptions | None = None,
    **settings: Any,
) -> Denoiser:
    """Load a model package and return a :class:`Denoiser` for it.

    Parameters
    ----------
    name_or_path
        A package folder, or a package name looked up in ``$TEM_ACQ_MODELS``,
        ``~/.local/share/tem-acq/models`` and the shipped ``models/`` folder (in that order).
    device
        ``"auto"`` (CUDA if available, else CPU; the default), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``; given, it overrides ``options.device``.
    options
        How the denoiser runs: a :class:`DenoiseOptions` (execution path, ``torch.compile``,
        batch size, tiling, test-time augmentation), passed through to the :class:`Denoiser`.
    **settings
        :class:`DenoiseOptions` fields to change, e.g. ``path="eager"``, ``batch_size=4``,
        ``tta=True``.

    Returns
    -------
    The denoiser; call ``warmup(shape)`` before the first real frame.

    Raises
    ------
    ModelPackageError
        No such package, or a damaged one.
    ConfigError
        An option that is not one, or of the wrong type or value.
    """
    if device is not None:
        settings["device"] = device
    opts = DenoiseOptions.from_settings(options, **settings)  # a misspelt option fails first
    return Denoiser(load_package(resolve_package(name_or_path)), options=opts)
