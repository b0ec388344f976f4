"""Bronze table I/O: list the source, read file contents, upsert and delete rows."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from datetime import datetime, timezone
from urllib.parse import unquote, urlsplit

from delta.tables import DeltaTable
from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common.config import is_remote, local_path
from common.spark import hadoop_fs, path_exists, session_conf

log = logging.getLogger("bronze")

_GLOB_CHARS = re.compile(r"([\\\[\]*?{}])")

# Settings for the files of a local source (an object store keeps Spark's defaults):
# - Spark lists more than 32 paths (folders, or the files of a read) with a Spark job of
#   up to 10,000 tasks, one per path: right for an object store, where each listing is a
#   slow remote call, but on a local disk each task costs far more than the listing it
#   does. On 19,993 files, reading them was preceded by a 10,000-task listing job of
#   26.7 s, and listing the 141 label folders by a 142-task job of 1.4 s; the driver
#   lists them itself in a few seconds.
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
        if not is_remote(location):
            for key, value in LOCAL_FILE_SETTINGS.items():
                stack.enter_context(session_conf(spark, key, value))
        yield


def escape_glob(path: str) -> str:
    """Escape Hadoop glob characters so a file named ``q[1]?.jpg`` loads as itself."""
    return _GLOB_CHARS.sub(r"\\\1", path)


def list_source(spark: SparkSession, source: str) -> DataFrame:
    """Every file under ``source`` (recursively): path, modificationTime, length (persisted).

    Only metadata is read: Spark's binaryFile source reads ``content`` only when a query
    asks for it. Like every Spark file source, it treats names starting with ``.`` or
    ``_`` as hidden and skips them. Its scan also drops zero-byte files, which the file
    index still knows: they are added back here (they must reach silver.rejects).
    """
    reader = spark.read.format("binaryFile").option("recursiveFileLookup", "true")
    try:
        with local_file_settings(spark, source):
            scan = reader.load(source)
    except Exception as exc:  # noqa: BLE001 - only a folder we may not list is handled
        if "AccessDeniedException" not in str(exc) or is_remote(source):
            raise
        parts, locked = listable_parts(local_path(source))
        log.warning(
            "%d folder(s) under %s cannot be listed (permission denied); files in them "
            "are not ingested until their permissions allow it: %s",
            len(locked), source, ", ".join(str(p) for p in locked[:10]),
        )
        with local_file_settings(spark, source):
            scan = reader.load([escape_glob(str(p)) for p in parts])
    listing = scan.select("path", "modificationTime", "length").persist(
        StorageLevel.MEMORY_AND_DISK
    )
    # The listing reads no content: count each file as ~0 bytes to open, so 20,000 small
    # files make a few tasks instead of hundreds (Spark's default assumes 4 MB a file).
    with session_conf(spark, "spark.sql.files.openCostInBytes", "1"):
        scanned = listing.count()
        indexed_paths = _input_files(spark, scan)
        if len(indexed_paths) == scanned:  # no zero-byte file: nothing to add back
            return listing
        indexed = spark.createDataFrame([(uri_to_path(u),) for u in indexed_paths], "path string")
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
    return listing.unionByName(spark.createDataFrame(empty_rows, listing.schema)).persist(
        StorageLevel.MEMORY_AND_DISK
    )


def listable_parts(root: Path) -> tuple[list[Path], list[Path]]:
    """For a local tree with folders we may not list: (what to load, the locked folders).

    Whole listable subtrees are loaded as folders; a folder that holds a locked one
    contributes its own files and its other subtrees. Symlinked folders are not entered.
    """
    parts: list[Path] = []
    locked: list[Path] = []

    def walk(folder: Path) -> bool:  # True when the whole subtree can be listed
        try:
            entries = list(os.scandir(folder))
        except PermissionError:
            locked.append(folder)
            return False
        subfolders = [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
        whole = [walk(sub) for sub in subfolders]
        if all(whole):
            return True
        parts.extend(sub for sub, ok in zip(subfolders, whole) if ok)
        parts.extend(Path(e.path) for e in entries if e.is_file())
        return False

    if walk(root):
        parts.append(root)
    return parts, locked


def _input_files(spark: SparkSession, frame: DataFrame) -> list[str]:
    """``frame.inputFiles()`` in one py4j call (PySpark's fetches 20,000 paths one by one,
    ~2 s). URIs never contain a raw newline, so it separates them safely."""
    joined = spark.sparkContext._jvm.org.apache.hadoop.util.StringUtils.join(
        "\n", frame._jdf.inputFiles()
    )
    return joined.split("\n") if joined else []


def uri_to_path(uri: str) -> str:
    """``file:///a%20b/c.jpg`` (the file index's form) -> ``file:/a b/c.jpg`` (the path column's)."""
    parts = urlsplit(uri)
    authority = f"//{parts.netloc}" if parts.netloc else ""
    return f"{parts.scheme}:{authority}{unquote(parts.path)}"


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
    return spark.createDataFrame([], "path string, modificationTime timestamp, "
                                     "length bigint, content binary")


def upsert_files(spark: SparkSession, location: str, rows: DataFrame) -> None:
    """Insert new paths, replace rows whose file changed; one atomic Delta commit."""
    target = DeltaTable.forPath(spark, location).alias("t")
    changed = (
        (F.col("t.modification_time") != F.col("s.modification_time"))
        | (F.col("t.length") != F.col("s.length"))
        | ~F.col("t.content_hash").eqNullSafe(F.col("s.content_hash"))
        | (F.col("t.status") != F.col("s.status"))
    )
    (
        target.merge(rows.alias("s"), F.col("t.path") == F.col("s.path"))
        .whenMatchedUpdateAll(condition=changed)
        .whenNotMatchedInsertAll()
        .execute()
    )


def write_files(spark: SparkSession, location: str, rows: DataFrame, *, only_new: bool) -> None:
    """Add ``rows`` to bronze in one commit: a plain append when none of their paths is in
    the table yet (one pass over the files), else an upsert (MERGE reads its source twice)."""
    if only_new:
        rows.write.format("delta").mode("append").save(location)
    else:
        upsert_files(spark, location, rows)


def delete_paths(spark: SparkSession, location: str, paths: DataFrame) -> None:
    """Delete the rows whose path is in ``paths`` (a one-column DataFrame); one commit."""
    target = DeltaTable.forPath(spark, location).alias("t")
    (
        target.merge(paths.alias("s"), F.col("t.path") == F.col("s.path"))
        .whenMatchedDelete()
        .execute()
    )
