"""The featurizing pandas UDF: broadcast model, one engine per Python worker.

The driver broadcasts a :class:`gold.model.ModelPayload` once. Each executor Python
worker builds its engine the first time a task needs it and keeps it in this module's
cache, keyed by model identity, for every later batch and task (Spark reuses Python
workers: ``spark.python.worker.reuse``). Accumulators count the engine builds, model
calls and seconds spent in the model, so a run can show that the model was built once
per worker, not once per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
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
from gold.model import Engine, ModelPayload, build_engine, featurize

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
) -> Callable[[Column], Column]:
    """A Scalar Iterator pandas UDF: ``image`` (224x224x3 bytes) -> ``array<float>`` (1280)."""

    @F.pandas_udf(T.ArrayType(T.FloatType(), False))
    def features(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        for images in batches:
            # Built on the first batch, so an empty partition never loads the model.
            model = cached_engine(payload, identity, engine, threads, metrics)
            pixels = np.stack([pixels_to_array(b) for b in images])
            started = time.perf_counter()
            vectors = featurize(model, pixels, batch_size)
            metrics.model_seconds += time.perf_counter() - started
            metrics.model_calls += -(-len(pixels) // batch_size)
            fault_point("gold:in_udf")
            yield pd.Series(list(vectors))

    return features
