"""How should a photo that is not square be fitted to the 32 × 32 the networks see? Measures
`trainer predict` with `--framing crop` (the centre square), `--framing pad` (the whole picture
on grey) and the average of both views' probabilities, on labelled photos the networks never
trained on: ImageNet's sample images (one photo per ImageNet class, from
github.com/EliSchwartz/imagenet-sample-images; not committed here), those of the ImageNet classes
that are CIFAR-10 classes (ImageNet has no deer).

    git clone https://github.com/EliSchwartz/imagenet-sample-images /tmp/imagenet-samples
    python bench/framing.py /tmp/imagenet-samples weights/resnet20.safetensors [more checkpoints]

Prints, per checkpoint, the top-1 accuracy of each fitting over all photos and as the mean of
the per-class accuracies, how many photos each fitting gets right that the other gets wrong,
and how many photos are wide (aspect over 4:3) and how each fitting does on them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

# ImageNet-1k class indices (sorted WordNet ids, as the sample files are) of each CIFAR-10
# class. Cars are automobiles and only big trucks are trucks, as CIFAR-10's own definitions
# say (pickups are in neither).
CIFAR_OF_IMAGENET = {
    "airplane": [404, 895],
    "automobile": [407, 436, 468, 511, 609, 627, 656, 661, 751, 817],
    "bird": [*range(7, 25), *range(80, 101), *range(127, 147)],
    "cat": [*range(281, 286)],
    "dog": [*range(151, 269)],
    "frog": [30, 31, 32],
    "horse": [339],
    "ship": [403, 484, 510, 554, 625, 628, 724, 780, 814, 871, 914],
    "truck": [555, 569, 675, 864, 867],
}

TRAINER = os.environ.get(
    "TRAINER",
    str(Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "release" / "trainer"),
)


def photos(folder: Path) -> list[tuple[Path, str]]:
    """`(file, CIFAR-10 class)` of every sample photo of a mapped ImageNet class."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
    if len(files) != 1000:
        sys.exit(f"{folder}: expected the 1,000 ImageNet sample images, found {len(files)}")
    return [
        (files[index], cifar)
        for cifar, indices in CIFAR_OF_IMAGENET.items()
        for index in indices
    ]


def predict(checkpoint: str, files: list[Path], framing: str) -> dict[Path, dict[str, float]]:
    """Every class's probability for every file, from `trainer predict`'s printout."""
    command = [TRAINER, "predict", "--backend", "flex", "--top", "100", "--framing", framing,
               "-c", checkpoint, *map(str, files)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result: dict[Path, dict[str, float]] = {}
    current = None
    for line in out.splitlines():
        ranked = re.match(r"\s+\d+\.\s+(\S.*?)\s+([\d.]+)%$", line)
        if ranked and current is not None:
            result[current][ranked.group(1)] = float(ranked.group(2)) / 100
        elif line and not line.startswith(" "):
            current = Path(line)
            result[current] = {}
    return result


def aspect(path: Path) -> float:
    """Width over height (JPEG frame header)."""
    data = path.read_bytes()
    i = 2
    while i < len(data):
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width / height
        i += 2 + length
    raise ValueError(f"{path}: no JPEG frame header")


def main() -> None:
    folder, checkpoints = Path(sys.argv[1]), sys.argv[2:]
    labelled = photos(folder)
    files = [f for f, _ in labelled]
    label = dict(labelled)
    wide = {f for f in files if max(aspect(f), 1 / aspect(f)) > 4 / 3}
    print(f"{len(files)} photos of {len(CIFAR_OF_IMAGENET)} CIFAR-10 classes, {len(wide)} with an "
          f"aspect beyond 4:3")
    for checkpoint in checkpoints:
        crop, pad = predict(checkpoint, files, "crop"), predict(checkpoint, files, "pad")
        views = {
            "crop": crop,
            "pad": pad,
            "average": {f: {c: (crop[f][c] + pad[f].get(c, 0.0)) / 2 for c in crop[f]} for f in files},
        }
        right = {
            name: {f for f in files if max(p[f], key=p[f].get) == label[f]}
            for name, p in views.items()
        }
        print(f"\n{checkpoint}")
        print(f"{'fitting':<8} {'top-1':>7} {'per-class mean':>15} {'wide photos':>12}")
        for name, hits in right.items():
            per_class = [
                sum(f in hits for f in files if label[f] == c) / sum(label[f] == c for f in files)
                for c in CIFAR_OF_IMAGENET
            ]
            print(f"{name:<8} {100 * len(hits) / len(files):6.1f}% {100 * sum(per_class) / len(per_class):14.1f}% "
                  f"{100 * len(hits & wide) / max(1, len(wide)):11.1f}%")
        print(f"right with crop only: {len(right['crop'] - right['pad'])}, with pad only: "
              f"{len(right['pad'] - right['crop'])}; average right where crop is wrong: "
              f"{len(right['average'] - right['crop'])}, wrong where crop is right: "
              f"{len(right['crop'] - right['average'])}")


if __name__ == "__main__":
    main()
