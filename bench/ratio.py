"""Joins a `trainer bench` CSV and a bench/pytorch_reference.py CSV on (model, phase) and
prints the throughput of each side and their ratio (trainer / pytorch; above 1 means the
trainer is faster). Rows only the trainer has (phase `data`, the input pipeline alone) are
printed with `–` for PyTorch.

Exits with status 1 when a model's parameter count differs between the two files (the
networks compared would not be the same) or when a file is not a bench CSV.

Usage: python bench/ratio.py TRAINER_CSV PYTORCH_CSV
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

HEADER = [
    "impl", "backend", "model", "params", "phase", "batch", "threads", "steps",
    "img_per_s", "ms_median", "ms_min", "ms_max", "peak_mb", "ms_first",
]
DASH = "–"


def read(path: Path) -> list[dict[str, str]]:
    """The rows of a bench CSV; exits if its header is not the bench header."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != HEADER:
            sys.exit(f"{path}: header {reader.fieldnames} is not {','.join(HEADER)}")
        return list(reader)


def grouped(params: str) -> str:
    """`272474` -> `272,474`; anything that is not an integer is shown as it is."""
    return f"{int(params):,}" if params.isdigit() else params or DASH


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    trainer_path, pytorch_path = map(Path, argv)
    trainer, pytorch = read(trainer_path), read(pytorch_path)
    reference = {(r["model"], r["phase"]): r for r in pytorch}

    backends = ", ".join(sorted({r["backend"] for r in trainer}))
    ref_backends = ", ".join(sorted({r["backend"] for r in pytorch}))
    print(f"trainer ({backends}) vs pytorch ({ref_backends}); ratio = trainer / pytorch img/s")
    print("model       phase    params   trainer img/s   pytorch img/s   ratio  trainer backend")

    mismatched = []
    matched = set()
    for row in trainer:
        ref = reference.get((row["model"], row["phase"]))
        if ref is None:
            theirs, ratio = DASH, DASH
        else:
            theirs = f"{float(ref['img_per_s']):.1f}"
            ratio = f"{float(row['img_per_s']) / float(ref['img_per_s']):.2f}×"
            matched.add((row["model"], row["phase"]))
            if row["params"] != ref["params"]:
                mismatched.append((row["model"], row["params"], ref["params"]))
        print(f"{row['model']:<12}{row['phase']:<5}{grouped(row['params']):>10}"
              f"{float(row['img_per_s']):>16.1f}{theirs:>16}{ratio:>8}  {row['backend']}")
    for key, ref in reference.items():  # measured by PyTorch only
        if key in matched:
            continue
        print(f"{ref['model']:<12}{ref['phase']:<5}{grouped(ref['params']):>10}"
              f"{DASH:>16}{float(ref['img_per_s']):>16.1f}{DASH:>8}")

    for model, ours, theirs in dict.fromkeys(mismatched):
        print(f"{model}: {grouped(ours)} parameters in {trainer_path}, "
              f"{grouped(theirs)} in {pytorch_path}: not the same network", file=sys.stderr)
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
