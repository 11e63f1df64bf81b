"""Resumable training checkpoints: safetensors for tensors, JSON for everything else.

Nothing is pickled (no ``torch.save``/``torch.load``): a checkpoint folder holds

- ``state.safetensors``: ``model.*`` (current weights), ``best.*`` (best validated weights),
  ``optim.<i>.<name>`` (Adam moments per parameter), ``rng.torch`` (torch CPU RNG state);
- ``state.json``: step, history, best score, config, data hash, the NumPy generator state,
  Adam's hyper-parameters and per-parameter step counts.

Both are written to temporary names and renamed, JSON last, and the JSON names the step stored
in the tensors' metadata, so a crash mid-write leaves the previous checkpoint readable or a
mismatch that is reported, never a silent mix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tem_acq.errors import TemAcqError

if TYPE_CHECKING:
    import torch

STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"


def save_checkpoint(
    folder: Path,
    *,
    model: torch.nn.Module,
    best: dict[str, torch.Tensor] | None,
    optimizer: torch.optim.Optimizer,
    info: dict[str, Any],
) -> None:
    """Write a checkpoint (see the module docstring).

    Parameters
    ----------
    folder
        Checkpoint folder (created).
    model
        The model being trained.
    best
        State dict of the best weights so far (CPU tensors), or ``None``.
    optimizer
        The Adam optimiser.
    info
        JSON-serialisable training state; ``step`` is required.
    """
    import safetensors.torch
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous().clone()
    if best is not None:
        for k, v in best.items():
            tensors[f"best.{k}"] = v.detach().cpu().contiguous().clone()
    opt = optimizer.state_dict()
    steps: dict[str, float] = {}
    for idx, st in opt["state"].items():
        for name, val in st.items():
            if name == "step":
                steps[str(idx)] = float(val)
            elif isinstance(val, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = val.detach().cpu().contiguous().clone()
    tensors["rng.torch"] = torch.get_rng_state().clone()
    step = str(int(info["step"]))
    meta = dict(info)
    meta["optimizer"] = {"param_groups": opt["param_groups"], "steps": steps}
    tmp_t = folder / (STATE_TENSORS + ".tmp")
    tmp_j = folder / (STATE_JSON + ".tmp")
    safetensors.torch.save_file(tensors, str(tmp_t), metadata={"step": step})
    tmp_j.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp_t, folder / STATE_TENSORS)
    os.replace(tmp_j, folder / STATE_JSON)


def load_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a checkpoint: ``(info, tensors)``.

    Raises
    ------
    TemAcqError
        Missing, unreadable or inconsistent files.
    """
    from safetensors import SafetensorError, safe_open

    tj, tt = folder / STATE_JSON, folder / STATE_TENSORS
    if not (tj.is_file() and tt.is_file()):
        raise TemAcqError(
            f"no checkpoint to resume in {folder}; train without --resume (or pass the "
            "--out of the run you want to continue)"
        )
    try:
        info = json.loads(tj.read_text(encoding="utf-8"))
        with safe_open(str(tt), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, SafetensorError) as exc:
        raise TemAcqError(
            f"checkpoint in {folder} is damaged ({exc}); delete the folder and train afresh"
        ) from exc
    if str(meta.get("step")) != str(info.get("step")):
        raise TemAcqError(
            f"checkpoint in {folder} is inconsistent (tensors of step {meta.get('step')}, state "
            f"of step {info.get('step')}); delete the folder and train afresh"
        )
    return info, tensors


def restore_optimizer(
    optimizer: torch.optim.Optimizer, info: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
    """Load Adam's moments and step counts saved by :func:`save_checkpoint`."""
    import torch

    saved = info["optimizer"]
    state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        if not key.startswith("optim."):
            continue
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = val
    for idx, step in saved["steps"].items():
        state.setdefault(int(idx), {})["step"] = torch.tensor(float(step))
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under ``prefix.`` with the prefix removed."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
