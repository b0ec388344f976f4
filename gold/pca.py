"""PCA of the gold features: fitting, k selection, projection, model versions, report.

Centred, not standardised: the 1280 MobileNetV2 features are non-negative averages of
ReLU6 activations on one common scale, and their variances are the signal. Scaling each
to unit variance would promote near-constant (uninformative) features to the same weight
as the discriminative ones. Spark's ``PCA`` finds the components from the covariance
(centred internally) but projects uncentred rows, so a ``StandardScaler(withMean=True,
withStd=False)`` stage centres them first; both stages form one saved ``PipelineModel``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import PCA, StandardScaler
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from common.tables import FEATURE_SIZE
from gold.tables import GOLD_PCA


@dataclass(frozen=True)
class PcaFit:
    """What a fit decided, saved beside the model as ``metadata.json``."""

    version: str
    k: int
    variance_target: float
    variance_kept: float
    explained_variance: list[float]  # per component, all components fitted
    gold_version: int
    rows: int
    fitted_at: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> PcaFit:
        return cls(**json.loads(text))


def choose_k(explained: np.ndarray, variance: float, fixed_k: int = 0) -> int:
    """Smallest k whose cumulative explained variance reaches ``variance`` (or ``fixed_k``)."""
    if fixed_k:
        return min(fixed_k, len(explained))
    cumulative = np.cumsum(explained)
    # A tiny tolerance: 0.95 must be reached by 0.9499999 of float rounding.
    reached = np.nonzero(cumulative >= variance - 1e-9)[0]
    return int(reached[0]) + 1 if len(reached) else len(explained)


def with_feature_vector(frame: DataFrame) -> DataFrame:
    """Add ``vector`` (an ML dense vector) from ``features`` (array<float>)."""
    return frame.withColumn("vector", array_to_vector("features"))


def fit_pipeline(gold: DataFrame, k: int) -> PipelineModel:
    """Centre, then PCA with ``k`` components, fitted on ``gold`` (with ``vector``)."""
    stages = [
        StandardScaler(inputCol="vector", outputCol="centred", withMean=True, withStd=False),
        PCA(k=k, inputCol="centred", outputCol="reduced"),
    ]
    return Pipeline(stages=stages).fit(gold)


def explained_variance(model: PipelineModel) -> np.ndarray:
    return np.asarray(model.stages[-1].explainedVariance.toArray(), dtype=np.float64)


def max_components(rows: int) -> int:
    """Spark's PCA needs k <= number of features; more than rows-1 carry no variance."""
    return max(1, min(FEATURE_SIZE, rows - 1))


def to_pca_rows(
    model: PipelineModel, version: str, run_id: str, now: datetime
) -> Callable[[DataFrame], DataFrame]:
    """Gold rows -> ``gold.image_features_pca`` rows projected by ``model``."""

    def step(gold: DataFrame) -> DataFrame:
        projected = model.transform(with_feature_vector(gold))
        return projected.select(
            "path",
            "label",
            "content_hash",
            vector_to_array("reduced", "float32").alias("pca"),
            F.lit(version).alias("pca_version"),
            F.lit(run_id).alias("run_id"),
            F.lit(now).cast("timestamp").alias("processed_at"),
        ).select(*GOLD_PCA.schema.fieldNames())

    return step
