"""Every exception tem-acq raises for a problem a user can fix: the one home for error classes.

Every message names the problem and what to do about it; the CLI prints it as one line
(``tem-acq COMMAND: error: ...``) and exits with code 2, without a traceback.
"""

from __future__ import annotations


class TemAcqError(Exception):
    """Base class for errors caused by input, configuration or environment (not by bugs)."""


class ConfigError(TemAcqError, ValueError):
    """A setting is invalid (a bad option, argument, config field or combination of them).

    Also a ``ValueError``, so code that guards a call with ``except ValueError`` keeps working.
    """


class StoreError(TemAcqError):
    """A store is missing, of the wrong kind, damaged, or would be overwritten."""


class StoreConfigError(ConfigError, StoreError):
    """A setting of a store writer or recorder is invalid (its metadata, geometry, encoding).

    A :class:`ConfigError` (a bad setting, not a bad store), and also a :class:`StoreError`, so
    code that guards store creation with ``except StoreError`` keeps working.
    """


class ModelPackageError(TemAcqError):
    """A model package is missing a file, damaged, or from an unknown schema or architecture."""


class AcquisitionError(TemAcqError):
    """An acquisition could not run or its frames could not be recorded as asked."""


class DenoiserFailedError(AcquisitionError):
    """The denoiser failed during the acquisition; every raw frame was still recorded."""


class SimulationError(ConfigError):
    """A simulator call got an argument it cannot honour (bad exposure, binning, position...)."""


class NegativeCountsWarning(UserWarning):
    """Raw frames hold negative values (dark-subtracted?): they are denoised as they are.

    A warning, not an error: such frames can be legitimate. The message says what the denoiser
    makes of them (``tem_acq.denoise.engine.negative_counts_note``).
    """


class PixelSizeWarning(UserWarning):
    """Frames' pixel size is outside the range the model was trained for: expect worse results.

    A warning, not an error: the frames are denoised (and recorded) all the same. The message
    names the pixel size, the card's range and what to do
    (``tem_acq.denoise.pixel_size.pixel_size_note``).
    """


class ViewerUnavailableError(TemAcqError):
    """napari (or a display for it) is not available; the message lists other ways to browse."""


__all__ = [
    "AcquisitionError",
    "ConfigError",
    "DenoiserFailedError",
    "ModelPackageError",
    "NegativeCountsWarning",
    "PixelSizeWarning",
    "SimulationError",
    "StoreConfigError",
    "StoreError",
    "TemAcqError",
    "ViewerUnavailableError",
]
