"""Build core/codecarbon_callbacks_core/data/cpu_tdp.csv from CodeCarbon's cpu_power.csv.

Usage (from the repository root):
    python scripts/build_cpu_tdp.py [--source ../shared/reference/data/cpu_power.csv]

Reads CodeCarbon's table (MIT; columns Name,TDP), and writes our own file with columns
``model,tdp_w``: names normalised with the package's own ``normalize_cpu_model`` (so lookups and
the table agree), TDP as a float in watts, sorted by model. Changes (see cpu_tdp.md):
- malformed TDP values written ``a.b.c`` (4 old Celeron rows, e.g. ``27.29.5``) are read as the
  range ``a``-``b.c`` W and the upper bound kept (27.29.5 -> 29.5);
- rows with TDP 0 or less are dropped (one row: Intel Quark Microcontroller D1000);
- rows whose names normalise to the same key keep the highest TDP (a conservative estimate).
The script prints what it changed; running it twice gives the same file.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "core"))

from codecarbon_callbacks_core.hardware.cpu_model import normalize_cpu_model

DEFAULT_SOURCE = REPO.parent / "shared" / "reference" / "data" / "cpu_power.csv"
TARGET = REPO / "core" / "codecarbon_callbacks_core" / "data" / "cpu_tdp.csv"
_RANGE = re.compile(r"^(\d+)\.(\d+\.\d+)$")


def parse_tdp_w(raw: str) -> tuple[float | None, str | None]:
    """The TDP in W and a note when the value had to be fixed; (None, why) to drop the row."""
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        match = _RANGE.match(raw)
        if not match:
            return None, f"unreadable TDP {raw!r}"
        low, high = float(match.group(1)), float(match.group(2))
        return max(low, high), f"TDP {raw!r} read as range {low:g}-{high:g} W, kept {high:g}"
    if value <= 0:
        return None, f"TDP {raw!r} is not a power"
    return value, None


def build(source: Path, target: Path) -> dict[str, float]:
    table: dict[str, float] = {}
    changes: list[str] = []
    with open(source, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            name = row["Name"].strip()
            tdp_w, note = parse_tdp_w(row["TDP"])
            if tdp_w is None:
                changes.append(f"dropped {name!r}: {note}")
                continue
            if note:
                changes.append(f"fixed {name!r}: {note}")
            key = normalize_cpu_model(name)
            if not key:
                changes.append(f"dropped {name!r}: empty after normalisation")
                continue
            if key in table:
                changes.append(f"merged {name!r} into {key!r}: kept max({table[key]}, {tdp_w})")
            table[key] = max(tdp_w, table.get(key, 0.0))
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", newline="", encoding="utf-8") as handle:
        handle.write(
            "# CPU model (normalised) -> TDP in W. Built by scripts/build_cpu_tdp.py; see cpu_tdp.md\n"
        )
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["model", "tdp_w"])
        for key in sorted(table):
            writer.writerow([key, f"{table[key]:g}"])
    for line in changes:
        print(line)
    print(f"wrote {len(table)} models to {target}")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--target", type=Path, default=TARGET)
    args = parser.parse_args(argv)
    build(args.source, args.target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
