"""Training denoisers on (short, long) or (short, short) pairs.

>>> from tem_acq.train import TrainConfig, simulate_pairs, train
>>> pairs = simulate_pairs("nanoparticles", "counting", n_fields=8, size=256)
>>> result = train(pairs, TrainConfig(max_steps=20), "my-model")

The data layer works on plain arrays (:class:`PairArrays`); :func:`from_pairs_store` reads
pairs stores into it. Importing this package does not import torch.
"""

from __future__ import annotations

from tem_acq.denoise.dihedral import dihedral, inverse_dihedral
from tem_acq.train.config import TrainConfig
from tem_acq.train.data import (
    CropSampler,
    PairArrays,
    Prepared,
    concatenate,
    from_pairs_store,
    prepare,
    shift_image,
    split_by_field,
)
from tem_acq.train.loop import TRAINING_FILE, TrainResult, default_checkpoint_dir, train
from tem_acq.train.simulate import simulate_pairs

__all__ = [
    "TRAINING_FILE",
    "CropSampler",
    "PairArrays",
    "Prepared",
    "TrainConfig",
    "TrainResult",
    "concatenate",
    "default_checkpoint_dir",
    "dihedral",
    "from_pairs_store",
    "inverse_dihedral",
    "prepare",
    "shift_image",
    "simulate_pairs",
    "split_by_field",
    "train",
]
