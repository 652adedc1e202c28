"""Times the PyTorch twins of cifar-burn's networks (export/torch_models.py) on real CIFAR-10
records, as the reference that `trainer bench` is compared against (see bench/compare).

For every model it times train steps (forward, mean cross-entropy, backward, optimizer step)
and inference (eval mode, no autograd), each step on its own after untimed warm-up steps, and
prints a table and writes a CSV in the same format as `trainer bench`. Batches are built
before timing, so only model work is timed.

Example:
    python bench/pytorch_reference.py --models resnet20 --steps 20 --csv bench-pytorch.csv
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import importlib.util
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError:
    print(
        "PyTorch or numpy is not installed. Install them in a virtual environment, e.g.\n"
        "  python3 -m venv ~/venv-torch && ~/venv-torch/bin/pip install torch numpy\n"
        "and run this script with ~/venv-torch/bin/python (bench/compare: PYTHON=...).",
        file=sys.stderr,
    )
    sys.exit(2)

REPO = Path(__file__).resolve().parent.parent
RECORD_BYTES = 3073  # 1 label byte + 3 x 32 x 32 pixel bytes, channel-major
IMAGE_VALUES = 3072
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILE = "test_batch.bin"
SEED = 0
CSV_HEADER = [
    "impl", "backend", "model", "params", "phase", "batch", "threads", "steps",
    "img_per_s", "ms_median", "ms_min", "ms_max", "peak_mb", "ms_first",
]
TABLE_HEADER = "model       phase   batch     img/s   ms/step median (min–max)   peak MB"


def load_twins():
    """Imports export/torch_models.py by path (the export folder is not a package)."""
    spec = importlib.util.spec_from_file_location("torch_models", REPO / "export" / "torch_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_records(path: Path) -> np.ndarray:
    """The records of one CIFAR-10 binary batch as a `[n, 3073]` uint8 array."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD_BYTES:
        sys.exit(f"{path}: {raw.size} bytes is not a whole number of {RECORD_BYTES}-byte records")
    return raw.reshape(-1, RECORD_BYTES)


def channel_stats(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) standard deviation on the 0–1 scale of `[n, 3072]`
    channel-major pixels, as `Normalization::measure` computes them."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    for start in range(0, len(pixels), 1000):
        chunk = pixels[start : start + 1000].reshape(-1, 3, 1024).astype(np.float64)
        total += chunk.sum(axis=(0, 2))
        total_sq += np.square(chunk).sum(axis=(0, 2))
    count = len(pixels) * 1024
    mean = total / count / 255.0
    var = np.maximum(total_sq / count / 255.0**2 - mean**2, 1e-12)
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


@dataclass
class Batches:
    """Ready-made `(images, labels)` batches for the train and the inference phases."""

    train: list[tuple[torch.Tensor, torch.Tensor]]
    infer: list[tuple[torch.Tensor, torch.Tensor]]
    train_records: int
    infer_records: int


def make_batches(records: np.ndarray, mean, std, batch: int, count: int, device) -> list:
    """`count` batches of `batch` records each, taken in a seeded shuffled order that wraps
    around, normalised to float32 NCHW on `device`."""
    order = np.random.default_rng(SEED).permutation(len(records))
    batches = []
    for i in range(count):
        picked = records[order[np.arange(i * batch, (i + 1) * batch) % len(records)]]
        images = picked[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
        images = (images - mean[None, :, None, None]) / std[None, :, None, None]
        labels = picked[:, 0].astype(np.int64)
        batches.append((torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)))
    return batches


def load_batches(data_dir: Path, args, device) -> Batches:
    """Reads the training records (and the test records for inference when present),
    measures the normalisation on the training records and builds every batch."""
    missing = [f for f in TRAIN_FILES if not (data_dir / f).is_file()]
    if missing:
        sys.exit(f"{data_dir}: missing {', '.join(missing)} (CIFAR-10 binary version)")
    train = np.concatenate([read_records(data_dir / f) for f in TRAIN_FILES])
    test = read_records(data_dir / TEST_FILE) if (data_dir / TEST_FILE).is_file() else train
    mean, std = channel_stats(train[:, 1:])
    count = args.warmup + args.steps
    return Batches(
        train=make_batches(train, mean, std, args.batch_size, count, device),
        infer=make_batches(test, mean, std, args.infer_batch, count, device),
        train_records=len(train),
        infer_records=len(test),
    )


class PeakMemory:
    """Peak memory of a stretch of work: the process's peak RSS on the CPU (reset through
    /proc/self/clear_refs), the peak of allocated memory on CUDA. In MB of 10^6 bytes."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass  # not Linux, or not allowed: the peak then covers the whole run so far

    def read(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated() / 1e6
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
        except OSError:
            pass
        return float("nan")


def time_steps(step, batches, warmup: int, sync) -> tuple[float, list[float]]:
    """Runs `step` on every batch; returns the seconds of the first step (on a GPU it includes
    cuDNN's algorithm search and CUDA's start-up) and of each step after the warm-up."""
    times = []
    for images, labels in batches:
        sync()
        start = time.perf_counter()
        step(images, labels)
        sync()
        times.append(time.perf_counter() - start)
    return times[0], times[warmup:]


def make_optimizer(name: str, params) -> torch.optim.Optimizer:
    """The optimizer `trainer bench --optimizer` uses with the same name."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return torch.optim.Adam(params, lr=1e-3)


