"""The PyTorch reference for the trainer's `airbench94` and `airbench93` presets: Keller
Jordan's published recipes (KellerJordan/cifar10-airbench: `legacy/airbench94.py`, and
`airbench/lib_airbench93.py` with the library's training loop in `airbench/utils.py`),
re-implemented step for step on the CPU in float32 (the originals run in half precision on a
GPU) and fed the CIFAR-10 binary batches the trainer reads.

What it keeps from the originals: the network (frozen 2 × 2 whitening convolution set from the
patch covariance of the first 5,000 training images, GELU, three conv groups with Dirac
initialisation, batch norms with eps 1e-12, momentum 0.4 and a frozen scale, 3 × 3 max-pool,
bias-free head × 1/9), the data pipeline (normalisation by the fixed CIFAR-10 mean/std, a
random half of the images flipped once, every image flipped in odd epochs, 2-pixel translation
into reflect padding, a new permutation per epoch, the last incomplete batch dropped), the
optimizer (Nesterov SGD, momentum 0.85, summed label-smoothed loss, batch-norm shifts at 64× the
learning rate with the same decay per step), the triangle schedule by step, lookahead (every 5
steps, decay 0.95^5 · (step / steps)^3; `94`: from the first step, the average copied into the
network after the last step; `93`: from the 4th epoch, copied after every epoch), the whitening
bias frozen after 3 epochs, ⌈48 × 9.9⌉ = 476 (94) or 48 × 11 = 528 (93) steps, and the
six-view test-time augmentation.

It prints a line per epoch (training loss and accuracy over the epoch, test accuracy without
test-time augmentation, the epoch's training seconds) and writes a `metrics.csv` with the
trainer's columns and a `summary.json`, so `bench/airbench_compare.py` can put a trainer run and
this one side by side. Training time counts the training steps only (as the trainer's
`epoch_seconds`), not the evaluations nor the whitening layer's set-up (well under a second).

Example:
    ~/venv-torch/bin/python bench/airbench_reference.py --variant 94 --out runs/airbench94-pytorch
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:
    print(
        "PyTorch or numpy is not installed. Install them in a virtual environment, e.g.\n"
        "  python3 -m venv ~/venv-torch && ~/venv-torch/bin/pip install torch numpy\n"
        "and run this script with ~/venv-torch/bin/python.",
        file=sys.stderr,
    )
    sys.exit(2)

RECORD_BYTES = 3073
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILE = "test_batch.bin"
# The originals normalise with these fixed CIFAR-10 statistics.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
METRICS_COLUMNS = [
    "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
    "epoch_seconds", "train_images_per_sec", "test_loss", "test_accuracy",
]

# The two recipes; everything not listed is shared.
VARIANTS = {
    "94": {"widths": (64, 256, 256), "epochs": 9.9, "lookahead_from_epoch": 0, "copy_each_epoch": False},
    "93": {"widths": (64, 128, 128), "epochs": 11.0, "lookahead_from_epoch": 3, "copy_each_epoch": True},
}
HYP = {
    "batch_size": 1024,
    "lr": 11.5,  # per 1024 examples, decoupled from momentum
    "momentum": 0.85,
    "weight_decay": 0.0153,  # per 1024 examples, decoupled from the learning rate
    "bias_scaler": 64.0,
    "label_smoothing": 0.2,
    "whiten_bias_epochs": 3,
    "translate": 2,
    "bn_momentum": 0.6,
    "logit_scale": 1 / 9,
    "whiten_images": 5000,
    "whiten_eps": 5e-4,
    "lookahead_every": 5,
}


def read_split(data_dir: Path, files: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images `[n, 3, 32, 32]` and int64 labels of CIFAR-10 binary batches."""
    parts = []
    for name in files:
        path = data_dir / name
        if not path.is_file():
            sys.exit(f"{path} is missing (CIFAR-10 binary version; set --data-dir)")
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % RECORD_BYTES:
            sys.exit(f"{path}: {raw.size} bytes is not a whole number of {RECORD_BYTES}-byte records")
        parts.append(raw.reshape(-1, RECORD_BYTES))
    records = np.concatenate(parts)
    images = torch.from_numpy(records[:, 1:].reshape(-1, 3, 32, 32).copy())
    labels = torch.from_numpy(records[:, 0].astype(np.int64))
    return images, labels


def normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


