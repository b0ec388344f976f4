"""A lakehouse with a serving classifier made without Spark, for the service's and
classify's tests: real MobileNetV2 features of drawn fruit, a nearest-mean classifier."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from common.config import Config
from common.images import DecodeLimits, decode_for_model, pixels_to_array
from gold.classifier import Classifier, prepare, unit_rows
from gold.model import build_engine, build_payload, featurize
from gold.predict import models_root, write_serving

SPECIES = ("Apple", "Banana", "Kiwi")


def fruit(species: str, seed: int, size: tuple[int, int] = (348, 348)) -> Image.Image:
    """A drawn fruit on a shop-grey background: red disc, yellow crescent, brown disc."""
    rng = np.random.default_rng(seed)
    w, h = size
    image = Image.new("RGB", size, tuple(int(v) for v in 200 + rng.integers(-20, 20, 3)))
    draw = ImageDraw.Draw(image)
    dx, dy = (int(v) for v in rng.integers(-w // 10, w // 10, 2))
    box = [w // 4 + dx, h // 4 + dy, 3 * w // 4 + dx, 3 * h // 4 + dy]
    if species == "Apple":
        draw.ellipse(box, fill=(190 + int(rng.integers(0, 40)), 20, 30))
        draw.rectangle([w // 2 + dx - 4, h // 4 + dy - 30, w // 2 + dx + 4, h // 4 + dy],
                       fill=(90, 60, 20))
    elif species == "Banana":
        draw.chord([box[0], box[1], box[2], box[3] + h // 4], 200, 340,
                   fill=(240, 210 + int(rng.integers(0, 30)), 40))
    else:
        draw.ellipse(box, fill=(120, 90 + int(rng.integers(0, 20)), 50))
        for _ in range(40):
            x, y = rng.integers(box[0] + 20, box[2] - 20), rng.integers(box[1] + 20, box[3] - 20)
            draw.point((int(x), int(y)), fill=(40, 30, 10))
    return image


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def build_served_lakehouse(config: Config, version: str = "v0001", *,
                           rename: dict[str, str] | None = None) -> Classifier:
    """Features of 8 drawn photos per species through the real engine (converted once and
    cached in the lakehouse, as gold does), a classifier of the prepared class means, saved
    as ``version`` and made the serving one."""
    cache = Path(config.lakehouse) / "models"
    payload = build_payload("tflite", config.gold.weights, cache=cache)
    engine = build_engine(payload, 2)
    limits = DecodeLimits(config.silver.max_pixels, config.silver.min_side)
    means = []
    for species in SPECIES:
        pixels = np.stack([pixels_to_array(decode_for_model(jpeg(fruit(species, seed)),
                                                            limits).pixels)
                           for seed in range(8)])
        means.append(prepare(featurize(engine, pixels, 1)).mean(axis=0))
    centroids = unit_rows(np.stack(means))
    names = tuple((rename or {}).get(s, s) for s in SPECIES)
    classifier = Classifier(
        version=version, species=names, coefficients=40.0 * centroids,
        intercepts=np.zeros(len(SPECIES)), labels=tuple(f"{s} drawn" for s in names),
        label_species=np.arange(len(SPECIES)), centroids=centroids,
        min_probability=0.0, min_similarity=0.5, feature_model=payload.identity,
        engine="tflite", top=3)
    classifier.save(Path(models_root(config.lakehouse)) / version)
    write_serving(config.lakehouse, version, pinned=rename is not None)
    return classifier
