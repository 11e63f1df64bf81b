"""The settings of a paired collection: which fields, which exposures, in which order.

A :class:`PairPlan` says nothing about how the exposures are taken: the hook layer turns it
into pycro-manager events, and another acquisition stack can run the same plan through
:meth:`PairPlan.exposures`.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tem_acq.pairs.assembly import grid_positions_um
from tem_acq.schema import StrictModel


class Exposure(NamedTuple):
    """One exposure of a field: a short frame or (a frame of) the long exposure.

    Attributes
    ----------
    kind
        ``"short"`` or ``"long"``.
    frame
        Its number among the field's exposures of that kind (from 0).
    exposure_ms
        How long it is exposed.
    """

    kind: Literal["short", "long"]
    frame: int
    exposure_ms: float


class PairPlan(StrictModel):
    """What to collect: the fields, the exposures and their order.

    Attributes
    ----------
    fields
        Number of fields, on a grid of non-overlapping stage positions.
    positions_um
        Explicit stage positions (x, y) in micrometres instead of a grid.
    n_short
        Short exposures per field.
    short_exposure_ms, long_exposure_ms
        Exposures; the long one must be longer. In ``long_mode="sum"`` the long exposure is
        ``n_sum`` short frames (at least 2).
    long_mode
        ``"exposure"``: one long exposure; ``"sum"``: the sum of ``n_sum`` short frames (for
        cameras that saturate or when a long exposure is not possible).
    n_sum
        Short frames summed in ``"sum"`` mode (default: long_exposure_ms / short_exposure_ms).
    long_order
        Whether the long exposure comes ``"after"`` or ``"before"`` the shorts.
    settle_s
        Wait after each stage move before the first exposure (stage settling).
    max_shift_px
        Pairs whose registration shift exceeds this are flagged ``"drift"``.
    spacing
        Grid spacing between field centres, in field widths.
    """

    fields: int = Field(default=6, ge=1)
    positions_um: list[tuple[float, float]] | None = None
    n_short: int = Field(default=2, ge=1)
    short_exposure_ms: float = Field(default=2.0, gt=0)
    long_exposure_ms: float = Field(default=400.0, gt=0)
    long_mode: Literal["exposure", "sum"] = "exposure"
    n_sum: int | None = Field(default=None, ge=1)
    long_order: Literal["after", "before"] = "after"
    settle_s: float = Field(default=0.0, ge=0)
    max_shift_px: float = Field(default=2.0, gt=0)
    spacing: float = Field(default=1.5, gt=1.0)

    @field_validator("long_exposure_ms")
    @classmethod
    def _long_is_longer(cls, long_ms: float, info: ValidationInfo) -> float:
        """The long exposure is the clean target: it must be longer than a short one."""
        short_ms = info.data.get("short_exposure_ms")
        if short_ms is not None and long_ms <= short_ms:
            raise ValueError(
                f"{long_ms:g} ms must be longer than short_exposure_ms ({short_ms:g} ms): the "
                "long exposure is the low-noise target of each pair"
            )
        return long_ms

    @model_validator(mode="after")
    def _sum_of_several(self) -> PairPlan:
        """A summed long exposure needs at least two short frames."""
        if self.long_mode == "sum" and self.long_frames() < 2:
            raise ValueError(
                "long_mode 'sum' needs at least 2 short frames in the sum (n_sum, or "
                "long_exposure_ms / short_exposure_ms): one frame is not a long exposure"
            )
        return self

    def long_frames(self) -> int:
        """Frames that make up the long exposure (1 unless summing)."""
        if self.long_mode == "exposure":
            return 1
        return self.n_sum or max(1, round(self.long_exposure_ms / self.short_exposure_ms))

    def long_frame_exposure_ms(self) -> float:
        """Exposure of each long-exposure event."""
        return self.long_exposure_ms if self.long_mode == "exposure" else self.short_exposure_ms

    def positions(self, field_size_um: float) -> list[tuple[float, float]]:
        """Stage positions of every field."""
        if self.positions_um is not None:
            return list(self.positions_um)
        return grid_positions_um(self.fields, field_size_um=field_size_um, spacing=self.spacing)

    def exposures(self) -> list[Exposure]:
        """The exposures of one field, in the order they are taken."""
        shorts = [Exposure("short", k, self.short_exposure_ms) for k in range(self.n_short)]
        longs = [
            Exposure("long", m, self.long_frame_exposure_ms()) for m in range(self.long_frames())
        ]
        return shorts + longs if self.long_order == "after" else longs + shorts
