"""PyTorch twins of cifar-burn's networks `tiny-cnn`, `basic-cnn`, `resnet20`, `resnet9` and
`airbench94`.

Each twin has the same layers, parameter shapes, forward pass and parameter count as the
Rust network in `model/src/zoo/` built from the configuration that `model/src/registry.rs`
gives the name. The configurations are kept in `NET_CONFIGS` in the same JSON form that
`trainer` writes into checkpoint metadata and `weights/manifest.json` (the serde form of
`NetConfig`), and `from_net_config` builds a network from such a configuration.

Submodules are named after the Rust struct fields, so a Burn checkpoint key maps to a
PyTorch `state_dict` key by
  * dropping the `net.<Family>.` prefix and the enum variant segments (`Conv`, `Basic`):
    `net.ResNet.stages.1.0.Basic.shortcut.conv.weight` -> `stages.1.0.shortcut.conv.weight`,
    `net.Cnn.layers.0.Conv.bn.gamma` -> `layers.0.bn.weight`;
  * renaming batch-norm `gamma`/`beta` to `weight`/`bias`;
  * transposing linear weights (Burn stores `[in, out]`, PyTorch `[out, in]`).
Pooling and dropout layers of the plain CNNs sit in `layers` too, so the indices agree.

`load_exported(path)` builds the twin of a `trainer export --format pytorch` file (which
already has these names and layouts) and loads it with `strict=True`.

Run as a script, it prints each network and its parameter count and exits with status 1 if
a count differs from `EXPECTED_PARAMS`.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import torch
from torch import nn

NUM_CLASSES = 10  # what a net config that names no "classes" predicts (CIFAR-10)
SAMPLE_TEST_BATCH = Path(__file__).resolve().parent.parent / "data/sample/test_batch.bin"
RECORD = 3073  # a label byte, then 3 x 32 x 32 pixel bytes


def sample_images(normalization: dict, count: int) -> torch.Tensor:
    """The first `count` images of the committed sample's test batch, normalised as
    `normalization` (`mean`, `std`) says, in float64."""
    data = SAMPLE_TEST_BATCH.read_bytes()[: count * RECORD]
    rows = [list(data[i * RECORD + 1 : (i + 1) * RECORD]) for i in range(count)]
    pixels = torch.tensor(rows, dtype=torch.float64).reshape(count, 3, 32, 32) / 255.0
    mean = torch.tensor(normalization["mean"], dtype=torch.float64).reshape(1, 3, 1, 1)
    std = torch.tensor(normalization["std"], dtype=torch.float64).reshape(1, 3, 1, 1)
    return (pixels - mean) / std
IMAGE_SIZE = 32

# Trainable parameters (weights, biases, batch-norm gamma/beta; no running statistics), as
# `Model::parameter_count` reports them on the Rust side.
EXPECTED_PARAMS = {
    "tiny-cnn": 30_762,
    "basic-cnn": 1_147_466,
    "resnet20": 272_474,
    "resnet9": 6_573_120,
    "airbench94": 1_972_792,
    "airbench93": 569_656,
}

# The Rust `NetConfig` of each registered name with default options (registry.rs).
NET_CONFIGS = {
    "tiny-cnn": {
        "kind": "cnn",
        "layers": [{"conv": 32}, "pool", {"conv": 32}, "pool", {"dropout": 0.3}],
        "batch_norm": True,
        "activation": "relu",
        "classifier": [],
        "classifier_batch_norm": False,
        "classifier_dropout": 0.0,
    },
    "basic-cnn": {
        "kind": "cnn",
        "layers": [{"conv": 32}, "pool", {"conv": 64}, "pool", {"conv": 128}, "pool"],
        "batch_norm": False,
        "activation": "relu",
        "classifier": [512],
        "classifier_batch_norm": False,
        "classifier_dropout": 0.25,
    },
    "resnet20": {
        "kind": "resnet",
        "widths": [16, 32, 64],
        "blocks": [3, 3, 3],
        "bottleneck": False,
    },
    "resnet9": {"kind": "resnet9", "width": 64, "logit_scale": 0.125},
    "airbench94": {"kind": "airbench", "widths": [64, 256, 256], "logit_scale": 1 / 9},
    "airbench93": {"kind": "airbench", "widths": [64, 128, 128], "logit_scale": 1 / 9},
}

# `Activation` of model/src/activation.rs, by its config name.
ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky-relu": lambda: nn.LeakyReLU(0.01),
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "swish": nn.SiLU,
    "mish": nn.Mish,
    "selu": nn.SELU,
    "gelu": nn.GELU,
}


def conv(cin: int, cout: int, kernel: int, stride: int, bias: bool) -> nn.Conv2d:
    """`layers::conv`: a `kernel`-square convolution with padding `kernel // 2`."""
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=bias)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """`layers::batch_norm`: eps 1e-5, momentum 0.1, affine."""
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


def max_pool2() -> nn.MaxPool2d:
    """`layers::max_pool2`: 2 x 2 max-pooling with stride 2."""
    return nn.MaxPool2d(2, stride=2)


class ConvBlock(nn.Module):
    """`layers::ConvBlock`: 3 x 3 stride-1 convolution, optional batch norm, activation.

    The convolution has a bias unless batch norm follows and `bias_with_bn` is false.
    """

    def __init__(
        self, cin: int, cout: int, with_bn: bool, bias_with_bn: bool, activation: str
    ) -> None:
        super().__init__()
        self.conv = conv(cin, cout, 3, 1, bias=not with_bn or bias_with_bn)
        self.bn = batch_norm(cout) if with_bn else None
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)


class Hidden(nn.Module):
    """`cnn::Hidden`: a hidden fully connected layer with optional batch norm."""

    def __init__(self, fan_in: int, units: int, with_bn: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(fan_in, units)
        self.bn = nn.BatchNorm1d(units, eps=1e-5, momentum=0.1) if with_bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        return x if self.bn is None else self.bn(x)


class Cnn(nn.Module):
    """`cnn::Cnn`: convolution / pool / dropout layers, then a fully connected classifier.

    Every convolution block's conv keeps its bias, even before batch norm (the Rust code
    builds it with `bias_with_bn = true`). In the head, each hidden layer is
    linear -> (batch norm) -> activation -> dropout(`classifier_dropout`); the dropout is
    applied only after hidden layers, never before the output layer.
    """

    def __init__(self, config: dict) -> None:
        super().__init__()
        activation = config["activation"]
        channels, side = 3, IMAGE_SIZE
        layers: list[nn.Module] = []
        for spec in config["layers"]:
            if spec == "pool":
                layers.append(max_pool2())
                side //= 2
            elif "conv" in spec:
                out = spec["conv"]
                layers.append(ConvBlock(channels, out, config["batch_norm"], True, activation))
                channels = out
            else:
                layers.append(nn.Dropout(spec["dropout"]))
        self.layers = nn.ModuleList(layers)
        width = channels * side * side
        hidden = []
        for units in config["classifier"]:
            hidden.append(Hidden(width, units, config["classifier_batch_norm"]))
            width = units
        self.hidden = nn.ModuleList(hidden)
        self.dropout = nn.Dropout(config["classifier_dropout"])
        self.output = nn.Linear(width, config.get("classes", NUM_CLASSES))
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        x = torch.flatten(x, 1)
        for layer in self.hidden:
            x = self.dropout(self.act(layer(x)))
        return self.output(x)


class Projection(nn.Module):
    """`resnet::Projection`: 1 x 1 strided convolution (no bias) and batch norm."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = conv(cin, cout, 1, stride, bias=False)
        self.bn = batch_norm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class BasicBlock(nn.Module):
    """`resnet::BasicBlock`: conv-BN-ReLU, conv-BN, add shortcut, ReLU.

    The shortcut is the identity when the shape is kept and a projection (option B) when
    the stride or the width changes; it is never the zero-padding option A.
    """

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv(cin, width, 3, stride, bias=False)
        self.bn1 = batch_norm(width)
        self.conv2 = conv(width, width, 3, 1, bias=False)
        self.bn2 = batch_norm(width)
        self.relu = nn.ReLU()
        self.shortcut = Projection(cin, width, stride) if stride != 1 or cin != width else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.relu(out + skip)


