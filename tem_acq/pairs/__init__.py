"""Pairs: a short exposure and a long one (or another short one) of the same field.

One home for everything about pairs; training and evaluation only use them:

- :mod:`tem_acq.pairs.arrays`: :class:`PairArrays`, n pairs as plain arrays, and
  :func:`concatenate`;
- :mod:`tem_acq.pairs.assembly`: a recorded field into pairs (binning by summing,
  registration, quality flags), and the grid of field positions;
- :mod:`tem_acq.pairs.alignment`: registration applied to pairs (missing shifts measured,
  the long exposure moved onto its short frame);
- :mod:`tem_acq.pairs.reading`: pairs stores into :class:`PairArrays`;
- :mod:`tem_acq.pairs.simulate`: pairs straight from the simulated microscope;
- :mod:`tem_acq.pairs.plan`: the settings of a paired collection (:class:`PairPlan`).

The store kind (writer, reader, table rows) is :mod:`tem_acq.store.pairs`; the pycro-manager
collection runner is the hook layer's. Importing this package imports neither torch nor the
simulator.
"""

from __future__ import annotations

from tem_acq.pairs.alignment import aligned_long_electrons, measure_shifts
from tem_acq.pairs.arrays import PairArrays, concatenate
from tem_acq.pairs.assembly import (
    SKIPPED_FLAGS,
    AssembledPair,
    PairFlag,
    assemble_field,
    bin_sum,
    binning_factor,
    grid_positions_um,
)
from tem_acq.pairs.plan import Exposure, PairPlan
from tem_acq.pairs.reading import from_pairs_store
from tem_acq.pairs.simulate import simulate_pairs

__all__ = [
    "SKIPPED_FLAGS",
    "AssembledPair",
    "Exposure",
    "PairArrays",
    "PairFlag",
    "PairPlan",
    "aligned_long_electrons",
    "assemble_field",
    "bin_sum",
    "binning_factor",
    "concatenate",
    "from_pairs_store",
    "grid_positions_um",
    "measure_shifts",
    "simulate_pairs",
]
