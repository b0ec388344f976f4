"""The whole pipeline in one Spark application: the layers of :mod:`common.layers`
(bronze, silver, gold, PCA, then predict).

    spark-submit $(python -m common.spark --submit-args --env local) \\
        common/pipeline.py --source DIR --lakehouse DIR [--no-pca] [--sync-deletes]
        [--weights W] [--engine E] [--env local] [--set SECTION.KEY=VALUE ...]

(``make pipeline SOURCE=DIR`` runs exactly this; predict runs once a classifier has
been trained, ``make train``.) Each layer runs as its own job, with
its own lock, its own row in ``ops.runs`` and its own summary line, exactly as if it
had been submitted alone (``make bronze`` etc. still work); sharing one JVM and one
SparkSession saves the start-up of three more applications, which is most of the time
of a run that only has a few new photos to process. The first layer that fails stops
the pipeline with its exit code; the layers before it keep what they committed.
"""

from __future__ import annotations

import common  # noqa: F401 - first, before pyspark: see common/__init__.py

import functools
import logging
import sys
import time

from common.config import Config
from common.jobs import (
    EXIT_OK,
    base_parser,
    config_from_args,
    parse_or_exit,
    run_layer,
)
from common.layers import Layer, PipelineOptions, pipeline_layers
from common.log import setup_logging
from common.lake import register_tables
from common.spark import build_session
from common.sql import print_summary

log = logging.getLogger("pipeline")


def checked(config: Config, layers: list[Layer]) -> Config:
    """Every layer's own check, in order, before any layer runs (fail fast)."""
    for layer in layers:
        if layer.check is not None:
            config = layer.check(config)
    return config


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("Run bronze, silver, gold and PCA in one Spark application.")
    parser.add_argument("--source", help="image root folder (or s3a:// URI)")
    parser.add_argument("--sync-deletes", action="store_true",
                        help="bronze: remove rows whose file is no longer in the source")
    parser.add_argument("--weights", help="gold: imagenet (default), random, or a .h5 path")
    parser.add_argument("--engine", help="gold: tflite (default), onnx, or tensorflow")
    parser.add_argument("--no-pca", action="store_true", help="stop after gold")
    layers = pipeline_layers()
    parsed = parse_or_exit(
        parser,
        argv,
        lambda a: checked(
            config_from_args(a, source=a.source, weights=a.weights, engine=a.engine), layers
        ),
    )
    if isinstance(parsed, int):
        return parsed
    args, config = parsed
    setup_logging(args.log_level)
    options = PipelineOptions(sync_deletes=args.sync_deletes, pca=not args.no_pca)
    started = time.monotonic()
    session = functools.lru_cache(maxsize=1)(
        lambda: build_session(config, "fruits-pipeline", register=False)
    )
    for layer in layers:
        body = layer.body(config, options)
        if body is None:
            continue
        details = layer.details(config) if layer.details else None
        code = run_layer(layer.job, config, body, session, details)
        if code != EXIT_OK:
            print(f"pipeline stopped at {layer.job} (exit code {code}); the layers before it "
                  "kept what they committed. Fix the cause and run again.", file=sys.stderr)
            return code
    print(f"pipeline succeeded in {time.monotonic() - started:.1f}s")
    spark = session()
    register_tables(spark, config.lakehouse)
    print_summary(spark, config)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
