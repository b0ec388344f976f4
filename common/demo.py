"""Generate the small demo image set ``make run`` uses when no SOURCE is given.

Six made-up "fruit" classes of eight photos each (coloured ellipses on white, like the
Fruits-360 photos), plus one file that is not an image, to show the quarantine.
Deterministic: the same files every time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = {
    "Demo Apple": (200, 30, 40),
    "Demo Banana": (235, 210, 60),
    "Demo Kiwi": (120, 150, 60),
    "Demo Orange": (245, 140, 20),
    "Demo Plum": (90, 30, 90),
    "Demo Pêche": (250, 180, 140),
}
PER_CLASS = 8


def fruit(color: tuple[int, int, int], seed: int, size: int = 100) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    w, h = rng.integers(55, 85, size=2)
    x, y = rng.integers(5, size - 5 - max(w, h) + 1, size=2)
    shade = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in color)
    draw.ellipse([int(x), int(y), int(x + w), int(y + h)], fill=shade)
    draw.ellipse([int(x + w * 0.25), int(y + h * 0.2), int(x + w * 0.4), int(y + h * 0.35)],
                 fill=tuple(min(255, c + 60) for c in shade))
    return image.filter(ImageFilter.GaussianBlur(1.2))


def generate(out: Path) -> int:
    count = 0
    for index, (label, color) in enumerate(CLASSES.items()):
        folder = out / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            path = folder / f"{label.split()[-1].lower()}_{i:02d}.jpg"
            if not path.exists():
                fruit(color, seed=index * 100 + i).save(path, quality=92)
            count += 1
    broken = out / "Demo Apple" / "not-a-photo.jpg"
    if not broken.exists():
        broken.write_text("<html><body>This is a web page saved as .jpg</body></html>\n")
    return count + 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo-images", type=Path)
    args = parser.parse_args(argv)
    count = generate(args.out)
    print(f"demo image set: {count} files in {args.out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
