"""Silver's tables: the model input of each usable image (``silver.images``) and
why each other file was not usable (``silver.rejects``)."""

from __future__ import annotations

from pyspark.sql import types as T

from common.tables import IMAGE_BYTES, TableSpec, field

SILVER_IMAGES = TableSpec(
    "silver",
    "images",
    T.StructType(
        [
            field("path", T.StringType(), False),
            field("label", T.StringType(), False),
            field("content_hash", T.StringType(), False),
            field("width", T.IntegerType(), False),
            field("height", T.IntegerType(), False),
            field("mode", T.StringType(), False),
            # 224x224 RGB, row-major uint8 (H, W, C): exactly the array the model gets
            field("image", T.BinaryType(), False),
            field("run_id", T.StringType(), False),
            field("processed_at", T.TimestampType(), False),
        ]
    ),
    constraints=(("image_224x224_rgb", f"length(image) = {IMAGE_BYTES}"),),
    payload=("image",),
)

SILVER_REJECTS = TableSpec(
    "silver",
    "rejects",
    T.StructType(
        [
            field("path", T.StringType(), False),
            field("label", T.StringType()),
            field("content_hash", T.StringType()),
            field("length", T.LongType()),
            field("reason", T.StringType(), False),
            field("error", T.StringType()),
            field("run_id", T.StringType(), False),
            field("processed_at", T.TimestampType(), False),
        ]
    ),
)

TABLES = (SILVER_IMAGES, SILVER_REJECTS)
