"""Gold's tables: features, their PCA, the classifier versions and the predictions."""

from __future__ import annotations

from pyspark.sql import types as T

from common.tables import FEATURE_SIZE, TableSpec, field

GOLD_FEATURES = TableSpec(
    "gold",
    "image_features",
    T.StructType(
        [
            field("path", T.StringType(), False),
            field("label", T.StringType(), False),
            field("content_hash", T.StringType(), False),
            field("features", T.ArrayType(T.FloatType(), False), False),
            field("model", T.StringType(), False),
            field("run_id", T.StringType(), False),
            field("processed_at", T.TimestampType(), False),
        ]
    ),
    constraints=(("features_1280", f"size(features) = {FEATURE_SIZE}"),),
    payload=("features.list.element",),
)

GOLD_PCA = TableSpec(
    "gold",
    "image_features_pca",
    T.StructType(
        [
            field("path", T.StringType(), False),
            field("label", T.StringType(), False),
            field("content_hash", T.StringType(), False),
            field("pca", T.ArrayType(T.FloatType(), False), False),
            field("pca_version", T.StringType(), False),
            field("run_id", T.StringType(), False),
            field("processed_at", T.TimestampType(), False),
        ]
    ),
    payload=("pca.list.element",),
)

# One row per trained classifier version (gold/train_job.py); the model's parameters and
# its evaluation report live under <lakehouse>/models/classifier/<version>/.
CLASSIFIER_MODELS = TableSpec(
    "gold",
    "classifier_models",
    T.StructType(
        [
            field("version", T.StringType(), False),
            field("trained_at", T.TimestampType(), False),
            field("gold_version", T.LongType(), False),
            field("feature_model", T.StringType(), False),
            field("rows_per_source", T.MapType(T.StringType(), T.LongType()), False),
            field("species", T.ArrayType(T.StringType(), False), False),
            field("hyper_parameters", T.StringType(), False),  # JSON
            field("metrics", T.StringType(), False),  # JSON: per evaluation source
            field("unknown_threshold", T.DoubleType(), False),
            field("serving", T.BooleanType(), False),
            field("run_id", T.StringType(), False),
        ]
    ),
)

# Delta refuses NOT NULL inside arrays: the elements' fields are nullable in the schema
# (the classifier never leaves one empty).
TOP_SPECIES = T.ArrayType(
    T.StructType([field("species", T.StringType()),
                  field("probability", T.DoubleType())]), False)

# One row per gold row, predicted by the serving classifier (gold/predict_job.py).
GOLD_PREDICTIONS = TableSpec(
    "gold",
    "predictions",
    T.StructType(
        [
            field("path", T.StringType(), False),
            field("label", T.StringType(), False),
            field("content_hash", T.StringType(), False),
            field("species", T.StringType(), False),
            field("probability", T.DoubleType(), False),
            field("top", TOP_SPECIES, False),
            field("unknown", T.BooleanType(), False),
            field("closest_label", T.StringType(), False),
            field("model_version", T.StringType(), False),
            field("run_id", T.StringType(), False),
            field("processed_at", T.TimestampType(), False),
        ]
    ),
)

TABLES = (GOLD_FEATURES, GOLD_PCA, CLASSIFIER_MODELS, GOLD_PREDICTIONS)
