"""Spark side of the classifier: its answers as DataFrame columns, and its model versions.

:func:`with_answers` runs :meth:`gold.classifier.Classifier.answers` (the one computation
``make classify`` and the service use too) over a frame's ``features`` in the Python
workers, with the classifier broadcast once. For a version that averages views,
:func:`with_view_features` first makes each photo's views from ``silver.images``' model
input of the same content and featurizes them with gold's engine (:class:`ViewMaker`).
Model versions live under ``<lakehouse>/models/classifier/vNNNN/``; ``serving.json``
beside them names the serving version (the newest, unless one was promoted), so readers
without Spark find it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.config import Config, ConfigError, join_path, local_path
from common.images import model_views
from common.lake import Table
from common.storage import storage_of
from common.tables import FEATURE_SIZE
from gold.classifier import META_FILE, Classifier
from gold.model import ModelPayload, Predict, build_payload, make_predict_fn
from gold.tables import TOP_SPECIES

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


@dataclass(frozen=True)
class ViewMaker:
    """What a worker needs to featurize the views of model inputs: gold's engine payload."""

    payload: ModelPayload
    engine: str
    views: tuple[str, ...]

    def features(self, predict: Predict, images: list) -> np.ndarray:
        """float32 (n, views, 1280): the views of each model input (silver's 224x224
        RGB bytes) by ``predict`` (:func:`gold.model.make_predict_fn` of the payload)."""
        pixels = np.concatenate([model_views(image, self.views) for image in images])
        vectors = predict(pixels)
        return vectors.reshape(len(images), len(self.views), FEATURE_SIZE)


def view_maker(config: Config, views: tuple[str, ...], feature_model: str, engine: str
               ) -> ViewMaker | None:
    """The :class:`ViewMaker` of ``views`` with gold's weights (``gold.weights``, which
    must be those of ``feature_model``); None without views."""
    if not views:
        return None
    payload = build_payload(engine, config.gold.weights,
                            cache=storage_of(config.lakehouse).model_cache(config.lakehouse))
    if payload.identity != feature_model:
        raise ConfigError(f"gold's features come from {feature_model}, but the weights "
                          f"{config.gold.weights!r} are {payload.identity}: give gold's "
                          "weights (--weights / --set gold.weights=...) to featurize the views")
    return ViewMaker(payload, engine, tuple(views))


VIEWS_TYPE = T.ArrayType(T.ArrayType(T.FloatType()))


def with_view_features(silver: Table, maker: ViewMaker | None, frame: DataFrame,
                       classifier: Classifier | None = None) -> DataFrame:
    """``frame`` (with ``path`` and ``content_hash``) plus ``views``: the features of each
    photo's views, made from ``silver`` (silver.images)' model input of the same content; null
    where silver holds another content of the path (a file changed since gold), no
    silver table exists, or ``maker`` is None, and, given a ``classifier``, for the
    photos whose answer does not depend on them (:meth:`Classifier.needs_views` of the
    frame's ``features``)."""
    if maker is None or not silver.exists():
        return frame.withColumn("views", F.lit(None).cast(VIEWS_TYPE))
    spark = silver.spark
    images = silver.pinned()[0].select(
        F.col("path").alias("_silver_path"), F.col("content_hash").alias("_silver_hash"),
        F.col("image").alias("_image"))
    joined = (frame.join(images, (F.col("path") == F.col("_silver_path"))
                         & (F.col("content_hash") == F.col("_silver_hash")), "left")
              .drop("_silver_path", "_silver_hash"))
    schema = T.StructType([f for f in frame.schema.fields if f.name != "views"]
                          + [T.StructField("views", VIEWS_TYPE)])
    names = [f.name for f in frame.schema.fields if f.name != "views"]
    shared = spark.sparkContext.broadcast((maker, classifier))

    def featurize_views(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        predict = None  # one single-threaded engine per task; the tasks fill the cores
        views_of, model = shared.value
        for batch in batches:
            if batch.empty:
                continue
            out = batch[names].copy()
            have = batch["_image"].notna().to_numpy()
            if model is not None:
                have &= model.needs_views(np.stack(batch["features"].to_numpy()))
            views: list = [None] * len(batch)
            if have.any():
                predict = predict or make_predict_fn(views_of.payload, 1)
                made = views_of.features(predict, list(batch["_image"][have]))
                for k, i in enumerate(np.flatnonzero(have)):
                    views[i] = list(made[k])
            out["views"] = views
            yield out

    return joined.mapInPandas(featurize_views, schema)


def _inputs(classifier: Classifier, batch: pd.DataFrame
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """A pandas batch (``features``, and ``views`` when the classifier averages views)
    -> the arguments of :meth:`gold.classifier.Classifier.answers`; a photo without
    views (null) is answered alone (NaN views)."""
    features = np.stack(batch["features"].to_numpy())
    if not classifier.views:
        return features, None
    views = np.full((len(batch), len(classifier.views), FEATURE_SIZE), np.nan, np.float32)
    if "views" in batch:
        for i, cell in enumerate(batch["views"]):
            if cell is not None:
                views[i] = np.stack(list(cell))
    return features, views


def with_answers(spark: SparkSession, classifier: Classifier
                 ) -> Callable[[DataFrame], DataFrame]:
    """Frame with ``features`` (and ``views``, from :func:`with_view_features`, for a
    classifier that averages them) -> the same frame without them, plus the answer
    columns (``species``, ``probability``, ``top``, ``unknown``, ``closest_label``,
    ``model_version``), computed in the Python workers."""
    shared = spark.sparkContext.broadcast(classifier)

    def step(frame: DataFrame) -> DataFrame:
        keep = [f for f in frame.schema.fields if f.name not in ("features", "views")]
        schema = T.StructType(keep + ANSWER_FIELDS)
        names = [f.name for f in keep]

        def answer(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            model = shared.value
            for batch in batches:
                if batch.empty:
                    continue
                answers = model.answers(*_inputs(model, batch))
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
    """Frame with ``source``, ``features`` (and ``views`` as for :func:`with_answers`) ->
    ``source``, ``probability`` (the photo's own top one) and ``similarity`` (to the
    nearest label): the two "unknown" scores, for calibrating their thresholds."""
    shared = spark.sparkContext.broadcast(classifier)
    schema = T.StructType([T.StructField("source", T.StringType()),
                           T.StructField("probability", T.DoubleType()),
                           T.StructField("similarity", T.DoubleType())])

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = shared.value
        for batch in batches:
            if batch.empty:
                continue
            scores = model.scores(*_inputs(model, batch))
            yield pd.DataFrame({"source": batch["source"],
                                "probability": scores.confidence,
                                "similarity": scores.similarity})

    def step(frame: DataFrame) -> DataFrame:
        columns = ["source", "features"] + (["views"] if "views" in frame.columns else [])
        return frame.select(*columns).mapInPandas(score, schema)

    return step
