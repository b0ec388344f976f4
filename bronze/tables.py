"""Bronze's table: one row per image file, its bytes as read (``bronze.images``)."""

from __future__ import annotations

from pyspark.sql import types as T

from common.tables import TableSpec, field

BRONZE_IMAGES = TableSpec(
    "bronze",
    "images",
    T.StructType(
        [
            field("path", T.StringType(), False),
            field("modification_time", T.TimestampType()),
            field("length", T.LongType()),
            # null when the file was not read: status says why (too_large, unreadable)
            field("content", T.BinaryType()),
            field("content_hash", T.StringType()),
            field("status", T.StringType(), False),
            field("run_id", T.StringType(), False),
            field("ingested_at", T.TimestampType(), False),
        ]
    ),
    payload=("content",),
)

TABLES = (BRONZE_IMAGES,)
