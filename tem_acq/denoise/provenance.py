"""What a store records about the model that produced its denoised frames."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tem_acq.store.metadata import ModelProvenance

if TYPE_CHECKING:
    from tem_acq.denoise.engine import Denoiser


def model_provenance(denoiser: Denoiser) -> ModelProvenance:
    """The :class:`~tem_acq.store.ModelProvenance` of a loaded denoiser.

    The execution path (e.g. ``channels_last+compile``) is recorded once it has been selected
    (at warm-up or the first frame). ``card`` is the model's card without its measured quality
    table (tens of kilobytes, kept in the package the hash names): what the model is, what it
    was trained on and for, and its normalization.
    """
    card = denoiser.card
    device, _, path = denoiser.path_name.partition(" ")
    return ModelProvenance(
        name=card.name,
        sha256=denoiser.package_hash.removeprefix("sha256:"),
        card_schema=str(card.schema_version),
        architecture=f"{card.architecture}({card.encoder})",
        normalization=card.normalization.model_dump(mode="json"),
        card=card.model_dump(mode="json", exclude={"quality"}),
        device=device,
        precision=None if path.startswith("pending") else path,
    )
