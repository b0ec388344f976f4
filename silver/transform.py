"""Pure DataFrame steps of silver: labels, decoding, splitting good rows from rejects."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.images import DecodeLimits, ImageRejected, decode_for_model
from silver.tables import SILVER_IMAGES, SILVER_REJECTS

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


# The format a file's first bytes announce (for the run's summary; decoding does not
# trust it: Pillow recognises the content itself). Hex of bytes 0-11.
_MAGIC = (
    ("JPEG", "FFD8FF", 0), ("PNG", "89504E470D0A1A0A", 0), ("GIF", "474946383", 0),
    ("TIFF", "49492A00", 0), ("TIFF", "4D4D002A", 0), ("BMP", "424D", 0),
    ("WEBP", "57454250", 16),
)
_HEIF_BRANDS = ("heic", "heix", "hevc", "hevx", "heim", "heis", "mif1", "msf1")


def with_format(frame: DataFrame) -> DataFrame:
    """Add ``format``: JPEG, PNG, GIF, TIFF, BMP, WEBP, HEIF, AVIF, other, empty or unread."""
    head = F.hex(F.substring(F.col("content"), 1, 12))
    brand = F.lower(F.decode(F.substring(F.col("content"), 9, 4), "ISO-8859-1"))
    is_ftyp = F.substring(head, 9, 8) == "66747970"
    fmt = F.when(F.col("content").isNull(), "unread").when(F.length("content") == 0, "empty")
    for name, magic, offset in _MAGIC:
        fmt = fmt.when(F.substring(head, offset + 1, len(magic)) == magic, name)
    fmt = (fmt.when(is_ftyp & brand.isin(*_HEIF_BRANDS), "HEIF")
           .when(is_ftyp & brand.isin("avif", "avis"), "AVIF").otherwise("other"))
    return frame.withColumn("format", fmt)


def outcome_counts(frame: DataFrame) -> tuple[dict[str, int], dict[str, int]]:
    """Files by outcome (``images`` or the reject reason) and by format, of decoded rows."""
    outcome = F.when(F.col("decoded.ok"), "images").otherwise(F.col("decoded.reason"))
    rows = frame.groupBy(outcome.alias("outcome"), "format").count().collect()
    by_outcome: dict[str, int] = {}
    by_format: dict[str, int] = {}
    for row in rows:
        by_outcome[row.outcome] = by_outcome.get(row.outcome, 0) + row["count"]
        by_format[row.format] = by_format.get(row.format, 0) + row["count"]
    return (dict(sorted(by_outcome.items(), key=lambda kv: (-kv[1], kv[0]))),
            dict(sorted(by_format.items(), key=lambda kv: (-kv[1], kv[0]))))


def with_label(rule: str, roots: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """Add ``label`` by ``rule`` (``silver.label_rule``) from each row's path below its
    source root, and ``source_uri``.

    ``roots`` maps bronze's ``run_id`` to the ``source_uri`` that run listed (from its
    ``ops.runs`` row). ``parent``: the parent folder's name (the notebook's rule);
    ``first_folder``: the first folder under the root. A file directly in the root has no
    label (null: :func:`with_decoded_image` rejects it as ``no_label``). A row whose run
    recorded no root (a bronze of an older release) keeps the parent folder's name.
    """

    def step(frame: DataFrame) -> DataFrame:
        joined = frame.join(F.broadcast(roots), "run_id", "left")
        root = F.concat(F.col("source_uri"), F.lit("/"))
        inside = F.col("source_uri").isNotNull() & F.col("path").startswith(root)
        parts = F.split(F.substring(F.col("path"), F.length(root) + 1, 1 << 30), "/")
        by_rule = (F.element_at(parts, -2) if rule == "parent" else F.element_at(parts, 1))
        label = (F.when(~inside, F.element_at(F.split(F.col("path"), "/"), -2))
                 .when(F.size(parts) < 2, F.lit(None).cast("string"))
                 .otherwise(by_rule))
        return joined.withColumn("label", label)

    return step


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
    their status becomes the reject reason; nor are rows without a label (``no_label``).
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
        no_label = F.struct(
            F.lit(False).alias("ok"),
            F.lit("no_label").alias("reason"),
            F.concat(F.lit("the file is directly in the source root "),
                     F.coalesce(F.col("source_uri"), F.lit("")),
                     F.lit(": put it in a folder named after its class")).alias("error"),
            *[F.lit(None).cast(f.dataType).alias(f.name) for f in DECODED.fields[3:]],
        )
        decoded = (F.when(F.col("status") != "ok", unread)
                   .when(F.col("label").isNull(), no_label)
                   .otherwise(decode(F.col("content"))))
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
