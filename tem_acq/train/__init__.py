"""Training denoisers on (short, long) or (short, short) pairs.

>>> from tem_acq.train import TrainConfig, simulate_pairs, train
>>> pairs = simulate_pairs("nanoparticles", "counting", n_fields=8, size=256)
>>> result = train(pairs, TrainConfig(max_steps=20), "my-model")

The pairs themselves (:class:`~tem_acq.pairs.PairArrays`, :func:`~tem_acq.pairs.from_pairs_store`,
:func:`~tem_acq.pairs.simulate_pairs`, :func:`~tem_acq.pairs.concatenate`) live in
:mod:`tem_acq.pairs` and are re-exported here for scripts that train on them. This package
holds what training adds: preparation in network units, the split by field, crop sampling,
the loop, losses, checkpoints and the config. Importing it does not import torch.
"""

from __future__ import annotations

from tem_acq.denoise.dihedral import dihedral, inverse_dihedral
from tem_acq.pairs import PairArrays, concatenate, from_pairs_store, simulate_pairs
from tem_acq.train.config import TrainConfig
from tem_acq.train.data import CropSampler, Prepared, prepare, split_by_field
from tem_acq.train.loop import TRAINING_FILE, TrainResult, default_checkpoint_dir, train

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
    "simulate_pairs",
    "split_by_field",
    "train",
]