class TrainLoader:
    """airbench's training loader: flips a random half once, translates into reflect padding
    every epoch, flips everything in odd epochs, shuffles, drops the last incomplete batch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, translate: int):
        self.labels = labels
        self.batch_size = batch_size
        self.translate = translate
        base = normalise(images)
        flip = torch.rand(len(base)) < 0.5
        base = torch.where(flip.view(-1, 1, 1, 1), base.flip(-1), base)
        self.padded = F.pad(base, (translate,) * 4, mode="reflect")
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def crop(self) -> torch.Tensor:
        """Every image cut 32 × 32 from its padded copy at a random shift in ±translate."""
        r, n = self.translate, len(self.padded)
        shifts = torch.randint(-r, r + 1, size=(n, 2))
        out = torch.empty((n, 3, 32, 32))
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                picked = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
                out[picked] = self.padded[picked, :, r + dy : r + dy + 32, r + dx : r + dx + 32]
        return out

    def __iter__(self):
        images = self.crop()
        if self.epoch % 2 == 1:
            images = images.flip(-1)
        self.epoch += 1
        order = torch.randperm(len(images))
        for i in range(len(self)):
            picked = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield images[picked].contiguous(), self.labels[picked]


class BatchNorm(nn.BatchNorm2d):
    """Batch norm with a frozen scale of 1 and airbench's eps and momentum."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=1e-12, momentum=1 - HYP["bn_momentum"])
        self.weight.requires_grad = False


