"""Model packages: smp's ``config.json`` + ``model.safetensors`` plus our ``card.json``.

Layout::

    NAME/
      config.json        smp's own config (what ``save_pretrained`` writes, ``_model_class``
                         included), so ``smp.from_pretrained(NAME)`` can load it too
      model.safetensors  the weights (float32, or float16/bfloat16 to keep shipped models small)
      card.json          our :class:`~tem_acq.denoise.card.ModelCard`

Loading reads JSON and safetensors only (never unpickles), never downloads anything
(``encoder_weights`` is forced to ``None``), checks every file and reports each problem as one
:class:`~tem_acq.errors.ModelPackageError` naming the fix.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tem_acq.denoise.card import ModelCard, QualityRow, read_card, write_card
from tem_acq.errors import ModelPackageError, TemAcqError
from tem_acq.outputs import claim_output

if TYPE_CHECKING:
    import torch

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"

WeightsDtype = Literal["float32", "float16", "bfloat16"]

#: The paper's model (Katsuno et al. 2022): smp ``Unet("resnet18")`` with its default decoder.
PAPER_CONFIG: dict[str, Any] = {
    "encoder_name": "resnet18",
    "encoder_depth": 5,
    "decoder_channels": [256, 128, 64, 32, 16],
}

#: The fast CPU configuration: a light timm encoder (MobileNetV3-small "minimal": no
#: squeeze-excitation, so the receptive field stays local, radius 118 px, and tiles stitch
#: exactly) at depth 4 (stride 16) with a narrow decoder; 0.55 M parameters. The decoder's
#: full-resolution stages dominate the cost, so they are 16 channels wide, like the paper's
#: last stage. At 512x512 on 2 (shared) CPU cores, against the paper's model in eager fp32:
#: 4.6-6.1x in channels_last fp32 (exact), 7.6x with the trained package on its checked bf16
#: path (benchmarks/results/denoise-cpu.md).
FAST_CONFIG: dict[str, Any] = {
    "encoder_name": "tu-tf_mobilenetv3_small_minimal_100",
    "encoder_depth": 4,
    "decoder_channels": [64, 32, 16, 16],
}

#: The decoder applied to any encoder by ``model new --fast``.
FAST_DECODER: dict[str, Any] = {"encoder_depth": 4, "decoder_channels": [64, 32, 16, 16]}

#: smp model classes tem-acq can run (its padding rule, 2**depth, is the U-Net's).
SUPPORTED_ARCHITECTURES = ("Unet",)


@dataclass(frozen=True)
class LoadedPackage:
    """A loaded, validated model package.

    Attributes
    ----------
    model
        The smp model in float32 on the CPU, in eval mode.
    card
        The package's card.
    path
        The package folder.
    package_hash
        ``sha256:<hex>`` over config and weights (verified against the card).
    """

    model: torch.nn.Module
    card: ModelCard
    path: Path
    package_hash: str


def architecture_config(encoder: str | None = None, *, fast: bool = False) -> dict[str, Any]:
    """Return smp ``Unet`` arguments for an encoder, or for the paper/fast presets.

    Parameters
    ----------
    encoder
        smp encoder name; ``None`` picks resnet18 (the paper's) or, with ``fast``, the fast
        configuration's MobileNetV3-small.
    fast
        Use the fast decoder (depth 4, decoder channels 64-32-16-16).

    Returns
    -------
    Keyword arguments for ``smp.Unet`` (without in/out channels).
    """
    if encoder is None:
        return dict(FAST_CONFIG if fast else PAPER_CONFIG)
    if fast:
        return {"encoder_name": encoder, **FAST_DECODER}
    if encoder == PAPER_CONFIG["encoder_name"]:
        return dict(PAPER_CONFIG)
    return {"encoder_name": encoder}


def _check_encoder(name: Any) -> None:
    import segmentation_models_pytorch as smp

    if isinstance(name, str):
        if name.startswith("tu-"):
            import timm

            if timm.is_model(name[3:]):
                return
        elif name in smp.encoders.get_encoder_names():
            return
    raise ModelPackageError(
        f"unknown encoder {name!r}: use an smp encoder name (e.g. resnet18, mobilenet_v2) or "
        "'tu-' plus a timm model name (e.g. tu-mobilenetv3_small_100)"
    )


def build_model(config: dict[str, Any]) -> torch.nn.Module:
    """Build an smp model from a config dict, never downloading weights.

    Parameters
    ----------
    config
        smp's ``config.json`` content (``_model_class`` optional, default ``Unet``) or plain
        ``Unet`` keyword arguments.

    Returns
    -------
    The model (fresh weights, float32, eval mode).

    Raises
    ------
    ModelPackageError
        Unknown architecture or encoder, unknown arguments, or a model that is not a
        one-channel-in, one-channel-out linear U-Net.
    """
    import segmentation_models_pytorch as smp

    cfg = dict(config)
    arch = cfg.pop("_model_class", "Unet")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ModelPackageError(
            f"unknown architecture {arch!r}: tem-acq runs {', '.join(SUPPORTED_ARCHITECTURES)} "
            "models; re-create the package with `tem-acq model new`"
        )
    cls = getattr(smp, arch)
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ModelPackageError(
            f"config has arguments smp.{arch} does not take: {', '.join(unknown)}; remove them"
        )
    _check_encoder(cfg.get("encoder_name", "resnet34"))
    # Weights come from model.safetensors; never download pretrained encoder weights.
    cfg["encoder_weights"] = None
    cfg.setdefault("in_channels", 1)
    cfg.setdefault("classes", 1)
    if cfg["in_channels"] != 1 or cfg["classes"] != 1 or cfg.get("activation") is not None:
        raise ModelPackageError(
            "a tem-acq denoiser must have in_channels=1, classes=1 and a linear output "
            f"(activation=None); the config has in_channels={cfg['in_channels']}, "
            f"classes={cfg['classes']}, activation={cfg.get('activation')!r}"
        )
    if cfg.get("aux_params") is not None:
        raise ModelPackageError("a tem-acq denoiser has no auxiliary head; set aux_params=null")
    try:
        model = cls(**cfg)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ModelPackageError(f"cannot build smp.{arch} from the config: {exc}") from exc
    return model.eval()


def _smp_config(model: torch.nn.Module) -> dict[str, Any]:
    """Return smp's ``config.json`` content for a model (what ``save_pretrained`` writes)."""
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, dict):
        raise ModelPackageError(
            f"{type(model).__name__} is not an smp model (no .config); build it with smp"
        )
    out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    out["_model_class"] = type(model).__name__
    out["encoder_weights"] = None
    return dict(sorted(out.items()))


