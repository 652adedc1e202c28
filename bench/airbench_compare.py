"""Puts a trainer run of an airbench preset beside its PyTorch reference run
(bench/airbench_reference.py): per-epoch test accuracy against training time, the wall time to
a test accuracy (without test-time augmentation, as both measure it after every epoch), the
final accuracies with the six-view test-time augmentation, and a PNG of both curves.

Both runs must have evaluated the test set after every epoch: the trainer with
`--test-each-epoch`, the reference always.

Example:
    ~/venv-torch/bin/python bench/airbench_compare.py runs/airbench94 runs/airbench94-pytorch \\
        --png docs/images/airbench94-cpu.png
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def read_run(folder: Path) -> tuple[list[dict], dict | None]:
    """The per-epoch rows of `metrics.csv` (numbers as floats, empty cells as None) and
    `summary.json` of a run folder (None while the run has not finished)."""
    rows = []
    with open(folder / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: (float(v) if v not in ("", None) else None) for k, v in row.items()})
    if not rows or any(r.get("test_accuracy") is None for r in rows):
        sys.exit(f"{folder}: metrics.csv has no per-epoch test accuracy (train with --test-each-epoch)")
    summary_file = folder / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else None
    return rows, summary


def elapsed(rows: list[dict]) -> list[float]:
    """Cumulative training seconds at the end of each epoch."""
    total, out = 0.0, []
    for row in rows:
        total += row["epoch_seconds"]
        out.append(total)
    return out


def time_to(rows: list[dict], accuracy: float) -> float | None:
    """Training seconds until the first epoch whose test accuracy reaches `accuracy`."""
    for seconds, row in zip(elapsed(rows), rows):
        if row["test_accuracy"] >= accuracy:
            return seconds
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trainer", type=Path, help="the trainer's run folder")
    parser.add_argument("pytorch", type=Path, help="the reference's output folder")
    parser.add_argument("--targets", default="0.90,0.93", help="accuracies to time (0–1, comma-separated)")
    parser.add_argument("--png", type=Path, help="write both curves here")
    parser.add_argument("--x", choices=["time", "epoch"], default="time",
                        help="the picture's horizontal axis (epoch: for runs timed on a busy machine)")
    args = parser.parse_args()

    runs = {"trainer": read_run(args.trainer), "pytorch": read_run(args.pytorch)}
    print(f"{'epoch':>5}  " + "  ".join(f"{name:>22}" for name in runs))
    longest = max(len(rows) for rows, _ in runs.values())
    for i in range(longest):
        cells = []
        for rows, _ in runs.values():
            if i < len(rows):
                cells.append(f"{100 * rows[i]['test_accuracy']:6.2f}% at {elapsed(rows)[i]:7.0f} s")
            else:
                cells.append(" " * 22)
        print(f"{i + 1:>5}  " + "  ".join(f"{c:>22}" for c in cells))
    targets = [float(t) for t in args.targets.split(",")]
    for name, (rows, summary) in runs.items():
        times = ", ".join(
            f"{100 * t:.0f} % in {s:.0f} s" if (s := time_to(rows, t)) is not None else f"{100 * t:.0f} % never"
            for t in targets
        )
        if summary is None:
            print(f"{name}: unfinished after {len(rows)} epochs "
                  f"({100 * rows[-1]['test_accuracy']:.2f}%), {elapsed(rows)[-1]:.0f} s of training; {times}")
            continue
        print(
            f"{name}: final {100 * summary['test_accuracy']:.2f}% with {summary.get('test_tta', '?')} "
            f"(last epoch without: {100 * rows[-1]['test_accuracy']:.2f}%), "
            f"{elapsed(rows)[-1]:.0f} s of training; {times}"
        )
    if all(summary is not None for _, summary in runs.values()):
        gap = runs["trainer"][1]["test_accuracy"] - runs["pytorch"][1]["test_accuracy"]
        print(f"trainer − pytorch, final: {100 * gap:+.2f} points")

    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
        for name, (rows, summary) in runs.items():
            xs = elapsed(rows) if args.x == "time" else [i + 1 for i in range(len(rows))]
            ax.plot(xs, [100 * r["test_accuracy"] for r in rows], marker="o", label=name)
            if summary is not None:
                ax.scatter([xs[-1]], [100 * summary["test_accuracy"]], marker="*", s=120,
                           label=f"{name}, test-time augmentation")
        ax.set_xlabel("training time (s)" if args.x == "time" else "epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(bottom=max(0, min(100 * r["test_accuracy"] for rows, _ in runs.values() for r in rows) - 5))
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title("test accuracy after each epoch")
        fig.tight_layout()
        args.png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