class Conv(nn.Conv2d):
    """A bias-free 3 × 3 'same' convolution whose first filters start as identities."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, kernel_size=3, padding="same", bias=False)
        with torch.no_grad():
            nn.init.dirac_(self.weight[: self.weight.size(1)])


class ConvGroup(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = Conv(cin, cout)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNorm(cout)
        self.conv2 = Conv(cout, cout)
        self.norm2 = BatchNorm(cout)
        self.activ = nn.GELU()

    def forward(self, x):
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def make_net(widths) -> nn.Sequential:
    net = nn.Sequential(
        nn.Conv2d(3, 24, kernel_size=2, padding=0, bias=True),
        nn.GELU(),
        ConvGroup(24, widths[0]),
        ConvGroup(widths[0], widths[1]),
        ConvGroup(widths[1], widths[2]),
        nn.MaxPool2d(3),
        nn.Flatten(),
        nn.Linear(widths[2], 10, bias=False),
        Scale(HYP["logit_scale"]),
    )
    with torch.no_grad():
        net[0].bias.zero_()
    net[0].weight.requires_grad = False
    return net


def whiten(layer: nn.Conv2d, images: torch.Tensor) -> None:
    """Sets the whitening filters: eigenvectors of the uncentred 2 × 2 patch covariance,
    largest eigenvalue first, scaled by 1/√(λ + eps), then the same negated."""
    c, (h, w) = images.shape[1], layer.weight.shape[2:]
    patches = images.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c * h * w)
    covariance = patches.T @ patches / len(patches)
    values, vectors = torch.linalg.eigh(covariance.double())
    values, vectors = values.flip(0), vectors.T.flip(0)
    filters = (vectors / torch.sqrt(values + HYP["whiten_eps"]).view(-1, 1)).float()
    filters = filters.reshape(c * h * w, c, h, w)
    with torch.no_grad():
        layer.weight.copy_(torch.cat((filters, -filters)))


class Lookahead:
    """An average of every float tensor of the network's state; each update moves it towards
    the network and copies it back."""

    def __init__(self, net: nn.Module):
        self.average = {k: v.detach().clone() for k, v in net.state_dict().items()}

    @torch.no_grad()
    def update(self, net: nn.Module, decay: float) -> None:
        for key, value in net.state_dict().items():
            if value.is_floating_point():
                self.average[key].lerp_(value, 1 - decay)
                value.copy_(self.average[key])


def triangle(step: int, total: int) -> float:
    """The learning-rate factor of step `step` (0-based): 0.2 → 1 over the first 23 % of the
    steps, then → 0.07 at the end."""
    peak = int(0.23 * total)
    if step < peak:
        return 0.2 + 0.8 * step / peak
    return 1.0 + (0.07 - 1.0) * (step - peak) / (total - peak)


@torch.no_grad()
def evaluate(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, tta: int) -> tuple[float, float]:
    """Test loss and accuracy; `tta` 0 = the image, 1 = with its mirror, 2 = six views."""
    net.eval()

    def mirror(x):
        return 0.5 * net(x) + 0.5 * net(x.flip(-1))

    def views(x):
        if tta == 0:
            return net(x)
        if tta == 1:
            return mirror(x)
        padded = F.pad(x, (1,) * 4, mode="reflect")
        shifted = (mirror(padded[:, :, 0:32, 0:32]) + mirror(padded[:, :, 2:34, 2:34])) / 2
        return 0.5 * mirror(x) + 0.5 * shifted

    logits = torch.cat([views(x) for x in images.split(2000)])
    net.train()
    loss = F.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="94")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("CIFAR10_DIR", "../shared/data/cifar-10-batches-bin")),
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for metrics.csv and summary.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="train on the first N images only (a quick check)")
    parser.add_argument("--epochs", type=float, help="override the variant's epochs")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    variant = VARIANTS[args.variant]
    epochs = args.epochs or variant["epochs"]
    train_images, train_labels = read_split(args.data_dir, TRAIN_FILES)
    test_images, test_labels = read_split(args.data_dir, [TEST_FILE])
    if args.limit:
        train_images, train_labels = train_images[: args.limit], train_labels[: args.limit]
    test_inputs = normalise(test_images)

    batch_size = HYP["batch_size"]
    loader = TrainLoader(train_images, train_labels, batch_size, HYP["translate"])
    total_steps = math.ceil(len(loader) * epochs)
    # The originals' decoupled hyperparameters, turned into PyTorch SGD's.
    kilostep = 1024 * (1 + 1 / (1 - HYP["momentum"]))
    lr = HYP["lr"] / kilostep
    wd = HYP["weight_decay"] * batch_size / kilostep
    lr_biases = lr * HYP["bias_scaler"]

    net = make_net(variant["widths"])
    norm_biases = [p for k, p in net.named_parameters() if "norm" in k and p.requires_grad]
    others = [p for k, p in net.named_parameters() if "norm" not in k and p.requires_grad]
    optimizer = torch.optim.SGD(
        [
            {"params": norm_biases, "lr": lr_biases, "weight_decay": wd / lr_biases},
            {"params": others, "lr": lr, "weight_decay": wd / lr},
        ],
        momentum=HYP["momentum"],
        nesterov=True,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: triangle(step, total_steps))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=HYP["label_smoothing"], reduction="none")

    whiten(net[0], normalise(train_images[: HYP["whiten_images"]]))
    lookahead = Lookahead(net) if variant["lookahead_from_epoch"] == 0 else None
    every = HYP["lookahead_every"]

    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    steps = 0
    print(f"airbench{args.variant} reference: {len(loader)} steps per epoch, {total_steps} steps, "
          f"{sum(p.numel() for p in net.parameters())} parameters, {args.threads} threads")
    for epoch in range(math.ceil(epochs)):
        net[0].bias.requires_grad = epoch < HYP["whiten_bias_epochs"]
        # In the trainer's units: the rate of the mean (not summed) loss.
        epoch_lr = optimizer.param_groups[1]["lr"] * batch_size
        begin = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        for inputs, labels in loader:
            outputs = net(inputs)
            loss = loss_fn(outputs, labels).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            steps += 1
            loss_sum += loss.item()
            correct += (outputs.detach().argmax(1) == labels).sum().item()
            seen += len(labels)
            if steps % every == 0 and epoch >= variant["lookahead_from_epoch"]:
                decay = 0.95**every * (steps / total_steps) ** 3
                if lookahead is None:
                    lookahead = Lookahead(net)
                else:
                    lookahead.update(net, decay)
            if steps >= total_steps:
                if lookahead is not None:
                    lookahead.update(net, 1.0)
                break
        if variant["copy_each_epoch"] and lookahead is not None:
            lookahead.update(net, 1.0)
        seconds = time.perf_counter() - begin
        test_loss, test_accuracy = evaluate(net, test_inputs, test_labels, tta=0)
        rows.append({
            "epoch": epoch + 1,
            "train_loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "val_loss": "",
            "val_accuracy": "",
            "lr": epoch_lr,
            "epoch_seconds": seconds,
            "train_images_per_sec": seen / seconds,
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
        })
        print(f"epoch {epoch + 1}: train loss {loss_sum / seen:.4f} acc {100 * correct / seen:.2f}%  "
              f"test acc {100 * test_accuracy:.2f}%  {seconds:.1f} s  {seen / seconds:.0f} img/s", flush=True)
        with open(args.out / "metrics.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRICS_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    test_loss, tta_accuracy = evaluate(net, test_inputs, test_labels, tta=2)
    summary = {
        "implementation": "pytorch",
        "variant": f"airbench{args.variant}",
        "torch": torch.__version__,
        "threads": args.threads,
        "steps": steps,
        "epochs": len(rows),
        "test_accuracy_no_tta": rows[-1]["test_accuracy"],
        "test_accuracy": tta_accuracy,
        "test_tta": "mirror-translate",
        "test_loss": test_loss,
        "total_train_seconds": sum(r["epoch_seconds"] for r in rows),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"test accuracy with six-view test-time augmentation: {100 * tta_accuracy:.2f}% "
          f"(without: {100 * rows[-1]['test_accuracy']:.2f}%), "
          f"{summary['total_train_seconds']:.0f} s of training")


if __name__ == "__main__":
    main()
