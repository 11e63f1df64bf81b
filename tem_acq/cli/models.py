"""``tem-acq models``: list the model packages that names resolve to, with card summaries."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tem_acq.cli.command import JSON, Command


def arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``models`` arguments."""
    JSON.add(parser)


def run(args: argparse.Namespace) -> int:
    """Print one line per package (or JSON)."""
    from tem_acq.denoise import ModelCard, iter_packages, model_search_dirs

    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    for path, card in iter_packages():
        shadowed = path.name in seen
        seen.add(path.name)
        if isinstance(card, ModelCard):
            rows.append(
                {
                    "name": path.name,
                    "path": str(path),
                    "shadowed": shadowed,
                    "summary": card.summary(),
                    "trained": card.trained,
                    "package_hash": card.package_hash,
                }
            )
        else:
            rows.append(
                {"name": path.name, "path": str(path), "shadowed": shadowed, "error": str(card)}
            )
    if args.json:
        print(
            json.dumps(
                {"search_dirs": [str(d) for d in model_search_dirs()], "packages": rows}, indent=2
            )
        )
        return 0
    if not rows:
        print("no model packages found in:")
        for d in model_search_dirs():
            print(f"  {d}")
        print("create one with `tem-acq model new --out DIR` (set TEM_ACQ_MODELS to its parent)")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        text = r.get("summary") or f"BROKEN: {r['error']}"
        flag = " (shadowed)" if r["shadowed"] else ""
        print(f"{r['name']:<{width}}  {text}{flag}\n{'':<{width}}  {r['path']}")
    return 0


COMMAND = Command(
    "models",
    help="list installed model packages",
    description=(
        "List model packages in $TEM_ACQ_MODELS, the user folder "
        "(~/.local/share/tem-acq/models) and the shipped models/ folder; the first "
        "package of a name wins."
    ),
    arguments=arguments,
    run=run,
    rank=80,
)
