"""Training denoisers on (short, long) or (short, short) pairs.

>>> from tem_acq.pairs import simulate_pairs
>>> from tem_acq.train import TrainConfig, train
>>> pairs = simulate_pairs("nanoparticles", "counting", n_fields=8, size=256)
>>> result = train(pairs, TrainConfig(max_steps=20), "my-model")

The pairs themselves (:class:`~tem_acq.pairs.PairArrays`, :func:`~tem_acq.pairs.simulate_pairs`,
...) live in :mod:`tem_acq.pairs`; :func:`~tem_acq.pairs.from_pairs_store` is re-exported here
because examples/train_and_evaluate.py imports it from here. This package holds what training
adds: preparation in network units, the split by field, crop sampling,
the loop, losses, checkpoints and the config. Importing it does not import torch.
"""

from __future__ import annotations

from tem_acq.pairs import from_pairs_store
from tem_acq.train.config import TrainConfig
from tem_acq.train.data import CropSampler, Prepared, prepare, split_by_field
from tem_acq.train.loop import TRAINING_FILE, TrainResult, default_checkpoint_dir, train

__all__ = [
    "TRAINING_FILE",
    "CropSampler",
    "Prepared",
    "TrainConfig",
    "TrainResult",
    "default_checkpoint_dir",
    "from_pairs_store",
    "prepare",
    "split_by_field",
    "train",
]
