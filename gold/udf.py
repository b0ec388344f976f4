"""The featurizing pandas UDF: broadcast model, one engine per Python worker.

The driver broadcasts a :class:`gold.model.ModelPayload` once. Each executor Python
worker makes its ``predict`` (:func:`gold.model.make_predict_fn`) the first time a task
needs it and keeps it in this module's cache, keyed by model identity, for every later
batch and task (Spark reuses Python workers: ``spark.python.worker.reuse``); every
route runs the one loop :func:`predicted`. Accumulators count the engine builds, model
calls and seconds spent in the model, so a run can show that the model was built once
per worker, not once per batch.

Two ways in for the images (``gold.image_reader``, see :mod:`gold.silver_files`):
:func:`features_udf` takes the ``image`` column from Spark, or (``from_files``) each row's
silver file and key, and the worker reads the image from that file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd
from pyspark import Broadcast
from pyspark.accumulators import Accumulator
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.images import pixels_to_array
from common.jobs import fault_point
from common.tables import FEATURE_SIZE, IMAGE_SIZE
from gold.model import ModelPayload, Predict, make_predict_fn
from gold.silver_files import SilverImages

B = TypeVar("B")

# Per Python worker process: (identity, engine name, threads, batch size) -> predict.
_PREDICT: dict[tuple[str, str, int, int], Predict] = {}


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


@dataclass(frozen=True)
class WorkerModel:
    """What each featurizing task needs to get its worker's ``predict``: the broadcast
    payload, the model's identity and engine, threads and batch size, and the run's
    metrics."""

    payload: Broadcast[ModelPayload]
    identity: str
    engine: str
    batch_size: int
    threads: int
    metrics: UdfMetrics

    def predict_fn(self, factory: Callable[[ModelPayload, int, int], Predict] = make_predict_fn
                   ) -> Predict:
        """This worker's ``predict`` (:func:`gold.model.make_predict_fn`, built on first
        use only), counting its calls and seconds in the metrics."""
        key = (self.identity, self.engine, self.threads, self.batch_size)
        if key not in _PREDICT:
            _PREDICT[key] = factory(self.payload.value, self.threads, self.batch_size)
            self.metrics.engine_builds += 1
        predict, metrics, batch_size = _PREDICT[key], self.metrics, self.batch_size

        def counted(pixels: np.ndarray) -> np.ndarray:
            started = time.perf_counter()
            vectors = predict(pixels)
            metrics.model_seconds += time.perf_counter() - started
            metrics.model_calls += -(-len(pixels) // batch_size)
            fault_point("gold:in_udf")
            return vectors

        return counted


def predicted(model: WorkerModel, batches: Iterable[B], pixels_of: Callable[[B], np.ndarray]
              ) -> Iterator[tuple[B, np.ndarray]]:
    """The one batch loop of gold's Spark routes: each of ``batches`` with the features
    of its images (``pixels_of(batch)``: uint8 (n, 224, 224, 3)), float32 (n, 1280). The
    model is built on the first non-empty batch, so an empty partition never loads it."""
    predict = None
    for batch in batches:
        pixels = pixels_of(batch)
        if not len(pixels):
            yield batch, np.empty((0, FEATURE_SIZE), np.float32)
            continue
        predict = predict or model.predict_fn()
        yield batch, predict(pixels)


def features_udf(model: WorkerModel, *, from_files: bool = False) -> Callable[..., Column]:
    """A Scalar Iterator pandas UDF -> ``array<float>`` (1280): of ``image`` (224x224x3
    bytes), or with ``from_files`` of (silver file URI, ``path``, ``content_hash``), the
    worker reading each image from the silver file."""

    @F.pandas_udf(T.ArrayType(T.FloatType(), False))
    def features(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        for _, vectors in predicted(model, batches, _from_column):
            yield _series(vectors)

    @F.pandas_udf(T.ArrayType(T.FloatType(), False))
    def features_from_files(
        batches: Iterator[tuple[pd.Series, pd.Series, pd.Series]],
    ) -> Iterator[pd.Series]:
        for _, vectors in predicted(model, batches, _from_files):
            yield _series(vectors)

    return features_from_files if from_files else features


def _from_column(images: pd.Series) -> np.ndarray:
    if images.empty:
        return np.empty((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    return np.stack([pixels_to_array(b) for b in images])


def _from_files(batch: tuple[pd.Series, pd.Series, pd.Series]) -> np.ndarray:
    files, paths, hashes = batch
    return read_pixels(files.tolist(), paths.tolist(), hashes.tolist())


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


def _series(vectors: np.ndarray) -> pd.Series:
    # Python floats, not the rows as float32 arrays: Spark 4.0 turns each value of an
    # array column into a list before Arrow converts it, and Arrow converts a list of
    # Python floats about twice as fast as one of NumPy scalars (0.07-0.08 against
    # 0.12-0.13 ms an image, 32-image batches through Spark's own serializer). The same
    # bits either way: float32 -> float64 -> float32 is exact.
    return pd.Series(vectors.tolist())
