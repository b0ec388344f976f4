"""Table names, locations and schemas: the one place they are defined.

Every table is a Delta table under ``<lakehouse>/<database>/<table>``; sessions register
them by name (``bronze.images``) at start-up, so a new process sees them (see
:func:`common.spark.register_tables`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import types as T

from common.config import join_path

IMAGE_SIZE = 224
IMAGE_CHANNELS = 3
IMAGE_BYTES = IMAGE_SIZE * IMAGE_SIZE * IMAGE_CHANNELS
FEATURE_SIZE = 1280

# Parquet column paths of the per-row payloads: an image file's bytes (bronze), its
# 150 KB pixel array (silver), its 1280 feature floats (gold) and their PCA projection.
# No query filters on them and their values are large and seldom repeated, so the
# session writes them without statistics or dictionary (see common.spark.spark_settings).
PAYLOAD_COLUMNS = ("content", "image", "features.list.element", "pca.list.element")


@dataclass(frozen=True)
class TableSpec:
    database: str
    table: str
    schema: T.StructType
    # Delta CHECK constraints: name -> SQL expression over the table's own columns.
    constraints: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.database}.{self.table}"

    def location(self, lakehouse: str) -> str:
        return join_path(lakehouse, self.database, self.table)


def _field(name: str, dtype: T.DataType, nullable: bool = True) -> T.StructField:
    return T.StructField(name, dtype, nullable)


BRONZE_IMAGES = TableSpec(
    "bronze",
    "images",
    T.StructType(
        [
            _field("path", T.StringType(), False),
            _field("modification_time", T.TimestampType()),
            _field("length", T.LongType()),
            # null when the file was not read: status says why (too_large, unreadable)
            _field("content", T.BinaryType()),
            _field("content_hash", T.StringType()),
            _field("status", T.StringType(), False),
            _field("run_id", T.StringType(), False),
            _field("ingested_at", T.TimestampType(), False),
        ]
    ),
)

SILVER_IMAGES = TableSpec(
    "silver",
    "images",
    T.StructType(
        [
            _field("path", T.StringType(), False),
            _field("label", T.StringType(), False),
            _field("content_hash", T.StringType(), False),
            _field("width", T.IntegerType(), False),
            _field("height", T.IntegerType(), False),
            _field("mode", T.StringType(), False),
            # 224x224 RGB, row-major uint8 (H, W, C): exactly the array the model gets
            _field("image", T.BinaryType(), False),
            _field("run_id", T.StringType(), False),
            _field("processed_at", T.TimestampType(), False),
        ]
    ),
    constraints=(("image_224x224_rgb", f"length(image) = {IMAGE_BYTES}"),),
)

SILVER_REJECTS = TableSpec(
    "silver",
    "rejects",
    T.StructType(
        [
            _field("path", T.StringType(), False),
            _field("label", T.StringType()),
            _field("content_hash", T.StringType()),
            _field("length", T.LongType()),
            _field("reason", T.StringType(), False),
            _field("error", T.StringType()),
            _field("run_id", T.StringType(), False),
            _field("processed_at", T.TimestampType(), False),
        ]
    ),
)

GOLD_FEATURES = TableSpec(
    "gold",
    "image_features",
    T.StructType(
        [
            _field("path", T.StringType(), False),
            _field("label", T.StringType(), False),
            _field("content_hash", T.StringType(), False),
            _field("features", T.ArrayType(T.FloatType(), False), False),
            _field("model", T.StringType(), False),
            _field("run_id", T.StringType(), False),
            _field("processed_at", T.TimestampType(), False),
        ]
    ),
    constraints=(("features_1280", f"size(features) = {FEATURE_SIZE}"),),
)

GOLD_PCA = TableSpec(
    "gold",
    "image_features_pca",
    T.StructType(
        [
            _field("path", T.StringType(), False),
            _field("label", T.StringType(), False),
            _field("content_hash", T.StringType(), False),
            _field("pca", T.ArrayType(T.FloatType(), False), False),
            _field("pca_version", T.StringType(), False),
            _field("run_id", T.StringType(), False),
            _field("processed_at", T.TimestampType(), False),
        ]
    ),
)

OPS_RUNS = TableSpec(
    "ops",
    "runs",
    T.StructType(
        [
            _field("job", T.StringType(), False),
            _field("run_id", T.StringType(), False),
            _field("status", T.StringType(), False),
            _field("started_at", T.TimestampType(), False),
            _field("ended_at", T.TimestampType(), False),
            _field("seconds", T.DoubleType(), False),
            _field("rows_in", T.LongType()),
            _field("rows_out", T.LongType()),
            _field("rows_rejected", T.LongType()),
            _field("rows_deleted", T.LongType()),
            _field("rows_per_second", T.DoubleType()),
            _field("model_seconds", T.DoubleType()),
            _field("app_id", T.StringType()),
            _field("details", T.StringType()),
            _field("error", T.StringType()),
        ]
    ),
)

# One row per trained classifier version (gold/train_job.py); the model's parameters and
# its evaluation report live under <lakehouse>/models/classifier/<version>/.
CLASSIFIER_MODELS = TableSpec(
    "gold",
    "classifier_models",
    T.StructType(
        [
            _field("version", T.StringType(), False),
            _field("trained_at", T.TimestampType(), False),
            _field("gold_version", T.LongType(), False),
            _field("feature_model", T.StringType(), False),
            _field("rows_per_source", T.MapType(T.StringType(), T.LongType()), False),
            _field("species", T.ArrayType(T.StringType(), False), False),
            _field("hyper_parameters", T.StringType(), False),  # JSON
            _field("metrics", T.StringType(), False),  # JSON: per evaluation source
            _field("unknown_threshold", T.DoubleType(), False),
            _field("serving", T.BooleanType(), False),
            _field("run_id", T.StringType(), False),
        ]
    ),
)

# Delta refuses NOT NULL inside arrays: the elements' fields are nullable in the schema
# (the classifier never leaves one empty).
TOP_SPECIES = T.ArrayType(
    T.StructType([_field("species", T.StringType()),
                  _field("probability", T.DoubleType())]), False)

# One row per gold row, predicted by the serving classifier (gold/predict_job.py).
GOLD_PREDICTIONS = TableSpec(
    "gold",
    "predictions",
    T.StructType(
        [
            _field("path", T.StringType(), False),
            _field("label", T.StringType(), False),
            _field("content_hash", T.StringType(), False),
            _field("species", T.StringType(), False),
            _field("probability", T.DoubleType(), False),
            _field("top", TOP_SPECIES, False),
            _field("unknown", T.BooleanType(), False),
            _field("closest_label", T.StringType(), False),
            _field("model_version", T.StringType(), False),
            _field("run_id", T.StringType(), False),
            _field("processed_at", T.TimestampType(), False),
        ]
    ),
)

ALL_TABLES = (BRONZE_IMAGES, SILVER_IMAGES, SILVER_REJECTS, GOLD_FEATURES, GOLD_PCA,
              CLASSIFIER_MODELS, GOLD_PREDICTIONS, OPS_RUNS)
