"""``make classify-bench``: the classification engine measured as a user meets it.

    python -m tests.benchmarks.classify_bench --lakehouse DIR [--train] [--env local]

On a lakehouse whose gold holds ``fruits360-train-sample``, ``grocery-store/train`` and
the two evaluation sets (``make pipeline`` over them), beside the repository's
``../shared/data``:

0. with ``--build``: a fresh lakehouse of those sets, by ``make pipeline``;
1. with ``--train``: ``make train`` with ``--eval-root`` on the grocery-store validation
   photos and the Fruits-360 Test sample, its wall time (the target: 2 minutes);
2. ``make classify`` (``python -m gold.classify``) on 1,000 real 348x348 photos in one
   call: photos/s from its own summary line (the target: 40);
3. ``make classify`` on the grocery-store validation photos, the Fruits-360 Test sample and
   200 pictures of packaged goods, shelves and hands drawn here with Pillow (no fruit):
   species top-1/top-3 against ``conf/species.csv`` and the share flagged ``unknown``.

Writes ``bench-results/classify.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench-results"
PY = sys.executable


def not_fruit(i: int, size: tuple[int, int] = (348, 348)) -> Image.Image:
    """A drawn non-fruit scene: a milk carton, a can, a cereal box, a shelf or a hand."""
    rng = np.random.default_rng(1000 + i)
    w, h = size
    colour = lambda: tuple(int(v) for v in rng.integers(0, 256, 3))  # noqa: E731
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(150, 240, 3)))
    draw = ImageDraw.Draw(image)
    kind = i % 5
    if kind == 0:  # carton: white body, coloured band, gable top, text lines
        x0, x1 = w // 4 + int(rng.integers(-20, 20)), 3 * w // 4 + int(rng.integers(-20, 20))
        draw.rectangle([x0, h // 4, x1, h - 20], fill=(245, 245, 240))
        draw.polygon([(x0, h // 4), ((x0 + x1) // 2, h // 8), (x1, h // 4)], fill=(230, 230, 225))
        draw.rectangle([x0, h // 2, x1, h // 2 + 40], fill=colour())
        for k in range(4):
            draw.text((x0 + 10, h // 4 + 15 + 14 * k), "MILK 1L 3.5%"[: 6 + k], fill=(20, 20, 80))
    elif kind == 1:  # can: cylinder with a label and a rim
        draw.rectangle([w // 3, h // 5, 2 * w // 3, 4 * h // 5], fill=colour())
        draw.ellipse([w // 3, h // 5 - 15, 2 * w // 3, h // 5 + 15], fill=(190, 190, 195))
        draw.rectangle([w // 3, h // 2 - 20, 2 * w // 3, h // 2 + 20], fill=colour())
    elif kind == 2:  # cereal box with a logo and a bar code
        draw.rectangle([w // 5, h // 8, 4 * w // 5, 7 * h // 8], fill=colour())
        draw.rectangle([w // 4, h // 5, 3 * w // 4, h // 3], fill=colour())
        for k in range(30):
            x = w // 4 + 4 * k
            draw.line([x, 3 * h // 4, x, 3 * h // 4 + 30], fill=(0, 0, 0), width=int(rng.integers(1, 3)))
    elif kind == 3:  # shelf: horizontal boards, rows of boxes
        for y in range(0, h, h // 4):
            draw.rectangle([0, y + h // 4 - 12, w, y + h // 4], fill=(120, 110, 100))
            x = 0
            while x < w:
                bw = int(rng.integers(20, 50))
                draw.rectangle([x, y + 10, x + bw - 4, y + h // 4 - 14], fill=colour())
                x += bw
    else:  # an open hand: palm and fingers in skin tones
        skin = (int(rng.integers(150, 230)), int(rng.integers(110, 170)), int(rng.integers(80, 140)))
        draw.ellipse([w // 3, h // 2, 2 * w // 3, 5 * h // 6], fill=skin)
        for k in range(4):
            x = w // 3 + 10 + k * (w // 12)
            draw.rounded_rectangle([x, h // 5, x + w // 16, h // 2 + 20], radius=10, fill=skin)
        draw.rounded_rectangle([w // 3 - 50, h // 2, w // 3 + 10, h // 2 + 25], radius=10, fill=skin)
    return image


def classify(lakehouse: str, env: str, targets: list[str]) -> tuple[list[dict], str]:
    run = subprocess.run([PY, "-m", "gold.classify", "--env", env, "--lakehouse", lakehouse,
                          *targets], cwd=ROOT, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"make classify failed ({run.returncode}): {run.stderr[-2000:]}")
    return [json.loads(line) for line in run.stdout.splitlines()], run.stderr


def scores(answers: list[dict], species_of: dict[str, str]) -> dict:
    known = [a for a in answers if "error" not in a]
    truth = [species_of.get(Path(a["path"]).parent.name) for a in known]
    top1 = [a["species"] == t for a, t in zip(known, truth)]
    top3 = [t in [s for s, _ in a["top"]] for a, t in zip(known, truth)]
    return {"photos": len(answers), "errors": len(answers) - len(known),
            "top1": round(float(np.mean(top1)), 4) if known else None,
            "top3": round(float(np.mean(top3)), 4) if known else None,
            "unknown": round(float(np.mean([a["unknown"] for a in known])), 4) if known else None}


def build(lakehouse: Path, env: str) -> tuple[Path, Path]:
    """A fresh lakehouse of the four shared sets (hard links, each in a folder of its
    own, the labels their parent folders), through ``make pipeline``."""
    import shutil

    source = lakehouse.parent / f"{lakehouse.name}-source"
    shutil.rmtree(source, ignore_errors=True)
    shutil.rmtree(lakehouse, ignore_errors=True)
    for name, folder in (("f360-train", DATA / "fruits360-train-sample"),
                         ("f360-test", DATA / "fruits360-sample"),
                         ("grocery", DATA / "grocery-store")):
        for photo in folder.rglob("*"):
            if photo.is_file() and not photo.name.startswith("."):
                target = source / name / photo.relative_to(folder)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(photo, target)
    print(f"make pipeline over {source} ...", file=sys.stderr, flush=True)
    subprocess.run(["make", "--no-print-directory", "pipeline", f"ENV={env}",
                    f"SOURCE={source}", f"LAKEHOUSE={lakehouse}"], cwd=ROOT, check=True)
    return source / "grocery" / "val", source / "f360-test"  # the evaluation roots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="local")
    parser.add_argument("--lakehouse", required=True)
    parser.add_argument("--train", action="store_true", help="time a make train first")
    parser.add_argument("--build", action="store_true",
                        help="first build the lakehouse: make pipeline over the four shared sets")
    args = parser.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    val, studio = DATA / "grocery-store" / "val", DATA / "fruits360-sample"
    with open(ROOT / "conf" / "species.csv", encoding="utf-8") as f:
        species_of = {r["label"]: r["species"] for r in csv.DictReader(f)}
    result: dict = {"command": "python -m tests.benchmarks.classify_bench "
                               + " ".join(argv or sys.argv[1:]),
                    "machine": f"{platform.node()} {os.cpu_count()} cores",
                    "date": time.strftime("%Y-%m-%d %H:%M")}
    held_out = (val, studio)
    built = Path(args.lakehouse).resolve()
    built = built.parent / f"{built.name}-source"
    if built.is_dir():  # a lakehouse --build made earlier: its gold paths are under here
        held_out = (built / "grocery" / "val", built / "f360-test")
    if args.build:
        held_out = build(Path(args.lakehouse).resolve(), args.env)
    if args.train:
        started = time.perf_counter()
        evals = " ".join(f"--eval-root '{root}'" for root in held_out)
        subprocess.run(["make", "--no-print-directory", "train", f"ENV={args.env}",
                        f"LAKEHOUSE={args.lakehouse}", f"JOB_ARGS={evals}"], cwd=ROOT,
                       check=True)
        result["train_seconds"] = round(time.perf_counter() - started, 1)
    with tempfile.TemporaryDirectory() as scratch:
        thousand = Path(scratch, "thousand")
        photos = sorted((DATA / "grocery-store" / "train").rglob("*.jpg"))[:1000]
        for i, photo in enumerate(photos):
            target = thousand / photo.parent.name / f"{i:04d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(photo, target)
        started = time.perf_counter()
        answers, stderr = classify(args.lakehouse, args.env, [str(thousand)])
        result["classify_1000_wall_s"] = round(time.perf_counter() - started, 1)
        rate = re.search(r"([\d.]+) photos/s", stderr)
        result["classify_photos_per_s"] = float(rate.group(1)) if rate else None
        packaged = Path(scratch, "not-fruit")
        packaged.mkdir()
        for i in range(200):
            not_fruit(i).save(packaged / f"item-{i:03d}.jpg", quality=90)
        for name, folder in (("grocery-store/val", val), ("fruits360-sample", studio),
                             ("drawn non-fruit", packaged)):
            result[name] = scores(classify(args.lakehouse, args.env, [str(folder)])[0],
                                  species_of)
            print(f"{name:20} {json.dumps(result[name])}", file=sys.stderr)
        result["model_version"] = answers[0].get("model_version") if answers else None
    (OUT / "classify.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nmodel {result['model_version']}")
    if "train_seconds" in result:
        print(f"{'make train (wall)':34} {result['train_seconds']:>7.1f} s  (target <= 120)")
    print(f"{'make classify, 1000 real photos':34} {result['classify_photos_per_s']:>7.1f} "
          "photos/s (target >= 40)")
    for name in ("grocery-store/val", "fruits360-sample"):
        r = result[name]
        print(f"{name:34} top-1 {100 * r['top1']:.1f}%  top-3 {100 * r['top3']:.1f}%  "
              f"unknown {100 * r['unknown']:.1f}%")
    print(f"{'drawn non-fruit, flagged unknown':34} {100 * result['drawn non-fruit']['unknown']:.1f}%")
    print(f"wrote {OUT / 'classify.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
