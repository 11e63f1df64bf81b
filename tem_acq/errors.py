"""The exceptions tem-acq raises for problems a user can fix.

Every message names the problem and what to do about it; the CLI prints it without a traceback.
"""

from __future__ import annotations


class TemAcqError(Exception):
    """Base class for errors caused by input, configuration or environment (not by bugs)."""


class StoreError(TemAcqError):
    """A store is missing, of the wrong kind, damaged, or would be overwritten."""


class ModelPackageError(TemAcqError):
    """A model package is missing a file, damaged, or from an unknown schema or architecture."""


class AcquisitionError(TemAcqError):
    """An acquisition could not run or its frames could not be recorded as asked."""
