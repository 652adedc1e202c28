"""The fixture of `model/tests/cam_library.rs`: what pytorch-grad-cam 1.5.7 computes for every
class activation map method on shipped networks, through their PyTorch twins.

For each file made by `trainer export --format pytorch` from a shipped checkpoint, the twin
(`torch_models.load_exported`, float32, eval mode) explains the first images of the committed
sample's test batch, each for the class the twin predicts, at the layer the Rust model names by
default (`conv3` of basic-cnn, `layer3` of resnet20). Recorded per method is the library's map at
the layer's resolution, the step before it scales and resizes: `get_cam_image` on the
activations and gradients its hooks captured, after the library's ReLU (`np.maximum(cam, 0)`);
Eigen-CAM's is recorded before the ReLU, since the sign of its singular vector is the SVD's.

    mkdir -p /tmp/exp
    for m in basic-cnn resnet20; do
      target/release/trainer export -c weights/$m.safetensors -o /tmp/exp/$m.safetensors
    done
    python export/cam_fixture.py model/tests/fixtures/cam_library.json /tmp/exp/*.safetensors

Needs PyTorch and `pip install grad-cam==1.5.7`.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from pytorch_grad_cam import (
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "export"))
import torch_models  # noqa: E402

IMAGES = 3
LIBRARY = "pytorch-grad-cam 1.5.7"

# The Rust method names (`CamMethod::name`) and the library's classes.
METHODS = {
    "gradcam": GradCAM,
    "hirescam": HiResCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
    "scorecam": ScoreCAM,
}


def target_layer(model: str, net: torch.nn.Module) -> tuple[str, torch.nn.Module]:
    """The Rust model's default CAM layer and the twin's module whose output it is."""
    if model == "basic-cnn":
        return "conv3", net.layers[4]
    if model == "resnet20":
        return "layer3", net.stages[2][-1]
    raise ValueError(f"no CAM layer known for {model}")


def layer_map(method, net, layer, image: torch.Tensor, target: int, name: str) -> np.ndarray:
    """The library's map of `image` at `layer`, as its `compute_cam_per_layer` makes it
    before scaling: hooks capture the activations (and, for gradient methods, the gradient of
    the target's logit), then `get_cam_image`."""
    cam = method(model=net, target_layers=[layer])
    outputs = cam.activations_and_grads(image)
    targets = [ClassifierOutputTarget(target)]
    if cam.uses_gradients:
        net.zero_grad()
        loss = sum(t(o) for t, o in zip(targets, outputs))
        loss.backward(retain_graph=True)
    activations = cam.activations_and_grads.activations[0].cpu().data.numpy()
    gradients = (
        cam.activations_and_grads.gradients[0].cpu().data.numpy()
        if cam.uses_gradients
        else None
    )
    raw = cam.get_cam_image(image, layer, targets, activations, gradients, False)
    cam.activations_and_grads.release()
    return raw[0] if name == "eigencam" else np.maximum(raw[0], 0)


def main() -> int:
    out_path, files = sys.argv[1], sys.argv[2:]
    fixture = {"library": LIBRARY, "images": IMAGES, "models": {}}
    for file in files:
        net, meta = torch_models.load_exported(file)
        net = net.float().eval()
        layer_name, layer = target_layer(meta["model"], net)
        images = torch_models.sample_images(meta["normalization"], IMAGES).float()
        entries = []
        for i in range(IMAGES):
            image = images[i : i + 1]
            with torch.no_grad():
                predicted = int(net(image).argmax(1))
            maps = {}
            for name, method in METHODS.items():
                values = layer_map(method, net, layer, image, predicted, name)
                maps[name] = [float(f"{v:.8g}") for v in values.flatten().tolist()]
                shape = list(values.shape)
            entries.append({"image": i, "class": predicted, "shape": shape, "maps": maps})
        fixture["models"][meta["model"]] = {"layer": layer_name, "explained": entries}
        print(f"{meta['model']}: {IMAGES} images at {layer_name}, {len(METHODS)} methods")
    Path(out_path).write_text(json.dumps(fixture, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
