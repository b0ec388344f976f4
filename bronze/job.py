"""Bronze job: ingest new and changed image files into ``bronze.images``.

    spark-submit $(python -m common.spark --submit-args --env local) \\
        bronze/job.py --source DIR --lakehouse DIR [--sync-deletes] [--env local]

(``make bronze SOURCE=DIR`` runs exactly this.) Every file under ``--source`` whose name
ends with one of ``bronze.extensions`` (any letter case) is one row, keyed by path:

- new or changed files (path, modification time or length differ from bronze) are
  read and upserted with their sha256; unchanged files are not read at all;
- files over ``bronze.max_file_bytes`` are recorded with status ``too_large`` and no
  content; files that cannot be read get status ``unreadable``;
- files deleted from the source stay unless ``--sync-deletes`` is given.
"""

from __future__ import annotations

import common  # noqa: F401 - first, before pyspark: see common/__init__.py

import functools
import logging
import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from bronze.storage import (
    PATH_SCHEMA,
    delete_paths,
    list_source,
    local_file_settings,
    read_files,
    write_files,
)
from bronze.transform import (
    STATUS_TOO_LARGE,
    STATUS_UNREADABLE,
    in_table_order,
    missing_from_source,
    new_or_changed,
    to_bronze_rows,
    to_unread_rows,
    with_image_extension,
)
from common.config import Config, ConfigError, is_remote, local_path
from common.jobs import base_parser, config_from_args, fault_point, parse_or_exit, run_job
from common.runlog import Run
from common.spark import ensure_table, local_frame, path_exists
from common.tables import BRONZE_IMAGES

log = logging.getLogger("bronze")


def check_source(config: Config) -> Config:
    """Fail fast, before Spark starts, on a source that is missing, unreadable or empty."""
    if not config.source:
        raise ConfigError("no image source: give --source DIR (make: SOURCE=DIR)")
    if is_remote(config.source):
        return config  # checked through Hadoop's FileSystem once Spark is up
    root = local_path(config.source)
    if not root.exists():
        raise ConfigError(f"source folder {root} does not exist")
    if not root.is_dir():
        raise ConfigError(f"source {root} is not a folder")
    if not os.access(root, os.R_OK | os.X_OK):
        raise ConfigError(f"source folder {root} cannot be read (permissions)")
    if not any(files for _, _, files in os.walk(root)):
        raise ConfigError(f"source folder {root} contains no files")
    return config


def ingest(spark: SparkSession, config: Config, run: Run, *, sync_deletes: bool) -> None:
    """Bring ``bronze.images`` up to date with the source folder (see module docstring)."""
    if is_remote(config.source) and not path_exists(spark, config.source):
        raise ConfigError(f"source {config.source} does not exist")
    location = ensure_table(spark, BRONZE_IMAGES, config.lakehouse)
    now = datetime.now(timezone.utc)
    files = list_source(spark, config.source)
    listing = files.transform(with_image_extension(config.bronze.extensions))
    run.rows_in = listing.count()
    current = spark.read.format("delta").load(location)
    # Checkpointed: the upserts below change bronze, which would invalidate a cache.
    work = listing.transform(new_or_changed(current)).localCheckpoint(eager=True)
    too_large = work.where(F.col("length") > config.bronze.max_file_bytes)
    empty = work.where(F.col("length") == 0)
    # The counts in one pass (each query costs a planning round in the driver).
    counts = work.agg(
        F.count(F.lit(1)).alias("changed"),
        F.count(F.when(F.col("length") > config.bronze.max_file_bytes, 1)).alias("too_large"),
        F.count(F.when(F.col("length") == 0, 1)).alias("empty"),
        F.count(F.when(F.col("changed_in_place"), 1)).alias("in_place"),
    ).first()
    # Only new paths (the usual case): appends, one pass over the files; a file
    # rewritten in place needs an upsert.
    write = functools.partial(write_files, spark, location, only_new=not counts["in_place"])
    run.rows_rejected = counts["too_large"]
    log.info(
        "source %s: %d image files, %d new or changed (%d over %d bytes)",
        config.source,
        run.rows_in,
        counts["changed"],
        run.rows_rejected,
        config.bronze.max_file_bytes,
    )
    if run.rows_rejected:
        write(too_large.transform(to_unread_rows(STATUS_TOO_LARGE, run.run_id, now)))
    empty_count = counts["empty"]
    run.rows_out += empty_count
    if empty_count:  # nothing to read: recorded as is, silver rejects them as "empty"
        write(in_table_order(empty.withColumn("content", F.lit(bytearray()))
                             .transform(to_bronze_rows(run.run_id, now))))
    to_read = work.where(
        (F.col("length") > 0) & (F.col("length") <= config.bronze.max_file_bytes)
    )
    # Only the paths of new or changed files come to the driver, never their contents.
    paths = [row.path for row in to_read.select("path").orderBy("path").toLocalIterator()]
    chunk_size = config.bronze.read_chunk_files
    for start in range(0, len(paths), chunk_size):
        chunk = paths[start : start + chunk_size]
        written, unreadable = _ingest_chunk(spark, write, chunk, to_read, run.run_id, now)
        run.rows_out += written
        run.rows_rejected += unreadable
        log.info("ingested %d/%d new or changed files", start + len(chunk), len(paths))
    if sync_deletes:
        fresh = spark.read.format("delta").load(location)
        gone = fresh.transform(missing_from_source(listing)).persist()
        run.rows_deleted = gone.count()
        if run.rows_deleted:
            delete_paths(spark, location, gone)
            log.info("removed %d rows whose files left the source", run.rows_deleted)
        gone.unpersist()
    run.details["source"] = config.source
    files.unpersist()


