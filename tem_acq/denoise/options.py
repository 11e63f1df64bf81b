"""How a :class:`~tem_acq.denoise.engine.Denoiser` runs a model package: one options model.

:func:`tem_acq.load_model`, :class:`~tem_acq.denoise.engine.Denoiser` and ``tem-acq denoise``
take the same options; they are declared here once and passed through as one
:class:`DenoiseOptions`. Keyword calls (``load_model(name, "cpu", path="eager", tta=True)``)
change the fields they name.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import ConfigDict

from tem_acq.errors import ConfigError
from tem_acq.schema import StrictModel, as_model

PathName = Literal["auto", "eager", "channels_last", "bf16", "fp16", "onnxruntime"]
#: The execution paths a denoiser can be asked for.
PATHS: tuple[str, ...] = get_args(PathName)


class DenoiseOptions(StrictModel):
    """The options of a denoiser: where and how it runs the network.

    The values are checked against the device and the model when a
    :class:`~tem_acq.denoise.engine.Denoiser` is made (a path the device lacks, a batch size
    below 1, an overlap too large for the tiles raise :class:`~tem_acq.errors.ConfigError`).

    Attributes
    ----------
    device
        ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a
        ``torch.device``.
    path
        Execution path: ``"auto"`` picks the fastest one that matches eager float32 within
        :data:`~tem_acq.denoise.engine.FAST_PATH_TOLERANCE` on the loaded weights; or
        ``"eager"``, ``"channels_last"``, ``"bf16"`` (CPU), ``"fp16"`` (CUDA), ``"onnxruntime"``
        (CPU, ONNX Runtime: :mod:`tem_acq.denoise.onnx`), still checked, falling back to eager.
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
        independent of orientation, at 8x the cost.
    """

    model_config = ConfigDict(frozen=True)

    device: Any = "auto"
    path: str = "auto"
    compile: bool = False
    batch_size: int | None = None
    tile_size: int | None = None
    tile_overlap: int | None = None
    tta: bool = False

    @classmethod
    def from_settings(
        cls, base: DenoiseOptions | None = None, /, **settings: Any
    ) -> DenoiseOptions:
        """``base`` (default: every default) with the fields ``settings`` name changed.

        Raises
        ------
        ConfigError
            A setting that is not a field, or of the wrong type.
        """
        current = {} if base is None else dict(base)
        return as_model(cls, {**current, **settings}, "denoiser options", ConfigError)


__all__ = ["PATHS", "DenoiseOptions", "PathName"]