class ResNet(nn.Module):
    """`resnet::ResNet` with basic blocks: 3 x 3 stem with BN and ReLU, residual stages (the
    first block of every stage but the first has stride 2), global average pool, linear.
    """

    def __init__(self, config: dict) -> None:
        super().__init__()
        if config["bottleneck"]:
            raise NotImplementedError("bottleneck ResNets (resnet50+) have no twin yet")
        widths, blocks = config["widths"], config["blocks"]
        self.stem = conv(3, widths[0], 3, 1, bias=False)
        self.stem_bn = batch_norm(widths[0])
        self.relu = nn.ReLU()
        channels = widths[0]
        stages = []
        for i, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            stage = []
            for b in range(count):
                stage.append(BasicBlock(channels, width, 2 if i > 0 and b == 0 else 1))
                channels = width
            stages.append(nn.ModuleList(stage))
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, config.get("classes", NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.stem_bn(self.stem(x)))
        for stage in self.stages:
            for block in stage:
                x = block(x)
        return self.fc(torch.flatten(self.pool(x), 1))


class Stage(nn.Module):
    """`resnet9::Stage`: conv block, 2 x 2 max-pool, then optionally `x + b(a(x))`.

    There is no activation after the residual addition.
    """

    def __init__(self, cin: int, cout: int, residual: bool) -> None:
        super().__init__()
        self.conv = resnet9_block(cin, cout)
        self.pool = max_pool2()
        self.residual = (
            nn.ModuleList([resnet9_block(cout, cout), resnet9_block(cout, cout)])
            if residual
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.conv(x))
        if self.residual is None:
            return x
        a, b = self.residual
        return x + b(a(x))


