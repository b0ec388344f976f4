"""Pure DataFrame steps of bronze: no reads, writes or environment access."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from bronze.tables import BRONZE_IMAGES

STATUS_OK = "ok"
STATUS_TOO_LARGE = "too_large"
STATUS_UNREADABLE = "unreadable"


EVERY_FILE = "*"


def _endings(extensions: Sequence[str]) -> list[str] | None:
    """The endings to keep, or None for every file (``*``, the default: silver decodes by
    content and gives what is no image a reason in ``silver.rejects``)."""
    if EVERY_FILE in extensions:
        return None
    return [f".{e.lower().lstrip('.')}" for e in extensions]


def with_image_extension(extensions: Sequence[str]) -> Callable[[DataFrame], DataFrame]:
    """Keep rows whose ``path`` ends with one of ``extensions``, in any letter case
    (every row when they hold ``*``)."""
    endings = _endings(extensions)

    def step(listing: DataFrame) -> DataFrame:
        if endings is None:
            return listing
        lowered = F.lower(F.col("path"))
        condition: Column = F.lit(False)
        for ending in endings:
            condition = condition | lowered.endswith(ending)
        return listing.where(condition)

    return step


def new_or_changed(current: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """Listing rows (path, modificationTime, length) whose file is not in ``current`` as is,
    with ``changed_in_place``: whether bronze already holds the path (with another
    modification time or length), so the row replaces one rather than adding one.

    A file is unchanged when bronze holds its path with the same modification time and
    length; anything else (new path, rewritten in place) is work.
    """
    known = current.select(
        F.col("path").alias("_known_path"),
        F.col("modification_time").alias("_known_time"),
        F.col("length").alias("_known_length"),
    )

    def step(listing: DataFrame) -> DataFrame:
        joined = listing.join(known, listing["path"] == known["_known_path"], "left")
        changed_in_place = F.col("_known_path").isNotNull()
        same = (changed_in_place & (F.col("modificationTime") == F.col("_known_time"))
                & (F.col("length") == F.col("_known_length")))
        return joined.where(~same).select(
            *listing.columns, changed_in_place.alias("changed_in_place"))

    return step


def image_files(listing: pd.DataFrame, extensions: Sequence[str]) -> pd.DataFrame:
    """:func:`with_image_extension` on a listing held by the driver."""
    endings = _endings(extensions)
    if endings is None:
        return listing
    return listing[listing["path"].str.lower().str.endswith(tuple(endings))]


def new_or_changed_files(listing: pd.DataFrame, known: pd.DataFrame) -> pd.DataFrame:
    """:func:`new_or_changed` on frames held by the driver: ``listing`` (path,
    modificationTime, length) against ``known`` (bronze's path, modification_time,
    length), compared to the microsecond as Spark compares the two timestamps."""
    renamed = known.loc[:, ["path", "modification_time", "length"]].set_axis(
        ["_known_path", "_known_time", "_known_length"], axis=1)
    joined = listing.merge(renamed, how="left", left_on="path", right_on="_known_path")
    changed_in_place = joined["_known_path"].notna()
    same = (changed_in_place & (joined["modificationTime"] == joined["_known_time"])
            & (joined["length"] == joined["_known_length"]))
    return joined.loc[~same, ["path", "modificationTime", "length"]].assign(
        changed_in_place=changed_in_place[~same]).reset_index(drop=True)


def missing_from_source(listing: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """Bronze rows (``current``) whose path the source listing no longer has."""

    def step(current: DataFrame) -> DataFrame:
        return current.select("path").join(listing.select("path"), "path", "left_anti")

    return step


def to_bronze_rows(run_id: str, ingested_at: datetime) -> Callable[[DataFrame], DataFrame]:
    """binaryFile rows (path, modificationTime, length, content) -> ``bronze.images`` rows."""

    def step(files: DataFrame) -> DataFrame:
        return files.select(
            "path",
            F.col("modificationTime").alias("modification_time"),
            "length",
            "content",
            F.sha2("content", 256).alias("content_hash"),
            F.lit(STATUS_OK).alias("status"),
            F.lit(run_id).alias("run_id"),
            F.lit(ingested_at).cast("timestamp").alias("ingested_at"),
        )

    return step


def to_unread_rows(
    status: str, run_id: str, ingested_at: datetime
) -> Callable[[DataFrame], DataFrame]:
    """Listing rows of files that were not read -> bronze rows with no content and ``status``."""

    def step(listing: DataFrame) -> DataFrame:
        return listing.select(
            "path",
            F.col("modificationTime").alias("modification_time"),
            "length",
            F.lit(None).cast("binary").alias("content"),
            F.lit(None).cast("string").alias("content_hash"),
            F.lit(status).alias("status"),
            F.lit(run_id).alias("run_id"),
            F.lit(ingested_at).cast("timestamp").alias("ingested_at"),
        )

    return step


def in_table_order(frame: DataFrame) -> DataFrame:
    """Columns in ``bronze.images`` order."""
    return frame.select(*BRONZE_IMAGES.schema.fieldNames())
