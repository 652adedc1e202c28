"""The fixture of `trainer/tests/export.rs`: for each file made by
`trainer export --format pytorch`, PyTorch loads it into its twin (`torch_models.load_exported`,
`strict=True`) and records the state dict's names and shapes and the logits of the first
images of the committed sample's test batch, normalised as the file's metadata says. Each entry
is keyed by the file's stem, the shipped name, which need not be the network's.

    for w in weights/*.safetensors; do
      target/release/trainer export -c "$w" -o "/tmp/exp/$(basename "$w")"
    done
    python export/pytorch_fixture.py trainer/tests/fixtures/pytorch_export.json /tmp/exp/*.safetensors

Needs PyTorch (see the README's "Speed on the CPU" for the install).
"""

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "export"))
import torch_models  # noqa: E402

IMAGES = 8


def main() -> int:
    out_path, files = sys.argv[1], sys.argv[2:]
    fixture = {"images": IMAGES}
    for file in files:
        net, meta = torch_models.load_exported(file)
        state, _ = torch_models.read_safetensors(file)
        with torch.no_grad():
            logits = net.double()(torch_models.sample_images(meta["normalization"], IMAGES))
        fixture[Path(file).stem] = {
            "tensors": {name: list(t.shape) for name, t in sorted(state.items())},
            "logits": [round(v, 7) for v in logits.flatten().tolist()],
        }
        print(f"{Path(file).stem} ({meta['model']}): {len(state)} tensors loaded strictly from {file}")
    Path(out_path).write_text(json.dumps(fixture, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