def resnet9_block(cin: int, cout: int) -> ConvBlock:
    """ResNet-9's unit: conv (no bias) -> BN -> ReLU."""
    return ConvBlock(cin, cout, with_bn=True, bias_with_bn=False, activation="relu")


class ResNet9(nn.Module):
    """`resnet9::ResNet9`: prep w -> [2w, pool, residual] -> [4w, pool] -> [8w, pool,
    residual] -> 4 x 4 global max-pool -> linear without bias -> logits x `logit_scale`.
    """

    def __init__(self, config: dict) -> None:
        super().__init__()
        w = config["width"]
        self.prep = resnet9_block(3, w)
        self.layer1 = Stage(w, 2 * w, residual=True)
        self.layer2 = Stage(2 * w, 4 * w, residual=False)
        self.layer3 = Stage(4 * w, 8 * w, residual=True)
        self.global_max = nn.MaxPool2d(4, stride=4)
        self.fc = nn.Linear(8 * w, config.get("classes", NUM_CLASSES), bias=False)
        self.logit_scale = config["logit_scale"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))
        return self.fc(torch.flatten(self.global_max(x), 1)) * self.logit_scale


class AirbenchGroup(nn.Module):
    """`airbench::Group`: conv -> 2 x 2 max-pool -> BN -> GELU -> conv -> BN -> GELU, the
    convolutions without bias, the batch norms with eps 1e-12."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.pool = max_pool2()
        self.norm1 = nn.BatchNorm2d(cout, eps=1e-12, momentum=0.4)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(cout, eps=1e-12, momentum=0.4)
        self.activ = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class Airbench(nn.Module):
    """`airbench::Airbench`: 2 x 2 whitening conv (24 filters, bias, no padding) -> GELU ->
    three groups -> 3 x 3 max-pool -> linear without bias -> logits x `logit_scale`. (The
    whitening weights and the batch-norm scales are frozen in training; a twin for inference
    leaves them trainable, so its parameter count is the Rust one.)"""

    def __init__(self, config: dict) -> None:
        super().__init__()
        a, b, c = config["widths"]
        self.whiten = nn.Conv2d(3, 24, 2, padding=0, bias=True)
        self.block1 = AirbenchGroup(24, a)
        self.block2 = AirbenchGroup(a, b)
        self.block3 = AirbenchGroup(b, c)
        self.pool = nn.MaxPool2d(3)
        self.fc = nn.Linear(c, config.get("classes", NUM_CLASSES), bias=False)
        self.logit_scale = config["logit_scale"]
        self.activ = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.whiten(x))
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(torch.flatten(self.pool(x), 1)) * self.logit_scale


FAMILIES = {"cnn": Cnn, "resnet": ResNet, "resnet9": ResNet9, "airbench": Airbench}


def from_net_config(config: dict) -> nn.Module:
    """Builds the network described by a Rust `NetConfig` in its JSON form."""
    kind = config["kind"]
    if kind not in FAMILIES:
        raise ValueError(f"no PyTorch twin for network kind `{kind}`")
    return FAMILIES[kind](config)


def build(name: str) -> nn.Module:
    """The twin of the registered model `name` with its default options."""
    if name not in NET_CONFIGS:
        raise ValueError(f"unknown model `{name}`; choose one of {', '.join(NET_CONFIGS)}")
    return from_net_config(NET_CONFIGS[name])


def count_params(module: nn.Module) -> int:
    """Number of trainable parameters (batch-norm running statistics are buffers, not
    counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


SAFETENSORS_DTYPES = {"F32": torch.float32, "I64": torch.int64}


def read_safetensors(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the metadata of a SafeTensors file (the format is a little-endian
    header length, a JSON header, then the raw tensor bytes), without the `safetensors`
    package."""
    data = open(path, "rb").read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    metadata = header.pop("__metadata__", {})
    body = data[8 + length :]
    tensors = {}
    for name, entry in header.items():
        start, end = entry["data_offsets"]
        dtype = SAFETENSORS_DTYPES[entry["dtype"]]
        flat = torch.frombuffer(bytearray(body[start:end]), dtype=dtype)
        tensors[name] = flat.reshape(entry["shape"]).clone()
    return tensors, metadata


def load_exported(path: str) -> tuple[nn.Module, dict]:
    """The twin of a `trainer export --format pytorch` file, with its weights loaded
    (`strict=True`), in eval mode; and the file's metadata (`net_config`, `normalization`,
    `classes` as parsed JSON)."""
    state, metadata = read_safetensors(path)
    if metadata.get("format") != "pytorch-state-dict":
        raise ValueError(f"{path} is not a `trainer export --format pytorch` file")
    meta = {key: json.loads(metadata[key]) for key in ("net_config", "normalization", "classes")}
    meta["model"] = metadata.get("model")
    net = from_net_config(meta["net_config"])
    net.load_state_dict(state, strict=True)
    return net.eval(), meta


def main() -> int:
    """Prints every twin and its parameter count; 1 if a count is off, else 0."""
    failed = []
    for name, expected in EXPECTED_PARAMS.items():
        model = build(name)
        count = count_params(model)
        with torch.no_grad():
            logits = model.eval()(torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE))
        status = "ok" if count == expected else f"MISMATCH (expected {expected:,})"
        print(f"== {name}\n{model}")
        print(f"{name}: {count:,} parameters, logits {tuple(logits.shape)}: {status}\n")
        if count != expected or logits.shape != (2, NUM_CLASSES):
            failed.append(name)
    if failed:
        print(f"parameter count or output shape wrong for: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("all parameter counts match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