def _architecture_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    skip = {"_model_class", "encoder_name", "encoder_weights"}
    return {k: v for k, v in sorted(config.items()) if k not in skip}


def _file_chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def compute_package_hash(folder: Path) -> str:
    """``sha256:<hex>`` over ``config.json`` then ``model.safetensors`` (names included).

    Parameters
    ----------
    folder
        The package folder.

    Returns
    -------
    The package hash that stores record as the denoised data's provenance.
    """
    h = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        h.update(name.encode() + b"\0")
        for chunk in _file_chunks(folder / name):
            h.update(chunk)
        h.update(b"\0")
    return "sha256:" + h.hexdigest()


def save_package(
    model: torch.nn.Module,
    out: str | os.PathLike[str],
    *,
    name: str | None = None,
    weights_dtype: WeightsDtype = "float32",
    overwrite: bool = False,
    **card_fields: Any,
) -> ModelCard:
    """Save a model as a package folder (config.json + model.safetensors + card.json).

    Parameters
    ----------
    model
        An smp ``Unet`` (1 channel in, 1 out, linear output).
    out
        The package folder to create.
    name
        Package name; defaults to the folder's name.
    weights_dtype
        dtype of floating-point weights on disk (``float16`` halves the size; loading
        converts back to float32).
    overwrite
        Replace an existing folder.
    **card_fields
        Further :class:`~tem_acq.denoise.card.ModelCard` fields: ``trained`` (required),
        ``dose_range_e_per_px``, ``detectors``, ``training_data``, ``quality``,
        ``normalization``, ``pixel_size_A_range``, ``description``.

    Returns
    -------
    The card written.
    """
    dest = Path(out)
    claim_output(dest, overwrite=overwrite, kind="model package")
    config = _smp_config(model)
    state = _weights_on_disk(model, weights_dtype)
    with _new_folder(dest) as folder:
        _write_model_files(folder, config, state)
        card = _new_card(
            config,
            name=name or dest.name,
            weights_dtype=weights_dtype,
            package_hash=compute_package_hash(folder),
            card_fields=card_fields,
        )
        write_card(card, folder / CARD_FILE)
    return card


