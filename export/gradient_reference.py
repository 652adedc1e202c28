"""Reference gradients for `trainer/tests/flex_kernels.rs`, computed by PyTorch in float64.

The test writes its inputs for each model it checks (the seeded weights under Burn's names,
one batch of the committed CIFAR sample, normalised, and its one-hot targets) to
`DIR/<model>.json` when run with `FLEX_GRADIENT_DUMP=DIR`; this script loads one into the
PyTorch twin of `torch_models.py` (dropout as the dump says),
takes the cross-entropy loss in training mode (batch statistics) and writes, for the input
and every parameter, the gradient's norm and its dot product with a fixed probe vector
(element j: frac(j * 2654435761 / 2**32) - 0.5, the same in the test).

    mkdir -p /tmp/dumps
    FLEX_GRADIENT_DUMP=/tmp/dumps cargo test --release -p trainer --test flex_kernels
    for m in resnet20 basic-cnn; do
      python export/gradient_reference.py /tmp/dumps/$m.json trainer/tests/fixtures/${m}_step0_pytorch.json
    done

Needs PyTorch (see the README's "Speed on the CPU" for a CPU-only install).
"""

import json
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_models  # noqa: E402


def torch_name(burn_name: str) -> str:
    """`net.ResNet.stages.0.1.Basic.bn1.gamma` -> `stages.0.1.bn1.weight`, as the
    docstring of `torch_models.py` says."""
    name = re.sub(r"^net\.[A-Za-z0-9]+\.", "", burn_name)
    name = name.replace(".Basic.", ".").replace(".Conv.", ".")
    return name.replace(".gamma", ".weight").replace(".beta", ".bias")


def transposed(name: str, shape: list) -> bool:
    """Burn's `Linear` stores its weight `[in, out]`, PyTorch's `[out, in]`."""
    return name.endswith(".weight") and len(shape) == 2


def probe(n: int) -> torch.Tensor:
    j = torch.arange(n, dtype=torch.int64)
    return ((j * 2654435761) % 2**32).to(torch.float64) / 2**32 - 0.5


def summary(grad: torch.Tensor) -> dict:
    flat = grad.flatten()
    return {"norm": flat.norm().item(), "probe": (flat @ probe(flat.numel())).item()}


def main() -> int:
    dump_path, out_path = sys.argv[1:3]
    dump = json.loads(Path(dump_path).read_text())
    config = dict(torch_models.NET_CONFIGS[dump["model"]])
    if dump["dropout"] is not None:
        config["classifier_dropout"] = dump["dropout"]
    net = torch_models.from_net_config(config).double().train()
    own = net.state_dict()
    state = {}
    for name, param in dump["params"].items():
        value = torch.tensor(param["values"], dtype=torch.float64).reshape(param["shape"])
        if transposed(name, param["shape"]):
            value = value.t()
        key = torch_name(name)
        if key not in own or own[key].shape != value.shape:
            raise SystemExit(f"{name}: no twin parameter {key} of shape {tuple(value.shape)}")
        state[key] = value
    missing = [k for k in own if k not in state and "running" not in k and "num_batches" not in k]
    if missing:
        raise SystemExit(f"parameters not in the dump: {missing}")
    net.load_state_dict(state, strict=False)
    batch = len(dump["targets"]) // 10
    images = torch.tensor(dump["images"], dtype=torch.float64).reshape(batch, 3, 32, 32)
    images.requires_grad_()
    targets = torch.tensor(dump["targets"], dtype=torch.float64).reshape(batch, 10)
    loss = -(targets * torch.log_softmax(net(images), 1)).sum(1).mean()
    loss.backward()
    params = dict(net.named_parameters())
    grads = {"input": summary(images.grad)}
    for name in dump["params"]:
        grad = params[torch_name(name)].grad
        grads[name] = summary(grad.t() if transposed(name, dump["params"][name]["shape"]) else grad)
    out = {"model": dump["model"], "loss": loss.item(), "grads": grads}
    Path(out_path).write_text(json.dumps(out, indent=1) + "\n")
    print(f"loss {loss.item():.9f}; {len(grads)} gradients -> {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
