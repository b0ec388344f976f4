"""The featurizing pandas UDF: broadcast model, one engine per Python worker.

The driver broadcasts a :class:`gold.model.ModelPayload` once. Each executor Python
worker builds its engine the first time a task needs it and keeps it in this module's
cache, keyed by model identity, for every later batch and task (Spark reuses Python
workers: ``spark.python.worker.reuse``). Accumulators count the engine builds, model
calls and seconds spent in the model, so a run can show that the model was built once
per worker, not once per batch.

Two ways in for the images (``gold.image_reader``, see :mod:`gold.silver_files`):
:func:`features_udf` takes the ``image`` column from Spark, or (``from_files``) each row's
silver file and key, and the worker reads the image from that file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark import Broadcast
from pyspark.accumulators import Accumulator
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.images import pixels_to_array
from common.jobs import fault_point
from common.tables import IMAGE_SIZE
from gold.model import Engine, ModelPayload, build_engine, featurize
from gold.silver_files import SilverImages

# Per Python worker process: (identity, engine name, threads) -> engine.
_ENGINES: dict[tuple[str, str, int], Engine] = {}


@dataclass
class UdfMetrics:
    """Accumulators filled by the executors during one run."""

    engine_builds: Accumulator[int]
    model_calls: Accumulator[int]
    model_seconds: Accumulator[float]

    @classmethod
    def create(cls, spark: SparkSession) -> UdfMetrics:
        sc = spark.sparkContext
        return cls(sc.accumulator(0), sc.accumulator(0), sc.accumulator(0.0))


def cached_engine(
    payload: Broadcast[ModelPayload], identity: str, engine: str, threads: int,
    metrics: UdfMetrics,
    factory: Callable[[ModelPayload, int], Engine] = build_engine,
) -> Engine:
    """This worker's engine for the model, built on first use only."""
    key = (identity, engine, threads)
    if key not in _ENGINES:
        _ENGINES[key] = factory(payload.value, threads)
        metrics.engine_builds += 1
    return _ENGINES[key]


def features_udf(
    payload: Broadcast[ModelPayload],
    identity: str,
    engine: str,
    batch_size: int,
    threads: int,
    metrics: UdfMetrics,
    *,
    from_files: bool = False,
) -> Callable[..., Column]:
    """A Scalar Iterator pandas UDF -> ``array<float>`` (1280): of ``image`` (224x224x3
    bytes), or with ``from_files`` of (silver file URI, ``path``, ``content_hash``), the
    worker reading each image from the silver file."""

    @F.pandas_udf(T.ArrayType(T.FloatType(), False))
    def features(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        for images in batches:
            # Built on the first batch, so an empty partition never loads the model.
            model = cached_engine(payload, identity, engine, threads, metrics)
            pixels = np.stack([pixels_to_array(b) for b in images])
            yield _featurize(model, pixels, batch_size, metrics)

    @F.pandas_udf(T.ArrayType(T.FloatType(), False))
    def features_from_files(
        batches: Iterator[tuple[pd.Series, pd.Series, pd.Series]],
    ) -> Iterator[pd.Series]:
        for files, paths, hashes in batches:
            model = cached_engine(payload, identity, engine, threads, metrics)
            pixels = read_pixels(files.tolist(), paths.tolist(), hashes.tolist())
            yield _featurize(model, pixels, batch_size, metrics)

    return features_from_files if from_files else features


# Per Python worker process: the silver file reader (its index and decoded slice).
_SILVER = SilverImages()


def read_pixels(files: Sequence[str], paths: Sequence[str],
                hashes: Sequence[str | None]) -> np.ndarray:
    """uint8 (n, 224, 224, 3): the image of each key ``(paths[i], hashes[i])``, read by
    this worker from the silver file ``files[i]`` (see :mod:`gold.silver_files`)."""
    pixels = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    # A task reads one split of one file; a batch spans two files only where Spark
    # packed small files into one task.
    starts = [i for i in range(len(files)) if i == 0 or files[i] != files[i - 1]]
    for start, end in zip(starts, [*starts[1:], len(files)]):
        _SILVER.pixels(files[start], paths[start:end], hashes[start:end],
                       out=pixels[start:end])
    return pixels


def run_model(model: Engine, pixels: np.ndarray, batch_size: int,
              metrics: UdfMetrics) -> np.ndarray:
    """float32 (n, 1280): the features of ``pixels``, counted in ``metrics``."""
    started = time.perf_counter()
    vectors = featurize(model, pixels, batch_size)
    metrics.model_seconds += time.perf_counter() - started
    metrics.model_calls += -(-len(pixels) // batch_size)
    fault_point("gold:in_udf")
    return vectors


def _featurize(model: Engine, pixels: np.ndarray, batch_size: int,
               metrics: UdfMetrics) -> pd.Series:
    vectors = run_model(model, pixels, batch_size, metrics)
    # Python floats, not the rows as float32 arrays: Spark 4.0 turns each value of an
    # array column into a list before Arrow converts it, and Arrow converts a list of
    # Python floats about twice as fast as one of NumPy scalars (0.07-0.08 against
    # 0.12-0.13 ms an image, 32-image batches through Spark's own serializer). The same
    # bits either way: float32 -> float64 -> float32 is exact.
    return pd.Series(vectors.tolist())
