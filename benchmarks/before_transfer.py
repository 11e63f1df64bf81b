"""The shipped packages as they were before the transfer stage, on the transfer's field sets.

    python benchmarks/before_transfer.py

Evaluates the copies the transfer stage keeps (``$TEM_ACQ_CACHE/shipped-<name>-before-transfer``,
see ``train_shipped_models.py --stage transfer``) on the in-distribution and independent field
sets, as ``--stage evaluate`` does for the shipped packages, and writes
``benchmarks/results/before-transfer.json``: the README's before/after comparison.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_shipped_models as shipped  # the field sets and their evaluation

from tem_acq.denoise import load_model


def main() -> int:
    out = {}
    for name in shipped.CONFIGS:
        model = load_model(shipped.CACHE / f"shipped-{name}-before-transfer", "cpu")
        sets = shipped.field_set_reports(model)
        out[name] = {split: [rep.to_dict() for rep in reps] for split, reps in sets.items()}
    path = shipped.RESULTS / "before-transfer.json"
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
