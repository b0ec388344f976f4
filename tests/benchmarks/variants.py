"""An image set unlike the bench's default, for ``make bench SOURCE=``.

    python -m tests.benchmarks.variants OUT [--n 20000] [--photos] [--seed 0]

The bench's default source repeats the 2,820 sample photos under new names, so silver
holds each picture ~7 times and compresses it well. This makes ``n`` *distinct* images
from the sample instead, each photo rotated, cropped, mirrored and shifted in
brightness, contrast and colour by its own seeded draw (Fruits-360 itself was made by
turning each fruit in front of a camera), under the sample's label folders:

- default: 100x100 JPEGs like Fruits-360's (quality 80-95);
- ``--photos``: camera-like sizes (320x240 to 800x600, portrait or landscape) and
  formats: 80% JPEG, 15% PNG (a third of them with transparency), 5% WebP.

The same arguments make the same files. Nothing here is used by the pipeline or tests.
"""

from __future__ import annotations

import argparse
import random
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT.parent / "shared" / "data" / "fruits360-sample"
PHOTO_SIZES = [(320, 240), (480, 360), (640, 480), (800, 600), (512, 512)]


def variant(original: Path, seed: int, photos: bool) -> tuple[Image.Image, str, dict]:
    """One distinct image from ``original``: (image, file extension, save options)."""
    draw = random.Random(seed)
    image = Image.open(original).convert("RGB")
    image = image.rotate(draw.uniform(0, 360), resample=Image.BICUBIC,
                         fillcolor=(255, 255, 255))
    side = image.width * draw.uniform(0.8, 1.0)
    left = draw.uniform(0, image.width - side)
    top = draw.uniform(0, image.height - side)
    image = image.crop((round(left), round(top), round(left + side), round(top + side)))
    if draw.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhancer(image).enhance(draw.uniform(0.8, 1.2))
    if not photos:
        return image.resize((100, 100), Image.BICUBIC), "jpg", {"quality": draw.randint(80, 95)}
    width, height = draw.choice(PHOTO_SIZES)
    if draw.random() < 0.3:
        width, height = height, width
    image = image.resize((width, height), Image.BICUBIC)
    kind = draw.random()
    if kind < 0.80:
        return image, "jpg", {"quality": draw.randint(80, 95)}
    if kind < 0.95:
        if draw.random() < 1 / 3:  # white background made transparent
            alpha = image.convert("L").point(lambda v: 0 if v > 245 else 255)
            image.putalpha(alpha)
        return image, "png", {"compress_level": 1}
    return image, "webp", {"quality": 85}


def _make(job: tuple[Path, Path, int, bool]) -> None:
    original, folder, index, photos = job
    image, extension, options = variant(original, index, photos)
    image.save(folder / f"{original.stem}_v{index}.{extension}", **options)


def make_set(out: Path, n: int, photos: bool, seed: int, sample: Path = SAMPLE) -> int:
    originals = sorted(p for p in sample.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    if not originals:
        raise SystemExit(f"no JPEG photos under {sample}")
    jobs = []
    for index in range(n):
        original = originals[index % len(originals)]
        folder = out / original.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((original, folder, seed * 10_000_000 + index, photos))
    with ProcessPoolExecutor() as pool:
        for done, _ in enumerate(pool.map(_make, jobs, chunksize=256), 1):
            if done % 5000 == 0:
                print(f"  {done}/{n} images", flush=True)
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--photos", action="store_true",
                        help="camera-like sizes and formats instead of 100x100 JPEGs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} is not empty")
    make_set(args.out, args.n, args.photos, args.seed)
    print(f"{args.n} images under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