def _weights_on_disk(model: torch.nn.Module, weights_dtype: WeightsDtype) -> dict[str, Any]:
    """The model's state on the CPU, floating-point tensors in ``weights_dtype``."""
    import torch

    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[
        weights_dtype
    ]
    return {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu())
        .contiguous()
        .clone()
        for k, v in model.state_dict().items()
    }


@contextmanager
def _new_folder(dest: Path) -> Iterator[Path]:
    """A folder to fill that becomes ``dest`` (replacing it) only once it is complete.

    It is built as a sibling temporary folder and renamed, so a crash never leaves half a
    package; on any error it is removed and ``dest`` is left as it was.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        yield tmp
        _make_readable(tmp)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_model_files(folder: Path, config: dict[str, Any], state: dict[str, Any]) -> None:
    """Write smp's ``config.json`` and the weights (``model.safetensors``)."""
    import safetensors.torch

    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    safetensors.torch.save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})


def _new_card(
    config: dict[str, Any],
    *,
    name: str,
    weights_dtype: WeightsDtype,
    package_hash: str,
    card_fields: dict[str, Any],
) -> ModelCard:
    """The card of a package just written: its architecture read from the config.

    The caller's fields come on top (doses 1-20 e-/px and both detectors unless it says
    otherwise).
    """
    from tem_acq import __version__

    fields: dict[str, Any] = {
        "dose_range_e_per_px": (1.0, 20.0),
        "detectors": ["counting", "integrating"],
        **card_fields,
    }
    return ModelCard(
        name=name,
        architecture=config["_model_class"],
        encoder=config["encoder_name"],
        architecture_kwargs=_architecture_kwargs(config),
        weights_dtype=weights_dtype,
        package_hash=package_hash,
        tem_acq_version=__version__,
        **fields,
    )


def _make_readable(folder: Path) -> None:
    """Give a package the usual permissions (mkdtemp makes it private: 0700 and 0600 files).

    A package in a shared install (a microscope PC's common environment) must be readable by
    every user; the process umask still applies.
    """
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


