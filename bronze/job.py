"""Bronze job: ingest new and changed files into ``bronze.images``.

    spark-submit $(python -m common.spark --submit-args --env local) \\
        bronze/job.py --source DIR --lakehouse DIR [--sync-deletes] [--env local]

(``make bronze SOURCE=DIR`` runs exactly this.) Every non-hidden file under ``--source``
(or, when ``bronze.extensions`` lists endings, each whose name ends with one of them, in
any letter case) is one row, keyed by path; silver decides by content what is an image:

- new or changed files (path, modification time or length differ from bronze) are
  read and upserted with their sha256; unchanged files are not read at all;
- files over ``bronze.max_file_bytes`` are recorded with status ``too_large`` and no
  content; files that cannot be read get status ``unreadable``;
- files deleted from the source stay unless ``--sync-deletes`` is given.

The listing is compared with bronze's (path, modification time, length) in this process
when bronze's files can be read from here (:func:`bronze.storage.known_files`), else by
Spark; ``ops.runs`` records which (``compared_with``).
"""

from __future__ import annotations

import common  # noqa: F401 - first, before pyspark: see common/__init__.py

import functools
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from bronze.storage import (
    LISTING_SCHEMA,
    PATH_SCHEMA,
    delete_paths,
    known_files,
    list_source,
    local_file_settings,
    local_listing,
    read_files,
    write_files,
)
from bronze.tables import BRONZE_IMAGES
from bronze.transform import (
    STATUS_TOO_LARGE,
    STATUS_UNREADABLE,
    image_files,
    in_table_order,
    missing_from_source,
    new_or_changed,
    new_or_changed_files,
    to_bronze_rows,
    to_unread_rows,
    with_image_extension,
)
from common.config import Config, ConfigError
from common.jobs import base_parser, config_from_args, fault_point, parse_or_exit, run_job
from common.layers import Layer
from common.runlog import Run
from common.lake import Table, ensure_table
from common.spark import local_frame
from common.storage import local_path, path_exists, storage_of

log = logging.getLogger("bronze")


def check_source(config: Config) -> Config:
    """Fail fast, before Spark starts, on a source that is missing, unreadable or empty."""
    if not config.source:
        raise ConfigError("no image source: give --source DIR (make: SOURCE=DIR)")
    if not storage_of(config.source).direct:
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


def run_details(config: Config) -> dict:
    """What bronze's ``ops.runs`` row holds from its start: ``source_uri``, the prefix of
    the paths this run writes (``file:/abs/root`` or ``s3a://bucket/root``), from which
    silver takes each row's label (:func:`silver.transform.with_label`)."""
    root = config.source.rstrip("/")
    return {"source_uri": storage_of(root).uri(root)}


def ingest(spark: SparkSession, config: Config, run: Run, *, sync_deletes: bool) -> None:
    """Bring ``bronze.images`` up to date with the source folder (see module docstring)."""
    if not storage_of(config.source).exists(spark, config.source):
        raise ConfigError(f"source {config.source} does not exist")
    bronze = ensure_table(spark, BRONZE_IMAGES, config.lakehouse)
    now = datetime.now(timezone.utc)
    listed = _compare(spark, config, bronze, run)
    work = listed.work
    max_bytes = config.bronze.max_file_bytes
    too_large = work[work["length"] > max_bytes]
    empty = work[work["length"] == 0]
    to_read = work[(work["length"] > 0) & (work["length"] <= max_bytes)].sort_values("path")
    # Only new paths (the usual case): appends, one pass over the files; a file
    # rewritten in place needs an upsert.
    write = functools.partial(write_files, bronze,
                              only_new=not work["changed_in_place"].any())
    run.rows_rejected = len(too_large)
    log.info(
        "source %s: %d files, %d new or changed (%d over %d bytes)",
        config.source, run.rows_in, len(work), run.rows_rejected, max_bytes,
    )
    if len(too_large):
        write(_listing_frame(spark, too_large).transform(
            to_unread_rows(STATUS_TOO_LARGE, run.run_id, now)))
    run.rows_out += len(empty)
    if len(empty):  # nothing to read: recorded as is, silver rejects them as "empty"
        write(in_table_order(_listing_frame(spark, empty)
                             .withColumn("content", F.lit(bytearray()))
                             .transform(to_bronze_rows(run.run_id, now))))
    # Only the paths of new or changed files come to the driver, never their contents.
    chunk_size = config.bronze.read_chunk_files
    for start in range(0, len(to_read), chunk_size):
        chunk = to_read.iloc[start : start + chunk_size]
        written, unreadable = _ingest_chunk(spark, write, chunk, run.run_id, now)
        run.rows_out += written
        run.rows_rejected += unreadable
        log.info("ingested %d/%d new or changed files", start + len(chunk), len(to_read))
    if sync_deletes:
        gone = listed.gone()
        run.rows_deleted = gone.count()
        if run.rows_deleted:
            delete_paths(bronze, gone)
            log.info("removed %d rows whose files left the source", run.rows_deleted)
        gone.unpersist()
    run.details["source"] = config.source
    run.details["compared_with"] = listed.via
    listed.release()


