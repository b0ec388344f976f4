"""Classify single photos without Spark: ``make classify PHOTOS="a.jpg dir/ ..."``.

    python -m gold.classify [--lakehouse DIR] [--env local] PHOTO_OR_DIR ...

Prints one JSON object per photo on stdout and nothing else: ``path``, ``species``,
``probability``, ``unknown``, ``top`` (``[species, probability]`` pairs, best first),
``label`` (the closest training label), ``model_version``; a file that is no usable
image gives ``path``, ``error`` (the reason code of ``silver.rejects``) and ``message``.
Folders are walked recursively (hidden files and folders skipped, as bronze does).
Progress and a summary go to stderr. Exit codes: 0 every photo answered (errors
included), 2 bad arguments, no trained model, or weights that differ from the model's.

:class:`PhotoClassifier` is the one single-photo computation (the HTTP service uses
it too): silver's decoding (:func:`common.images.decode_for_model`), gold's engine built
from the lakehouse's cached conversion (:mod:`gold.model`), and the serving classifier's
parameters (:class:`gold.classifier.Classifier`), with the views that version averages.
No JVM is started.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from common.config import Config, ConfigError, load_config, parse_override, with_cli_values
from common.images import (
    DecodeLimits,
    ImageRejected,
    decode_for_model,
    model_views,
    pixels_to_array,
)
from common.storage import storage_of
from gold.classifier import Classifier
from gold.model import Predict, build_payload, make_predict_fn
from gold.predict import load_serving

EXIT_OK, EXIT_CONFIG = 0, 2


class PhotoClassifier:
    """Bytes of a photo -> the answer of the serving classifier (or an error reason)."""

    def __init__(self, config: Config, classifier: Classifier | None = None,
                 threads: int | None = None) -> None:
        self.config = config
        self.classifier = classifier or load_serving(config.lakehouse)
        self.limits = DecodeLimits(config.silver.max_pixels, config.silver.min_side)
        payload = build_payload(self.classifier.engine, config.gold.weights,
                                cache=storage_of(config.lakehouse).model_cache(config.lakehouse))
        if payload.identity != self.classifier.feature_model:
            raise ConfigError(
                f"the weights {config.gold.weights!r} are {payload.identity}, but classifier "
                f"{self.classifier.version} was trained on features of "
                f"{self.classifier.feature_model}: give the same weights (--weights)")
        self.payload = payload
        self.predict = make_predict_fn(payload, threads or os.cpu_count() or 1)

    def with_classifier(self, classifier: Classifier) -> PhotoClassifier:
        """The same engine with another model version (a promotion), if its features
        come from the same weights; otherwise a new one."""
        if classifier.feature_model != self.classifier.feature_model or (
                classifier.engine != self.classifier.engine):
            return PhotoClassifier(self.config, classifier)
        other = object.__new__(PhotoClassifier)
        other.__dict__.update(self.__dict__, classifier=classifier)
        return other

    def pixels(self, content: bytes, *, reduce: bool = True) -> np.ndarray:
        """uint8 (1, 224, 224, 3): silver's decoding of a photo's bytes;
        :class:`ImageRejected` if unusable. ``reduce=False``: no reduced-size JPEG
        decoding (as a check)."""
        return pixels_to_array(decode_for_model(content, self.limits, reduce=reduce).pixels)[None]

    def features_of(self, pixels: np.ndarray, predict: Predict | None = None) -> np.ndarray:
        """float32 (1 + views, 1280): gold's features of :meth:`pixels`, then of the
        classifier's views of it (:func:`common.images.model_views`), by ``predict`` (one
        of the same payload's, e.g. the service's pool) or this classifier's own. The
        views are made only when the answer depends on them
        (:meth:`gold.classifier.Classifier.needs_views`); otherwise their rows are NaN."""
        predict = predict or self.predict
        photo = predict(pixels)
        views = self.classifier.views
        if views and self.classifier.needs_views(photo)[0]:
            return np.concatenate([photo, predict(model_views(pixels[0], views))])
        return np.concatenate([photo, np.full((len(views), photo.shape[1]), np.nan,
                                              np.float32)])

    def answer(self, features: np.ndarray) -> dict:
        """The classifier's answer from :meth:`features_of`."""
        views = features[None, 1:] if self.classifier.views else None
        return self.classifier.answers(features[:1], views)[0]

    def features(self, content: bytes) -> np.ndarray:
        """float32 (1280,): gold's features of a photo's bytes; :class:`ImageRejected` if
        unusable."""
        return self.features_of(self.pixels(content))[0]

    def classify(self, content: bytes) -> dict:
        """The answer for one photo (see the module doc); raises :class:`ImageRejected`."""
        return self.answer(self.features_of(self.pixels(content)))


def photo_files(targets: list[str]) -> Iterator[Path]:
    """Each file named, and every non-hidden file under each folder named, in order."""
    for target in targets:
        path = Path(target)
        if path.is_dir():
            for folder, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
                for name in sorted(files):
                    if not name.startswith((".", "_")):
                        yield Path(folder, name)
        else:
            yield path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Classify photos with the serving model "
                                     "(one JSON object per photo on stdout).")
    parser.add_argument("photos", nargs="*", help="photo files or folders (recursive)")
    parser.add_argument("--env", default="local")
    parser.add_argument("--lakehouse")
    parser.add_argument("--weights", help="as gold's --weights (default: the profile's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--from-env", metavar="NAME",
                        help="read the photo list from environment variable NAME, split as a "
                             "shell would split words, quotes included (make classify uses "
                             "it, so no path is ever pasted into a shell command)")
    args = parser.parse_args(argv)
    targets = list(args.photos)
    if args.from_env:
        try:
            targets += shlex.split(os.environ.get(args.from_env, ""))
        except ValueError as exc:
            print(f"error: cannot split the photo list: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    if not targets:
        print("error: give photos or folders: make classify PHOTOS='a.jpg dir/'",
              file=sys.stderr)
        return EXIT_CONFIG
    try:
        config = load_config(args.env, dict(parse_override(t) for t in args.overrides))
        config = with_cli_values(config, lakehouse=args.lakehouse, weights=args.weights)
        missing = [t for t in targets if not Path(t).exists()]
        if missing:
            raise ConfigError(f"no such file or folder: {', '.join(missing)}")
        started = time.perf_counter()
        photos = PhotoClassifier(config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"classifier {photos.classifier.version} ready in "
          f"{time.perf_counter() - started:.1f}s", file=sys.stderr)
    started = time.perf_counter()
    done = errors = unknown = 0
    for path in photo_files(targets):
        try:
            answer = {"path": str(path), **photos.classify(path.read_bytes())}
            unknown += answer["unknown"]
        except ImageRejected as exc:
            answer = {"path": str(path), "error": exc.reason, "message": str(exc)}
            errors += 1
        except OSError as exc:
            answer = {"path": str(path), "error": "unreadable", "message": str(exc)}
            errors += 1
        print(json.dumps(answer, ensure_ascii=False), flush=True)
        done += 1
        if done % 500 == 0:
            print(f"{done} photos ...", file=sys.stderr)
    seconds = time.perf_counter() - started
    rate = f", {done / seconds:.1f} photos/s" if seconds > 0 and done else ""
    print(f"classified {done} photos in {seconds:.1f}s{rate}: {done - errors - unknown} "
          f"species, {unknown} unknown, {errors} errors", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