def _ingest_chunk(
    spark: SparkSession,
    write: Callable[[DataFrame], None],
    chunk: list[str],
    to_read: DataFrame,
    run_id: str,
    now: datetime,
) -> tuple[int, int]:
    """Read and upsert one chunk of files; return (rows read, rows unreadable)."""
    with local_file_settings(spark, chunk[0]):
        files = read_files(spark, chunk).persist(StorageLevel.MEMORY_AND_DISK)
        read = files.count()
    fault_point("bronze:after_read")
    wanted = local_frame(spark, [(p,) for p in chunk], PATH_SCHEMA)
    missing = wanted.join(files.select("path"), "path", "left_anti")
    # A file listed but not read either vanished (nothing to keep) or cannot be read.
    lost = [row.path for row in missing.collect()]
    unreadable = [p for p in lost if path_exists(spark, p)]
    if len(lost) > len(unreadable):
        log.warning("%d files vanished between listing and reading", len(lost) - len(unreadable))
    rows = files.transform(to_bronze_rows(run_id, now))
    if unreadable:
        unread = to_read.join(
            local_frame(spark, [(p,) for p in unreadable], PATH_SCHEMA), "path"
        ).transform(to_unread_rows(STATUS_UNREADABLE, run_id, now))
        rows = rows.unionByName(unread)
        log.warning("%d files could not be read: %s", len(unreadable), unreadable[:5])
    fault_point("bronze:before_commit")
    # One output file per ~128 MB read, at least one per core: a chunk of 20,000 small
    # photos must not become hundreds of tiny files that every later scan opens.
    size = to_read.join(wanted, "path").agg(F.sum("length")).first()[0] or 0
    write(in_table_order(rows).coalesce(max(2, -(-size // (128 << 20)))))
    files.unpersist()
    return read, len(unreadable)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("Ingest new and changed image files into bronze.images.")
    parser.add_argument("--source", help="image root folder (or s3a:// URI)")
    parser.add_argument(
        "--sync-deletes",
        action="store_true",
        help="remove rows whose file is no longer in the source",
    )
    parsed = parse_or_exit(
        parser, argv, lambda a: check_source(config_from_args(a, source=a.source))
    )
    if isinstance(parsed, int):
        return parsed
    args, config = parsed
    body = functools.partial(ingest, sync_deletes=args.sync_deletes)
    return run_job("bronze", config, body, log_level=args.log_level)


if __name__ == "__main__":
    sys.exit(main())