def new_package(
    out: str | os.PathLike[str],
    *,
    encoder: str | None = None,
    fast: bool = False,
    name: str | None = None,
    weights_dtype: WeightsDtype = "float32",
    seed: int = 0,
    overwrite: bool = False,
) -> ModelCard:
    """Create a package with freshly initialised weights (its card says untrained).

    Parameters
    ----------
    out
        The folder to create.
    encoder, fast
        See :func:`architecture_config`.
    name
        Package name (default: the folder name).
    weights_dtype
        dtype of the weights on disk.
    seed
        Seed of the initialisation (same seed, same weights).
    overwrite
        Replace an existing folder.

    Returns
    -------
    The card written.
    """
    import torch

    cfg = architecture_config(encoder, fast=fast)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model({**cfg, "in_channels": 1, "classes": 1})
    return save_package(
        model,
        out,
        name=name,
        weights_dtype=weights_dtype,
        overwrite=overwrite,
        trained=False,
        description=(
            "Freshly initialised (untrained) weights: outputs are not a denoised image. "
            "Train it before use."
        ),
    )


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise ModelPackageError(
            f"model package {folder} has no {CONFIG_FILE}; restore it from the package's source"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelPackageError(f"{path} is not valid JSON ({exc}); restore it") from exc
    if not isinstance(config, dict):
        raise ModelPackageError(f"{path} must hold a JSON object; restore it")
    return config


def _load_weights(folder: Path, model: torch.nn.Module, card: ModelCard) -> dict[str, torch.Tensor]:
    import torch
    from safetensors import SafetensorError, safe_open

    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise ModelPackageError(
            f"model package {folder} has no {WEIGHTS_FILE}; restore it from the package's source"
        )
    expected = model.state_dict()
    try:
        with safe_open(str(path), framework="pt") as fh:
            keys = set(fh.keys())
            missing = sorted(set(expected) - keys)
            extra = sorted(keys - set(expected))
            if missing or extra:
                raise ModelPackageError(
                    f"{path} does not match {CONFIG_FILE}: "
                    f"{len(missing)} missing tensor(s) {missing[:3]}, "
                    f"{len(extra)} unexpected {extra[:3]}; the weights belong to another model"
                )
            wrong = [
                f"{k} {list(fh.get_slice(k).get_shape())} != {list(expected[k].shape)}"
                for k in sorted(keys)
                if list(fh.get_slice(k).get_shape()) != list(expected[k].shape)
            ]
            if wrong:
                raise ModelPackageError(
                    f"{path} does not match {CONFIG_FILE}: {len(wrong)} tensor(s) of the wrong "
                    f"shape, e.g. {wrong[0]}; the weights belong to another model"
                )
            state = {k: fh.get_tensor(k) for k in keys}
    except SafetensorError as exc:
        raise ModelPackageError(
            f"{path} is damaged or truncated ({exc}); restore it from the package's source"
        ) from exc
    float_dtypes = {
        str(v.dtype).removeprefix("torch.") for v in state.values() if v.is_floating_point()
    }
    if float_dtypes - {card.weights_dtype}:
        raise ModelPackageError(
            f"{path} holds {'/'.join(sorted(float_dtypes))} weights but card.json says "
            f"{card.weights_dtype}; fix weights_dtype in the card"
        )
    # fp16/bf16 on disk keep shipped packages small; compute always starts from float32.
    return {
        k: v.to(torch.float32) if v.is_floating_point() else v.to(expected[k].dtype)
        for k, v in state.items()
    }


def load_package(folder: str | os.PathLike[str]) -> LoadedPackage:
    """Load and check a package folder (JSON and safetensors only; nothing is unpickled).

    Parameters
    ----------
    folder
        The package folder.

    Returns
    -------
    The model (float32, CPU, eval) with its card and hash.

    Raises
    ------
    ModelPackageError
        Missing/truncated/mismatched files, unknown architecture or encoder, a card from a
        newer schema, or files changed since the card was written.
    """
    path = Path(folder).expanduser()
    _require_folder(path)
    card = read_card(path / CARD_FILE)
    config = _read_config(path)
    model = build_model(config)
    arch = config.get("_model_class", "Unet")
    if (
        card.architecture != arch
        or card.encoder != config.get("encoder_name")
        or card.architecture_kwargs != _architecture_kwargs(config)
    ):
        raise ModelPackageError(
            f"card.json and {CONFIG_FILE} in {path} describe different models "
            f"(card: {card.architecture}/{card.encoder} {card.architecture_kwargs}; config: "
            f"{arch}/{config.get('encoder_name')} {_architecture_kwargs(config)}); "
            "restore the package from its source"
        )
    state = _load_weights(path, model, card)
    actual = compute_package_hash(path)
    if actual != card.package_hash:
        raise ModelPackageError(
            f"{CONFIG_FILE} or {WEIGHTS_FILE} in {path} changed since card.json was written "
            f"(card {card.package_hash[:19]}..., files {actual[:19]}...); restore the package, "
            f"or if the change is intended run `tem-acq model rehash {path}`"
        )
    model.load_state_dict(state, strict=True)
    return LoadedPackage(model=model.eval(), card=card, path=path, package_hash=actual)


def rehash_package(folder: str | os.PathLike[str]) -> ModelCard:
    """Recompute the package hash after an intended change to config or weights.

    Parameters
    ----------
    folder
        The package folder.

    Returns
    -------
    The updated card (written back).
    """
    path = Path(folder)
    card = read_card(path / CARD_FILE)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise ModelPackageError(f"model package {path} has no {name}; restore it")
    card = card.model_copy(update={"package_hash": compute_package_hash(path)})
    write_card(card, path / CARD_FILE)
    return card


def write_quality(package: str | os.PathLike[str], rows: Sequence[QualityRow]) -> None:
    """Replace the quality table in a package's ``card.json`` (weights are untouched).

    The package hash covers config and weights only, so it stays valid.

    Parameters
    ----------
    package
        A package folder or name.
    rows
        The new quality table (e.g. :func:`tem_acq.evaluate.quality_rows` of its reports).

    Raises
    ------
    TemAcqError
        The package is untrained (an untrained model has no quality table).
    """
    folder = resolve_package(package)
    card = read_card(folder / CARD_FILE)
    if not card.trained:
        raise TemAcqError(f"{folder} is untrained; train it before recording its quality")
    new = card.model_validate({**card.model_dump(), "quality": [r.model_dump() for r in rows]})
    write_card(new, folder / CARD_FILE)


# --- finding packages by name ----------------------------------------------------------------


#: Where a wheel puts the repository's ``models/`` (pyproject's wheel force-include).
WHEEL_MODELS_DIR = "_shipped_models"


def shipped_models_dir() -> Path:
    """The shipped packages: inside an installed wheel, else the repository's ``models/``."""
    package_root = Path(__file__).resolve().parents[1]
    installed = package_root / WHEEL_MODELS_DIR
    if installed.is_dir():
        return installed
    return package_root.parent / "models"


def user_models_dir() -> Path:
    """The user's model folder: ``$XDG_DATA_HOME/tem-acq/models`` (``~/.local/share/...``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "tem-acq" / "models"


def model_search_dirs() -> list[Path]:
    """Where names are looked up, first match wins.

    ``$TEM_ACQ_MODELS`` (``os.pathsep``-separated folders), then :func:`user_models_dir`, then
    :func:`shipped_models_dir`.
    """
    dirs = [
        Path(p).expanduser() for p in os.environ.get("TEM_ACQ_MODELS", "").split(os.pathsep) if p
    ]
    dirs += [user_models_dir(), shipped_models_dir()]
    return list(dict.fromkeys(dirs))


def _looks_like_path(s: str) -> bool:
    return os.sep in s or (os.altsep is not None and os.altsep in s) or s.startswith((".", "~"))


def _require_folder(path: Path) -> None:
    """Refuse a package path that is not a folder (the first check of loading a package)."""
    if not path.is_dir():
        raise ModelPackageError(
            f"model package {path} does not exist or is not a folder; pass a package folder "
            "or a name listed by `tem-acq models`"
        )


def resolve_package(name_or_path: str | os.PathLike[str]) -> Path:
    """Find a package folder from a path or a name.

    A name (no path separator, not starting with ``.`` or ``~``) is looked up only in
    :func:`model_search_dirs`, never in the current folder: ``fast`` is always the installed
    package of that name. A folder is given as a path (``./my-model``, ``/data/model``).

    Parameters
    ----------
    name_or_path
        A folder path, or a package name looked up in :func:`model_search_dirs`.

    Returns
    -------
    The package folder (not yet validated).

    Raises
    ------
    ModelPackageError
        A name that no search folder holds (the message lists the names there, and says how
        to pass a folder of that name in the current folder).
    """
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(str(name_or_path)):
        return Path(name_or_path).expanduser()
    name = str(name_or_path)
    for d in model_search_dirs():
        if (d / name / CARD_FILE).is_file():
            return d / name
    available = sorted({p.name for p, _ in iter_packages()})
    where = ", ".join(str(d) for d in model_search_dirs())
    hint = (
        f"available: {', '.join(available)}"
        if available
        else "no packages are installed yet (create one with `tem-acq model new --out DIR`)"
    )
    here = f"; to use the folder {name} here, pass ./{name}" if Path(name).is_dir() else ""
    raise ModelPackageError(
        f"no model package named {name!r} in {where}; {hint}; or pass a package folder path{here}"
    )


def package_folder(name_or_path: str | os.PathLike[str]) -> Path:
    """The folder of an existing package: a cheap check before any work (no weights read).

    :func:`resolve_package`, then the first checks of :func:`load_package`: a folder with a
    readable ``card.json``. Commands name it among their inputs, which no output may overlap.

    Raises
    ------
    ModelPackageError
        As :func:`resolve_package`, or when the folder is missing or has no valid card.
    """
    path = resolve_package(name_or_path)
    _require_folder(path)
    read_card(path / CARD_FILE)
    return path


def iter_packages() -> Iterator[tuple[Path, ModelCard | ModelPackageError]]:
    """Every package folder in the search dirs, with its card or the error reading it."""
    for d in model_search_dirs():
        if not d.is_dir():
            continue
        for sub in sorted(d.iterdir()):
            if sub.is_dir() and (sub / CARD_FILE).is_file():
                try:
                    yield sub, read_card(sub / CARD_FILE)
                except ModelPackageError as exc:
                    yield sub, exc
