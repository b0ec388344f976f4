"""Bronze table I/O: list the source, read file contents, upsert and delete rows."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from urllib.parse import unquote, urlsplit

import pandas as pd
from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.lake import Table
from common.spark import local_frame, session_conf
from common.storage import hadoop_fs, input_files, local_path, path_exists, storage_of

log = logging.getLogger("bronze")

_GLOB_CHARS = re.compile(r"([\\\[\]*?{}])")

# Settings for the files of a local source (an object store keeps Spark's defaults):
# - Spark lists more than 32 paths (the files of a read) with a Spark job of up to
#   10,000 tasks, one per path: right for an object store, where each listing is a slow
#   remote call, but on a local disk each task costs far more than the listing it does.
#   On 19,993 files, reading them was preceded by a 10,000-task listing job of 26.7 s;
#   the driver lists them itself in a few seconds.
# - Spark packs files into read tasks as if opening one cost as much as reading 4 MB (an
#   object store's request): 32 photos of 5 KB a task, 625 tasks for 20,000 photos, each
#   pass over them paying 625 task starts. Opening a local file costs about as much as
#   reading 64 KB: 11 tasks for the same photos. Cold bronze on 20,590 photos, two pairs:
#   26.9 and 31.3 s at 4 MB, 24.4 and 28.0 s at 64 KB.
LOCAL_FILE_SETTINGS = {
    "spark.sql.sources.parallelPartitionDiscovery.threshold": str(2**31 - 1),
    "spark.sql.files.openCostInBytes": str(64 << 10),
}


@contextlib.contextmanager
def local_file_settings(spark: SparkSession, location: str) -> Iterator[None]:
    """:data:`LOCAL_FILE_SETTINGS` for the queries inside the block when ``location`` is
    local (listing happens when a frame is loaded; task packing when it is planned)."""
    with contextlib.ExitStack() as stack:
        if storage_of(location).direct:
            for key, value in LOCAL_FILE_SETTINGS.items():
                stack.enter_context(session_conf(spark, key, value))
        yield


def escape_glob(path: str) -> str:
    """Escape Hadoop glob characters so a file named ``q[1]?.jpg`` loads as itself."""
    return _GLOB_CHARS.sub(r"\\\1", path)


def list_source(spark: SparkSession, source: str) -> DataFrame:
    """Every file under ``source`` (recursively): path, modificationTime, length.

    Only metadata is read, never contents. Like every Spark file source, names starting
    with ``.`` or ``_`` are hidden (:func:`is_hidden`), symbolic links are followed, and
    a folder that cannot be listed (permission denied) is reported by name and skipped;
    the files under every other folder are listed. Zero-byte files are listed too (they
    must reach silver.rejects).

    A local source is walked by this process; an object store (s3a://, hdfs://) is
    listed by Spark, which lists it in parallel.
    """
    if not storage_of(source).direct:
        return _list_with_spark(spark, source)
    return _list_local(spark, source)


# Why a local source is not listed by Spark: its binaryFile scan costs ~2.8 s for 20,590
# photos in a fresh JVM (the driver lists them, then a scan stats each file again as a
# task, then a second query finds the zero-byte files the scan drops). os.scandir walks
# the same tree in 0.08 s, and the listing reaches Spark as one Arrow batch.
LISTING_SCHEMA = T.StructType([
    T.StructField("path", T.StringType()),
    T.StructField("modificationTime", T.TimestampType()),
    T.StructField("length", T.LongType()),
])
PATH_SCHEMA = T.StructType([T.StructField("path", T.StringType())])


def is_hidden(name: str) -> bool:
    """Spark's rule for files and folders it skips (``InMemoryFileIndex``): names starting
    with ``.``, or with ``_`` and holding no ``=``, or ending with ``._COPYING_``;
    ``_metadata*`` and ``_common_metadata*`` are kept."""
    excluded = (
        (name.startswith("_") and "=" not in name)
        or name.startswith(".")
        or name.endswith("._COPYING_")
    )
    return excluded and not name.startswith(("_common_metadata", "_metadata"))


def _list_local(spark: SparkSession, source: str) -> DataFrame:
    frame = local_listing(spark, source)
    if frame.empty:
        return local_frame(spark, [], LISTING_SCHEMA)
    return spark.createDataFrame(frame, LISTING_SCHEMA)


def local_listing(spark: SparkSession, source: str) -> pd.DataFrame:
    """:func:`list_source` of a local ``source``, as a pandas frame held by this process."""
    fs, hpath = hadoop_fs(spark, source)
    # The root as Spark writes it in the path column (``file:/abs/path``), so a path
    # listed here equals the one a Spark listing would give, and bronze's keys stay.
    qualified = fs.makeQualified(hpath)
    prefix = qualified.toString().rstrip("/")
    root = qualified.toUri().getPath().rstrip("/")
    rows, locked = walk_files(root or "/")
    if locked:
        log.warning(
            "%d folder(s) under %s cannot be listed (permission denied); files in them "
            "are not ingested until their permissions allow it: %s",
            len(locked), source, ", ".join(locked[:10]),
        )
    paths, millis, lengths = zip(*rows) if rows else ((), (), ())
    return pd.DataFrame({
        "path": pd.Series([prefix + p[len(root):] for p in paths], dtype=object),
        # Hadoop's modification time of a local file: milliseconds, truncated.
        "modificationTime": pd.to_datetime(pd.Series(millis, dtype="int64"), unit="ms", utc=True),
        "length": pd.Series(lengths, dtype="int64"),
    })


def walk_files(root: str) -> tuple[list[tuple[str, int, int]], list[str]]:
    """(path, modification time in ms, length) of every file under ``root`` that Spark
    would list, and the folders that could not be listed. Links are followed, as Spark
    does, except a link back to a folder it is inside of (a cycle, on which Spark's own
    listing never ends); a dangling link or a file that vanishes during the walk is not
    a file."""
    rows: list[tuple[str, int, int]] = []
    locked: list[str] = []
    stack: list[tuple[str, frozenset]] = [(root, frozenset())]
    while stack:
        folder, inside = stack.pop()
        try:
            status = os.stat(folder)
            with os.scandir(folder) as entries:
                found = list(entries)
        except PermissionError:
            locked.append(folder)
            continue
        except (FileNotFoundError, NotADirectoryError):
            continue  # vanished during the walk
        here = inside | {(status.st_dev, status.st_ino)}
        for entry in found:
            if is_hidden(entry.name):
                continue
            try:
                if entry.is_dir():
                    target = entry.stat()
                    if (target.st_dev, target.st_ino) not in here:
                        stack.append((entry.path, here))
                    continue
                status = entry.stat()
            except FileNotFoundError:
                continue
            except PermissionError:
                if not os.access(folder, os.X_OK):
                    locked.append(folder)  # listable, not searchable: none of it is readable
                    break
                locked.append(entry.path)  # e.g. a link into a folder that is not searchable
                continue
            rows.append((entry.path, status.st_mtime_ns // 1_000_000, status.st_size))
    return rows, sorted(locked)


def _list_with_spark(spark: SparkSession, source: str) -> DataFrame:
    """:func:`list_source` through Spark's binaryFile listing (persisted)."""
    reader = spark.read.format("binaryFile").option("recursiveFileLookup", "true")
    scan = reader.load(source)
    listing = scan.select("path", "modificationTime", "length").persist(
        StorageLevel.MEMORY_AND_DISK
    )
    # The listing reads no content: count each file as ~0 bytes to open, so 20,000 small
    # files make a few tasks instead of hundreds (Spark's default assumes 4 MB a file).
    with session_conf(spark, "spark.sql.files.openCostInBytes", "1"):
        scanned = listing.count()
        indexed_paths = input_files(spark, scan)
        if len(indexed_paths) == scanned:  # no zero-byte file: nothing to add back
            return listing
        indexed = local_frame(spark, [(uri_to_path(u),) for u in indexed_paths], PATH_SCHEMA)
        unscanned = [row.path for row in indexed.join(listing, "path", "left_anti").collect()]
    if not unscanned:
        return listing
    empty_rows = []
    for path in unscanned:
        fs, hpath = hadoop_fs(spark, path)
        status = fs.getFileStatus(hpath)
        empty_rows.append(
            (path, datetime.fromtimestamp(status.getModificationTime() / 1000, timezone.utc),
             int(status.getLen()))
        )
    return listing.unionByName(local_frame(spark, empty_rows, listing.schema)).persist(
        StorageLevel.MEMORY_AND_DISK
    )


def uri_to_path(uri: str) -> str:
    """``file:///a%20b/c.jpg`` (the file index's form) -> ``file:/a b/c.jpg`` (the path column's)."""
    parts = urlsplit(uri)
    authority = f"//{parts.netloc}" if parts.netloc else ""
    return f"{parts.scheme}:{authority}{unquote(parts.path)}"


# What bronze compares a listing with (:func:`known_files`).
KNOWN_COLUMNS = ("path", "modification_time", "length")


def known_files(bronze: Table) -> pd.DataFrame | None:
    """Every bronze row's path, modification time and length, read by this process.

    Comparing a listing with bronze through Spark cost a job in a fresh JVM ~4.7 s on
    20,400 photos (the listing sent to Spark and counted, bronze's Delta snapshot built,
    its key columns scanned and joined), even when nothing changed; the same three
    columns read straight from bronze's Parquet files take 0.03-0.05 s. The files are
    those of bronze's latest version as its checksum file lists them
    (:meth:`common.lake.Table.files`); when it does not (a remote lakehouse, no
    checksum, more files than Delta lists there), this returns None and the caller asks
    Spark. Only the three columns are read, never the images.
    """
    if not storage_of(bronze.location).direct:
        return None
    found = bronze.files()
    if found is None:
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        tables = [pq.read_table(local_path(p), columns=list(KNOWN_COLUMNS)) for p in found[1]]
    except (OSError, KeyError, pa.ArrowInvalid):
        return None  # a file gone or unlike the table: Spark reads it, or says why not
    if not tables:
        return pd.DataFrame({"path": pd.Series(dtype=object),
                             "modification_time": pd.Series(dtype="datetime64[ns, UTC]"),
                             "length": pd.Series(dtype="int64")})
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    times = frame["modification_time"]
    # Spark writes timestamps as INT96 (read as naive UTC) or as UTC-adjusted micros.
    frame["modification_time"] = (times.dt.tz_localize("UTC") if times.dt.tz is None
                                  else times.dt.tz_convert("UTC"))
    return frame


def read_files(spark: SparkSession, paths: Sequence[str]) -> DataFrame:
    """binaryFile rows (path, modificationTime, length, content) of exactly ``paths``.

    Files that vanish or cannot be read between listing and reading are skipped here
    (``ignoreMissingFiles``/``ignoreCorruptFiles``); the caller finds them by path.
    Call it, and plan the first query on the frame, inside :func:`local_file_settings`.
    """
    reader = (
        spark.read.format("binaryFile")
        .option("ignoreMissingFiles", "true")
        .option("ignoreCorruptFiles", "true")
    )
    for _ in range(3):
        try:
            frame = reader.load([escape_glob(p) for p in paths])
            return frame.select("path", "modificationTime", "length", "content")
        except AnalysisException as exc:
            if "PATH_NOT_FOUND" not in str(exc):
                raise
            # A listed file vanished before Spark indexed it: read the others.
            paths = [p for p in paths if path_exists(spark, p)]
            if not paths:
                break
    return local_frame(spark, [], T.StructType(
        [*LISTING_SCHEMA.fields, T.StructField("content", T.BinaryType())]))


def upsert_files(bronze: Table, rows: DataFrame) -> None:
    """Insert new paths, replace rows whose file changed; one atomic Delta commit."""
    changed = (
        (F.col("t.modification_time") != F.col("s.modification_time"))
        | (F.col("t.length") != F.col("s.length"))
        | ~F.col("t.content_hash").eqNullSafe(F.col("s.content_hash"))
        | (F.col("t.status") != F.col("s.status"))
    )
    (
        bronze.merge(rows, F.col("t.path") == F.col("s.path"))
        .whenMatchedUpdateAll(condition=changed)
        .whenNotMatchedInsertAll()
        .execute()
    )


def write_files(bronze: Table, rows: DataFrame, *, only_new: bool) -> None:
    """Add ``rows`` to bronze in one commit: a plain append when none of their paths is in
    the table yet (one pass over the files), else an upsert (MERGE reads its source twice)."""
    if only_new:
        bronze.append(rows)
    else:
        upsert_files(bronze, rows)


def delete_paths(bronze: Table, paths: DataFrame) -> None:
    """Delete the rows whose path is in ``paths`` (a one-column DataFrame); one commit."""
    bronze.merge(paths, F.col("t.path") == F.col("s.path")).whenMatchedDelete().execute()
