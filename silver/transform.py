"""Pure DataFrame steps of silver: labels, decoding, splitting good rows from rejects."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.images import DecodeLimits, ImageRejected, decode_for_model
from common.tables import SILVER_IMAGES, SILVER_REJECTS

MAX_ERROR_CHARS = 1000

DECODED = T.StructType(
    [
        T.StructField("ok", T.BooleanType()),
        T.StructField("reason", T.StringType()),
        T.StructField("error", T.StringType()),
        T.StructField("width", T.IntegerType()),
        T.StructField("height", T.IntegerType()),
        T.StructField("mode", T.StringType()),
        T.StructField("image", T.BinaryType()),
    ]
)


def with_label_from_path(frame: DataFrame) -> DataFrame:
    """Add ``label``: the name of the file's parent folder (the notebook's rule)."""
    return frame.withColumn("label", F.element_at(F.split(F.col("path"), "/"), -2))


def decode_batch(contents: pd.Series, limits: DecodeLimits) -> pd.DataFrame:
    """Decode a batch of file contents; one output row per input, never raising."""
    rows = []
    for content in contents:
        try:
            image = decode_for_model(content, limits)
            rows.append((True, None, None, image.width, image.height, image.mode, image.pixels))
        except ImageRejected as exc:
            rows.append((False, exc.reason, str(exc)[:MAX_ERROR_CHARS], None, None, None, None))
        except MemoryError:
            # Not the file's fault: the run fails (out of memory, with the setting to
            # change) and the image is decoded by the next run instead of quarantined.
            raise
        except Exception as exc:  # noqa: BLE001 - a bad file must never stop the run
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
            rows.append((False, "corrupt", error, None, None, None, None))
    return pd.DataFrame(rows, columns=DECODED.fieldNames())


def with_decoded_image(limits: DecodeLimits) -> Callable[[DataFrame], DataFrame]:
    """Add ``decoded`` (struct: ok, reason, error, width, height, mode, image) from ``content``.

    Bronze rows that were never read (status too_large / unreadable) are not decoded:
    their status becomes the reject reason.
    """

    @F.pandas_udf(DECODED)
    def decode(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        for contents in batches:
            yield decode_batch(contents, limits)

    def step(bronze: DataFrame) -> DataFrame:
        unread = F.struct(
            F.lit(False).alias("ok"),
            F.col("status").alias("reason"),
            F.concat(F.lit("not read by bronze: "), F.col("status")).alias("error"),
            *[F.lit(None).cast(f.dataType).alias(f.name) for f in DECODED.fields[3:]],
        )
        decoded = F.when(F.col("status") == "ok", decode(F.col("content"))).otherwise(unread)
        return bronze.withColumn("decoded", decoded)

    return step


def accepted_images(run_id: str, now: datetime) -> Callable[[DataFrame], DataFrame]:
    """Decoded rows that are usable -> ``silver.images`` rows."""

    def step(frame: DataFrame) -> DataFrame:
        return frame.where(F.col("decoded.ok")).select(
            "path",
            "label",
            "content_hash",
            F.col("decoded.width").alias("width"),
            F.col("decoded.height").alias("height"),
            F.col("decoded.mode").alias("mode"),
            F.col("decoded.image").alias("image"),
            F.lit(run_id).alias("run_id"),
            F.lit(now).cast("timestamp").alias("processed_at"),
        ).select(*SILVER_IMAGES.schema.fieldNames())

    return step


def rejected_files(run_id: str, now: datetime) -> Callable[[DataFrame], DataFrame]:
    """Decoded rows that are not usable -> ``silver.rejects`` rows (reason + error)."""

    def step(frame: DataFrame) -> DataFrame:
        return frame.where(~F.col("decoded.ok")).select(
            "path",
            "label",
            "content_hash",
            "length",
            F.col("decoded.reason").alias("reason"),
            F.col("decoded.error").alias("error"),
            F.lit(run_id).alias("run_id"),
            F.lit(now).cast("timestamp").alias("processed_at"),
        ).select(*SILVER_REJECTS.schema.fieldNames())

    return step
