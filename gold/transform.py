"""Pure DataFrame steps of gold."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from gold.tables import GOLD_FEATURES


def with_features(
    features: Callable[..., Column], *, from_files: bool = False
) -> Callable[[DataFrame], DataFrame]:
    """Add ``features`` with the featurizing UDF: from ``image``, or (``from_files``)
    from each row's silver file and key, so that Spark never reads the image column."""

    def step(silver: DataFrame) -> DataFrame:
        if from_files:
            return silver.withColumn("features", features(
                F.col("_metadata.file_path"), F.col("path"), F.col("content_hash")))
        return silver.withColumn("features", features(F.col("image")))

    return step


def to_gold_rows(model: str, run_id: str, now: datetime) -> Callable[[DataFrame], DataFrame]:
    """Featurized silver rows -> ``gold.image_features`` rows."""

    def step(frame: DataFrame) -> DataFrame:
        return frame.select(
            "path",
            "label",
            "content_hash",
            "features",
            F.lit(model).alias("model"),
            F.lit(run_id).alias("run_id"),
            F.lit(now).cast("timestamp").alias("processed_at"),
        ).select(*GOLD_FEATURES.schema.fieldNames())

    return step


def export_columns(gold: DataFrame) -> DataFrame:
    """The Parquet export's columns, as the original notebook wrote them."""
    return gold.select("path", "label", "features")
