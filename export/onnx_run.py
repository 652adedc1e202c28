"""Runs a model written by `trainer export --format onnx` in ONNX Runtime (CPU).

    python export/onnx_run.py MODEL.onnx PIXELS.f32

PIXELS.f32 holds float32 RGB pixels in [0, 1], little-endian, `[n, 3, 32, 32]` (NCHW). The
script prints one JSON object: `logits` and `probabilities` (`n` rows each), the model's
metadata (`model`, `classes`, `normalization`, ...) and its input and output shapes as ONNX
Runtime reads them. The exporter's tests run it; `./check` installs `onnxruntime` from PyPI
into a virtual environment (by hand: `pip install onnxruntime`).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime as ort


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model, pixels = sys.argv[1], sys.argv[2]
    images = np.fromfile(pixels, dtype="<f4").reshape(-1, 3, 32, 32)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    logits, probabilities = session.run(["logits", "probabilities"], {"image": images})
    if not np.isfinite(logits).all():
        sys.exit(f"{model}: ONNX Runtime computed non-finite logits")
    shape = lambda v: [d if isinstance(d, int) else str(d) for d in v.shape]  # noqa: E731
    json.dump(
        {
            "logits": logits.tolist(),
            "probabilities": probabilities.tolist(),
            "metadata": session.get_modelmeta().custom_metadata_map,
            "inputs": {v.name: shape(v) for v in session.get_inputs()},
            "outputs": {v.name: shape(v) for v in session.get_outputs()},
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