@dataclass
class _Listed:
    """The source compared with bronze: ``work`` (path, modificationTime, length,
    changed_in_place) are the new or changed image files, held by the driver; ``gone()``
    the paths in bronze that the source no longer has (a DataFrame, computed on demand);
    ``via``: how bronze's side was read (``checksum`` or ``spark``, for ``ops.runs``)."""

    work: pd.DataFrame
    gone: Callable[[], DataFrame]
    via: str
    release: Callable[[], None] = lambda: None


def _compare(spark: SparkSession, config: Config, bronze: Table, run: Run) -> _Listed:
    """List the source and compare it with bronze (sets ``run.rows_in``).

    A local source against a local bronze whose checksum lists its files is compared by
    this process (:func:`known_files`): no Spark job at all when nothing changed.
    Otherwise Spark lists (object stores) and joins.
    """
    known = known_files(bronze) if storage_of(config.source).direct else None
    if known is not None:
        listing = image_files(local_listing(spark, config.source), config.bronze.extensions)
        run.rows_in = len(listing)

        def gone_here() -> DataFrame:  # only with --sync-deletes
            gone = known.loc[~known["path"].isin(listing["path"]), ["path"]]
            return local_frame(spark, _tuples(gone), PATH_SCHEMA).persist()

        return _Listed(new_or_changed_files(listing, known), gone_here, "checksum")
    files = list_source(spark, config.source)
    listing = files.transform(with_image_extension(config.bronze.extensions))
    run.rows_in = listing.count()
    current = bronze.read()
    work = listing.transform(new_or_changed(current)).toPandas()
    # The session's time zone is UTC (common.spark), in which toPandas gives naive times.
    work["modificationTime"] = work["modificationTime"].dt.tz_localize("UTC")

    def gone() -> DataFrame:
        fresh = bronze.read()
        return fresh.transform(missing_from_source(listing)).persist()

    return _Listed(work, gone, "spark", files.unpersist)


def _listing_frame(spark: SparkSession, rows: pd.DataFrame) -> DataFrame:
    """Listing rows held by the driver (path, modificationTime, length) as a DataFrame."""
    return local_frame(spark, _tuples(rows[["path", "modificationTime", "length"]]),
                       LISTING_SCHEMA)


def _tuples(frame: pd.DataFrame) -> list[tuple]:
    return list(frame.itertuples(index=False, name=None))


def _ingest_chunk(
    spark: SparkSession,
    write: Callable[[DataFrame], None],
    chunk: pd.DataFrame,
    run_id: str,
    now: datetime,
) -> tuple[int, int]:
    """Read and upsert one chunk of files; return (rows read, rows unreadable)."""
    paths = chunk["path"].tolist()
    with local_file_settings(spark, paths[0]):
        files = read_files(spark, paths).persist(StorageLevel.MEMORY_AND_DISK)
        read = files.count()
    fault_point("bronze:after_read")
    wanted = local_frame(spark, [(p,) for p in paths], PATH_SCHEMA)
    missing = wanted.join(files.select("path"), "path", "left_anti")
    # A file listed but not read either vanished (nothing to keep) or cannot be read.
    lost = [row.path for row in missing.collect()]
    unreadable = [p for p in lost if path_exists(spark, p)]
    if len(lost) > len(unreadable):
        log.warning("%d files vanished between listing and reading", len(lost) - len(unreadable))
    rows = files.transform(to_bronze_rows(run_id, now))
    if unreadable:
        unread = _listing_frame(spark, chunk[chunk["path"].isin(unreadable)]).transform(
            to_unread_rows(STATUS_UNREADABLE, run_id, now))
        rows = rows.unionByName(unread)
        log.warning("%d files could not be read: %s", len(unreadable), unreadable[:5])
    fault_point("bronze:before_commit")
    # One output file per ~128 MB read, at least one per core: a chunk of 20,000 small
    # photos must not become hundreds of tiny files that every later scan opens.
    size = int(chunk["length"].sum())
    write(in_table_order(rows).coalesce(max(2, -(-size // (128 << 20)))))
    files.unpersist()
    return read, len(unreadable)


LAYER = Layer(
    "bronze",
    body=lambda config, options: functools.partial(ingest, sync_deletes=options.sync_deletes),
    check=check_source,
    details=run_details,
)


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
    return run_job("bronze", config, body, log_level=args.log_level,
                   details=run_details(config))


if __name__ == "__main__":
    sys.exit(main())
