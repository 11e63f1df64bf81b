"""ONNX Runtime as a way to run a model's network (the engine's ``onnxruntime`` path).

The network (in network units: the engine keeps its own normalisation, mean rule, padding and
tiling) is exported to ONNX in memory when the path is asked for, and run by an ONNX Runtime
session on the CPU. ``benchmarks/bench_onnxruntime.py`` measured it 1.4x faster than the
engine's best torch path for the fast model on this project's 2-core CPU, and 0.9-1.1x for the
paper's resnet18 U-Net; the engine still compares it with eager float32 before using it, and
``path="auto"`` does not try it (the export takes 1-2 s).
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING, Any, cast

from tem_acq.errors import ConfigError

if TYPE_CHECKING:
    import torch

#: The ONNX opset the network is exported with.
OPSET = 17


def onnxruntime_available() -> bool:
    """True when ``onnxruntime`` can be imported (the bioimageio extra installs it)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_onnx(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    """The network as ONNX bytes, batch and both image sizes dynamic."""
    import torch

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated, not gone
        torch.onnx.export(
            model,
            (example,),
            cast(Any, buffer),  # a file-like target; the stubs name only paths
            dynamo=False,
            opset_version=OPSET,
            input_names=["raw"],
            output_names=["denoised"],
            dynamic_axes={name: {0: "b", 2: "y", 3: "x"} for name in ("raw", "denoised")},
        )
    return buffer.getvalue()


class OnnxNetwork:
    """Calls an ONNX Runtime session like the torch module it was exported from (CPU tensors).

    Raises
    ------
    ConfigError
        If onnxruntime is not installed.
    """

    def __init__(self, model: torch.nn.Module, multiple: int) -> None:
        if not onnxruntime_available():
            raise ConfigError(
                "the onnxruntime path needs ONNX Runtime: pip install 'tem-acq[bioimageio]' "
                "(or onnxruntime)"
            )
        import onnxruntime as ort
        import torch

        example = torch.zeros((1, 1, 4 * multiple, 4 * multiple))
        cpu_model = model.float().cpu().eval()
        self._session = ort.InferenceSession(
            export_onnx(cpu_model, example), providers=["CPUExecutionProvider"]
        )

    def __call__(self, x: torch.Tensor) -> Any:
        """The network's output for a ``(b, 1, y, x)`` batch, as a CPU tensor."""
        import torch

        out = self._session.run(None, {"raw": x.detach().cpu().numpy()})[0]
        return torch.from_numpy(out)
