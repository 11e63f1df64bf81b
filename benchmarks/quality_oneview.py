"""The ground-truth-free estimate on the four real Gatan OneView frames (two fields, two frames
each): raw, the best Gaussian and the shipped ``default`` and ``fast`` models, with intervals.

Run: ``python benchmarks/quality_oneview.py [--data DIR] [--device cpu]``. Prints the Markdown
table and the one-line verdict per field and model (the README's table), and writes them with
every number to ``benchmarks/results/quality-oneview.md`` and ``.json``. The frames are those of
Katsuno et al. (``train-0001``/``train-0002`` one field, ``val-0001``/``val-0002`` the other; 44
counts per electron, about 4.6 e-/px). The same estimate is what ``tem-acq evaluate --model M
--frame-pair A B`` prints for one model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from tem_acq.denoise import load_model
from tem_acq.denoise.io import read_frames
from tem_acq.evaluate.estimates import denoise_outputs, estimate_counts_pair

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "katsuno-oneview"
FIELDS = {"train": ("train-0001.tif", "train-0002.tif"), "val": ("val-0001.tif", "val-0002.tif")}
MODELS = ("default", "fast")
COUNTS_PER_ELECTRON = 44.0


def number(value: float | None, digits: int = 2, sign: bool = False) -> str:
    """``value`` with ``digits`` decimals, or ``n/a`` when undefined."""
    return "n/a" if value is None else f"{value:{'+' if sign else ''}.{digits}f}"


def interval(values: Any, digits: int = 2, sign: bool = False) -> str:
    """``[lo, hi]`` with ``digits`` decimals (``n/a`` for an undefined end)."""
    lo, hi = values
    return f"[{number(lo, digits, sign)}, {number(hi, digits, sign)}]"


def field_rows(name: str, est: Any) -> list[str]:
    """The Markdown rows of one field's estimate."""
    if not est.trusted:
        return [f"| {name} | no estimate: {'; '.join(est.problems)} | | | |"]
    rows = []
    for row_name, row in est.rows.items():
        label = row_name
        if row_name == "gaussian":
            label = f"best Gaussian (sigma {row.sigma_px:.2f} px)"
        psnr = f"{number(row.psnr_db)} {interval(row.ci)}"
        gain = est.gains.get(row_name)
        gain_text = (
            "" if gain is None else f"{number(gain.db, sign=True)} {interval(gain.ci, sign=True)}"
        )
        mse = f"{row.mse:.4f} {interval(row.mse_ci, 4)}"
        rows.append(f"| {name} | {label} | {mse} | {psnr} | {gain_text} |")
    return rows


def main() -> None:
    """Estimate every field with every model; print and save the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    models = {m: load_model(m, args.device) for m in MODELS}
    lines = [
        "| field | row | MSE e-^2/px^2 [95 %] | PSNR dB [95 %] "
        "| gain over the best Gaussian dB [95 %] |",
        "|---|---|---|---|---|",
    ]
    verdicts, results = [], {}
    for field, (fa, fb) in FIELDS.items():
        a, b = (np.asarray(read_frames(args.data / f).data).squeeze() for f in (fa, fb))
        outs_a, outs_b = {}, {}
        for m, den in models.items():
            outs_a[m] = denoise_outputs(den, a, COUNTS_PER_ELECTRON, tta=False)["model"]
            outs_b[m] = denoise_outputs(den, b, COUNTS_PER_ELECTRON, tta=False)["model"]
        est = estimate_counts_pair(a, b, COUNTS_PER_ELECTRON, outs_a, outs_b)
        lines += field_rows(field, est)
        verdicts += [f"- {field}: {est.verdict(m)}" for m in est.gains] or [
            f"- {field}: no estimate: {'; '.join(est.problems)}"
        ]
        results[field] = est.to_dict()
    text = "\n".join([*lines, "", *verdicts])
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quality-oneview.md").write_text(text + "\n")
    (RESULTS / "quality-oneview.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
