"""Spark side of the classifier: its answers as DataFrame columns, and its model versions.

:func:`with_answers` runs :meth:`gold.classifier.Classifier.answers` (the one computation
``make classify`` and the service use too) over a frame's ``features`` in the Python
workers, with the classifier broadcast once. Model versions live under
``<lakehouse>/models/classifier/vNNNN/``; ``serving.json`` beside them names the serving
version (the newest, unless one was promoted), so readers without Spark find it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from common.config import ConfigError, join_path, local_path
from common.tables import TOP_SPECIES
from gold.classifier import META_FILE, Classifier

SERVING_FILE = "serving.json"

ANSWER_FIELDS = [
    T.StructField("species", T.StringType(), False),
    T.StructField("probability", T.DoubleType(), False),
    T.StructField("top", TOP_SPECIES, False),
    T.StructField("unknown", T.BooleanType(), False),
    T.StructField("closest_label", T.StringType(), False),
    T.StructField("model_version", T.StringType(), False),
]


class NoModelError(ConfigError):
    """No trained classifier in this lakehouse: the message says how to train one."""


def models_root(lakehouse: str) -> str:
    return join_path(lakehouse, "models", "classifier")


def report_root(lakehouse: str, version: str) -> str:
    return join_path(lakehouse, "reports", "classifier", version)


def versions(lakehouse: str) -> list[str]:
    """The complete model versions (their classifier.json exists), oldest first."""
    root = local_path(models_root(lakehouse))
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.name.startswith("v") and (p / META_FILE).is_file())


def serving_state(lakehouse: str) -> dict:
    """``{"version": ..., "pinned": bool}`` from serving.json; the newest version when
    none was pinned; ``{}`` when there is no model at all."""
    root = local_path(models_root(lakehouse))
    try:
        state = json.loads((root / SERVING_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    known = versions(lakehouse)
    if state.get("pinned") and state.get("version") in known:
        return state
    return {"version": known[-1], "pinned": False} if known else {}


def write_serving(lakehouse: str, version: str, *, pinned: bool) -> None:
    """Point serving.json at ``version`` atomically (readers see the old or the new)."""
    root = local_path(models_root(lakehouse))
    partial = root / f".{SERVING_FILE}.{os.getpid()}"
    partial.write_text(json.dumps({"version": version, "pinned": pinned}), encoding="utf-8")
    partial.replace(root / SERVING_FILE)


def load_serving(lakehouse: str) -> Classifier:
    """The serving classifier, or :class:`NoModelError` (exit 2) saying how to train."""
    state = serving_state(lakehouse)
    if not state:
        raise NoModelError(
            f"no trained classifier in the lakehouse {lakehouse}: run the pipeline on "
            "labelled photos, then `make train` (gold/train_job.py)")
    return Classifier.load(Path(local_path(models_root(lakehouse)), state["version"]))


def with_answers(spark: SparkSession, classifier: Classifier
                 ) -> Callable[[DataFrame], DataFrame]:
    """Frame with ``features`` -> the same frame without it, plus the answer columns
    (``species``, ``probability``, ``top``, ``unknown``, ``closest_label``,
    ``model_version``), computed in the Python workers."""
    shared = spark.sparkContext.broadcast(classifier)

    def step(frame: DataFrame) -> DataFrame:
        keep = [f for f in frame.schema.fields if f.name != "features"]
        schema = T.StructType(keep + ANSWER_FIELDS)
        names = [f.name for f in keep]

        def answer(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            model = shared.value
            for batch in batches:
                if batch.empty:
                    continue
                features = np.stack(batch["features"].to_numpy())
                answers = model.answers(features)
                out = batch[names].copy()
                out["species"] = [a["species"] for a in answers]
                out["probability"] = [a["probability"] for a in answers]
                out["top"] = [[{"species": s, "probability": p} for s, p in a["top"]]
                              for a in answers]
                out["unknown"] = [a["unknown"] for a in answers]
                out["closest_label"] = [a["label"] for a in answers]
                out["model_version"] = model.version
                yield out

        return frame.mapInPandas(answer, schema)

    return step


def with_scores(spark: SparkSession, classifier: Classifier
                ) -> Callable[[DataFrame], DataFrame]:
    """Frame with ``features`` -> ``source``, ``probability`` (the top one) and
    ``similarity`` (to the nearest label), for calibrating the unknown thresholds."""
    shared = spark.sparkContext.broadcast(classifier)
    schema = T.StructType([T.StructField("source", T.StringType()),
                           T.StructField("probability", T.DoubleType()),
                           T.StructField("similarity", T.DoubleType())])

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = shared.value
        for batch in batches:
            if batch.empty:
                continue
            scores = model.scores(np.stack(batch["features"].to_numpy()))
            yield pd.DataFrame({"source": batch["source"],
                                "probability": scores.probabilities.max(axis=1),
                                "similarity": scores.similarity})

    def step(frame: DataFrame) -> DataFrame:
        return frame.select("source", "features").mapInPandas(score, schema)

    return step
