"""The `.pth` fixtures of `trainer/tests/import_pth.rs`: PyTorch-made checkpoints of two
networks with random weights, saved the ways PyTorch users save them, and the logits PyTorch
computes with them, so that the test checks `trainer import --pytorch FILE.pth` against
PyTorch itself.

* `tiny-cnn.pth`: `torch.save(net.state_dict())` of the tiny-cnn twin (PyTorch's ZIP format).
* `resnet8-torchvision.pth`: a resnet8 (CIFAR ResNet, one block per stage) whose state dict
  uses torchvision's names (`conv1`, `bn1`, `layer1.0.conv1`, `layer2.0.downsample.0`, ...)
  behind DataParallel's `module.` prefix, nested in a training checkpoint
  (`{"epoch": 7, "state_dict": ...}`) and written in the legacy (pre-1.6) format.

Each has a JSON beside it with the normalisation `trainer import` reads from there and the
logits (float64) of the first images of the committed sample. Batch-norm statistics are
randomised too, so that running mean and variance are checked.

    python export/pth_fixture.py trainer/tests/fixtures

Needs PyTorch (see the README's "Speed on the CPU" for the install).
"""

import json
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "export"))
import torch_models  # noqa: E402
from pytorch_fixture import IMAGES  # noqa: E402

NORMALIZATION = {"mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]}
RESNET8 = {"kind": "resnet", "widths": [16, 32, 64], "blocks": [1, 1, 1], "bottleneck": False}


def randomised(net: torch.nn.Module) -> torch.nn.Module:
    """`net` in evaluation mode with random batch-norm statistics and affine parameters."""
    generator = torch.Generator().manual_seed(7)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return net.eval()


def torchvision_name(name: str) -> str:
    """The torchvision ResNet name of a twin's state-dict key."""
    name = re.sub(r"^stem\.", "conv1.", name)
    name = re.sub(r"^stem_bn\.", "bn1.", name)
    name = re.sub(r"^stages\.(\d+)\.", lambda m: f"layer{int(m[1]) + 1}.", name)
    return name.replace(".shortcut.conv.", ".downsample.0.").replace(
        ".shortcut.bn.", ".downsample.1."
    )


def write(folder: Path, stem: str, net: torch.nn.Module, save) -> None:
    with torch.no_grad():
        logits = net.double()(torch_models.sample_images(NORMALIZATION, IMAGES))
    net.float()
    save(folder / f"{stem}.pth")
    fixture = {
        "normalization": NORMALIZATION,
        "images": IMAGES,
        "logits": [round(v, 7) for v in logits.flatten().tolist()],
    }
    (folder / f"{stem}.json").write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"{stem}.pth: {len(net.state_dict())} tensors")


def main() -> int:
    folder = Path(sys.argv[1])
    torch.manual_seed(0)
    tiny = randomised(torch_models.build("tiny-cnn"))
    write(folder, "tiny-cnn", tiny, lambda path: torch.save(tiny.state_dict(), path))

    resnet8 = randomised(torch_models.from_net_config(RESNET8))

    def save_nested(path: Path) -> None:
        state = {f"module.{torchvision_name(k)}": v for k, v in resnet8.state_dict().items()}
        checkpoint = {"epoch": 7, "state_dict": state}
        torch.save(checkpoint, path, _use_new_zipfile_serialization=False)

    write(folder, "resnet8-torchvision", resnet8, save_nested)
    return 0


if __name__ == "__main__":
    sys.exit(main())