@dataclass
class Row:
    """One measured phase of one model."""

    model: str
    params: int
    phase: str
    batch: int
    times: list[float]
    peak_mb: float
    first_s: float

    @property
    def median_s(self) -> float:
        return statistics.median(self.times)

    @property
    def img_per_s(self) -> float:
        return self.batch / self.median_s

    def table_line(self) -> str:
        span = f"({min(self.times) * 1e3:.1f}–{max(self.times) * 1e3:.1f})"
        peak = f"{self.peak_mb:.0f}"
        # The span and the peak share 27 columns, so the peak stays right-aligned however
        # wide the span is (and at least one space apart from it).
        gap = " " * max(1, 27 - len(span) - len(peak))
        return (
            f"{self.model:<12}{self.phase:<5}{self.batch:>8}{self.img_per_s:>10.1f}"
            f"{self.median_s * 1e3:>10.1f} {span}{gap}{peak}"
        )


def bench_model(name: str, twins, batches: Batches, args, device, peak: PeakMemory) -> list[Row]:
    """Times the train and the inference phase of one model."""
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else lambda: None
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if args.amp == "bf16"
        else contextlib.nullcontext
    )

    peak.reset()
    torch.manual_seed(SEED)
    model = twins.build(name).to(device)
    params = twins.count_params(model)
    optimizer = make_optimizer(args.optimizer, model.parameters())

    def train_step(images, labels):
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    model.train()
    first, train_times = time_steps(train_step, batches.train, args.warmup, sync)
    train = Row(name, params, "train", args.batch_size, train_times, peak.read(), first)

    del optimizer
    model.zero_grad(set_to_none=True)
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()

    def infer_step(images, _labels):
        with torch.inference_mode(), autocast():
            model(images)

    peak.reset()
    model.eval()
    first, infer_times = time_steps(infer_step, batches.infer, args.warmup, sync)
    infer = Row(name, params, "infer", args.infer_batch, infer_times, peak.read(), first)
    return [train, infer]


def parse_args() -> argparse.Namespace:
    default_data = os.environ.get("CIFAR10_DIR") or str(REPO / "data" / "sample")
    p = argparse.ArgumentParser(
        description="Benchmark the PyTorch twins of cifar-burn's networks (train and inference).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--models", default="tiny-cnn,basic-cnn,resnet20,resnet9",
                   help="comma-separated model names")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run")
    p.add_argument("--amp", choices=["none", "bf16"], default="none",
                   help="bf16 autocast around forward and loss")
    p.add_argument("--batch-size", type=int, default=128, help="train batch size")
    p.add_argument("--infer-batch", type=int, default=256, help="inference batch size")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--steps", type=int, default=20, help="timed steps per phase")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd",
                   help="sgd: lr 0.01, momentum 0.9, nesterov, weight decay 5e-4; adam: lr 1e-3")
    p.add_argument("--data-dir", type=Path, default=Path(default_data),
                   help="folder of the CIFAR-10 binary batches ($CIFAR10_DIR, else data/sample)")
    p.add_argument("--csv", type=Path, default=Path("bench-pytorch.csv"), help="CSV to write")
    args = p.parse_args()
    for flag in ("batch_size", "infer_batch", "threads", "steps"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        p.error("--warmup must be at least 0")
    return args


def main() -> int:
    args = parse_args()
    # Thread settings first: set_num_interop_threads fails once parallel work has started.
    torch.set_num_threads(args.threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)

    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available to PyTorch", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    backend = args.device + ("-bf16" if args.amp == "bf16" else "")

    twins = load_twins()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in twins.EXPECTED_PARAMS]
    if unknown:
        print(f"no PyTorch twin for {', '.join(unknown)}; "
              f"known: {', '.join(twins.EXPECTED_PARAMS)}", file=sys.stderr)
        return 2
    counts = {m: twins.count_params(twins.build(m)) for m in models}
    wrong = [m for m in models if counts[m] != twins.EXPECTED_PARAMS[m]]
    for m in wrong:
        print(f"{m}: the PyTorch twin has {counts[m]:,} parameters, "
              f"the Rust model {twins.EXPECTED_PARAMS[m]:,}", file=sys.stderr)
    if wrong:
        return 1

    batches = load_batches(args.data_dir, args, device)
    gc.collect()
    print(f"pytorch {torch.__version__} on {backend} ({args.threads} threads), "
          f"batch {args.batch_size} train / {args.infer_batch} inference, "
          f"{args.steps} steps after {args.warmup} warm-up", flush=True)
    print(f"data: {args.data_dir} ({batches.train_records} train records, "
          f"{batches.infer_records} inference records)", file=sys.stderr)
    print(TABLE_HEADER, flush=True)

    peak = PeakMemory(device)
    rows = []
    for name in models:
        for row in bench_model(name, twins, batches, args, device, peak):
            print(row.table_line(), flush=True)
            rows.append(row)

    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_HEADER)
        for r in rows:
            writer.writerow([
                "pytorch", backend, r.model, r.params, r.phase, r.batch, args.threads,
                len(r.times), f"{r.img_per_s:.2f}", f"{r.median_s * 1e3:.3f}",
                f"{min(r.times) * 1e3:.3f}", f"{max(r.times) * 1e3:.3f}", f"{r.peak_mb:.1f}",
                f"{r.first_s * 1e3:.3f}",
            ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
