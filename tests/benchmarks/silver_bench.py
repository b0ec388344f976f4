"""Silver on 12-megapixel phone JPEGs against 100x100 ones (a ``make bench`` step).

    python -m tests.benchmarks.silver_bench [--n 480] [--env local]

For each size: ``n`` JPEGs of a photo-like scene (quality 92; 12 distinct photos, the
rest hard links to them), then

1. the decoder alone (``common.images.decode_for_model``, one core, in this process):
   images/s per core;
2. bronze and silver through spark-submit on a lakehouse of their own: silver's
   images/s from its ``ops.runs`` row (wall time of its run, all cores), and per core.

The 12 MP photos are decoded at reduced size (JPEG draft mode, see common/images.py).
Writes ``bench-results/silver.json`` and prints a table; ``make bench`` runs it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from tests.benchmarks.bench import OUT, ROOT, last_run, submit

SIZES = {"12mp": (4000, 3000), "100x100": (100, 100)}


def photo(size: tuple[int, int], seed: int) -> bytes:
    """A photo-like JPEG: a textured background, a few round fruit, some blur."""
    rng = np.random.default_rng(seed)
    w, h = size
    small = rng.integers(60, 200, (max(h // 40, 2), max(w // 40, 2), 3), dtype=np.uint8)
    image = Image.fromarray(small).resize(size, Image.BICUBIC)
    noise = rng.normal(0, 6, (h, w, 3))
    image = Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(5):
        x, y, r = rng.integers(0, w), rng.integers(0, h), int(min(w, h) * rng.uniform(.08, .2))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    image = image.filter(ImageFilter.GaussianBlur(1))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def make_source(root: Path, size: tuple[int, int], n: int, distinct: int = 12) -> list[bytes]:
    """``n`` JPEGs under ``root``: ``distinct`` different photos, the rest hard links."""
    shutil.rmtree(root, ignore_errors=True)
    contents, first = [], []
    for i in range(n):
        target = root / f"Fruit {i % 4}" / f"IMG_{i:04d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        if i < distinct:
            target.write_bytes(photo(size, seed=i))
            first.append(target)
        else:
            os.link(first[i % distinct], target)
        contents.append(first[i % distinct].read_bytes() if i >= distinct else target.read_bytes())
    return contents


def decode_per_core(contents: list[bytes]) -> float:
    from common.images import DecodeLimits, decode_for_model

    limits = DecodeLimits(250_000_000, 32)
    decode_for_model(contents[0], limits)  # warm-up
    started = time.perf_counter()
    for content in contents[:48]:
        decode_for_model(content, limits)
    return round(len(contents[:48]) / (time.perf_counter() - started), 1)


def measure(workdir: Path, n: int, env: str) -> dict:
    results = {}
    cores = os.cpu_count() or 1
    for name, size in SIZES.items():
        source = workdir / f"silver-{name}"
        print(f"silver on {n} JPEGs of {size[0]}x{size[1]} ...", flush=True)
        contents = make_source(source, size, n)
        lakehouse = workdir / f"lakehouse-silver-{name}"
        shutil.rmtree(lakehouse, ignore_errors=True)
        submit("bronze", lakehouse, "--source", str(source), env_name=env)
        submit("silver", lakehouse, env_name=env)
        silver = last_run(lakehouse, "silver")
        assert silver["rows_out"] == n, silver
        rate = silver["rows_in"] / silver["seconds"]
        results[name] = {
            "images": n, "mean_file_bytes": int(np.mean([len(c) for c in contents])),
            "decode_images_per_s_per_core": decode_per_core(contents),
            "silver_job_seconds": silver["seconds"],
            "silver_images_per_s": round(rate, 1),
            "silver_images_per_s_per_core": round(rate / cores, 1),
        }
        print(f"  {results[name]}", flush=True)
    small, big = results["100x100"], results["12mp"]
    results["ratio_100x100_over_12mp"] = {
        "silver_job": round(small["silver_images_per_s"] / big["silver_images_per_s"], 2),
        "decoder": round(small["decode_images_per_s_per_core"]
                         / big["decode_images_per_s_per_core"], 2),
    }
    return results


def rows(results: dict) -> list[tuple[str, str]]:
    big, small = results["12mp"], results["100x100"]
    ratio = results["ratio_100x100_over_12mp"]
    return [
        (f"silver, 12 MP JPEGs ({big['mean_file_bytes'] // 1000} KB)",
         f"{big['silver_images_per_s_per_core']} img/s per core "
         f"(decoder alone {big['decode_images_per_s_per_core']})"),
        ("silver, 100x100 JPEGs", f"{small['silver_images_per_s_per_core']} img/s per core "
                                  f"(decoder alone {small['decode_images_per_s_per_core']})"),
        ("silver 100x100 / 12 MP", f"{ratio['silver_job']}x (decoder {ratio['decoder']}x)"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=480)
    parser.add_argument("--env", default="local")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench-data")
    args = parser.parse_args(argv)
    results = measure(args.workdir.resolve(), args.n, args.env)
    OUT.mkdir(exist_ok=True)
    (OUT / "silver.json").write_text(json.dumps(results, indent=2))
    print()
    for name, value in rows(results):
        print(f"{name:<40}  {value}")
    print(f"\nall figures: {OUT / 'silver.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
