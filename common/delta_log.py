"""The one module that knows Delta's insides: its log and its private classes.

Jobs read and write tables through :class:`common.lake.Table` (Delta's public API:
``DeltaTable``, ``spark.read.format("delta")``, ``MERGE``/``DELETE``), which asks this
module where it answers faster. What is here:

- the names in a table's ``_delta_log`` (:func:`latest_version`, :func:`is_delta_table`):
  the file naming of Delta's protocol (``PROTOCOL.md``: 20-digit versions, checkpoints),
  which every release reads and writes alike. One listing answers "which version is
  latest", where ``DeltaTable.history(1)`` plans and runs a Spark query;
- a version's commit and checksum files (:func:`read_commit`, :func:`checksum`,
  :func:`table_state`, :func:`data_files`, :func:`appended_files`): what the log path of
  :mod:`common.incremental` reads so that an incremental run touches a handful of small
  files instead of every key of the upstream table; bronze's listing and the run log use
  the checksum's file list the same way;
- :class:`Transaction`: Delta's ``OptimisticTransaction`` through py4j, so that gold's
  Python workers can write their own Parquet files and the driver commits them at once.

The commit and checksum contents and the private classes change between releases, so
they are used only with a Delta release they were tested with (:data:`TESTED_DELTA`,
checked against the session's JVM: :func:`private_routes`). With any other, each of
those functions answers None and :func:`open_transaction` opens none: every caller then
takes its public route (compare keys, let Spark list and write), and the run log says so
once. Each private route answers in well under a millisecond (the log path: about 15
ms) what its public route answers in 34 ms to 1 s on a 10,000-image lakehouse, several
times a run (``make delta-bench``, docs/performance.md); a no-op job run takes about 4.5 s.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from common.storage import hadoop_fs, join_path, path_exists, read_text, storage_of

log = logging.getLogger("delta")


# The folder of a table's log, in the table's folder.
LOG_FOLDER = "_delta_log"


def log_folder(location: str) -> str:
    """The log folder of the table at ``location``."""
    return location.rstrip("/") + "/" + LOG_FOLDER


# A name in _delta_log that only a committed version leaves: its commit, checkpoint or
# checksum (``00000000000000000000.json``, ...), or the checkpoint pointer.
_VERSION_ENTRY = re.compile(r"\d{20}\.|_last_checkpoint$")
# A committed version's commit file or checkpoint (single or multi-part). Delta writes a
# commit under a temporary name and renames it (local, HDFS) or puts it whole (S3), so a
# name of this form is always a complete version.
_COMMITTED = re.compile(r"(\d{20})\.(?:json|checkpoint(?:\.\d+\.\d+)?\.parquet)$")


def _log_names(spark: SparkSession | None, path: str) -> list[str] | None:
    """The names in ``path``'s ``_delta_log`` folder, or None when it has none.

    A table's log keeps a commit and a checksum per version for 30 days; a local one
    is listed by Python itself (:meth:`common.storage.LocalStorage.list_names`).
    """
    folder = log_folder(path)
    return storage_of(folder).list_names(spark, folder)


def is_delta_table(spark: SparkSession | None, path: str) -> bool:
    """Whether ``path`` holds a Delta table: a ``_delta_log`` with at least one version
    (``spark`` may be None for a local path: Python lists it).

    A ``_delta_log`` without any is no table but the trace of a creation killed before
    it wrote version 0 (Delta makes the folder first); :func:`common.lake.ensure_table` creates the
    table there again.
    """
    return any(_VERSION_ENTRY.match(name) for name in _log_names(spark, path) or ())


def latest_version(spark: SparkSession, path: str) -> int | None:
    """The latest committed version of the Delta table at ``path`` (None: no table),
    from the names in its log: one listing, where ``DeltaTable.history(1)`` plans and
    runs a Spark query to read the same number out of the last commit."""
    versions = [int(match.group(1)) for name in _log_names(spark, path) or ()
                if (match := _COMMITTED.match(name))]
    return max(versions) if versions else None


def remove_unversioned_log(spark: SparkSession, location: str) -> bool:
    """Remove the ``_delta_log`` at ``location`` when it holds no version: the trace of a
    creation killed before it wrote version 0 (Delta would take the folder for a table
    and fail to read it). Whether there was one."""
    folder = log_folder(location)
    if not path_exists(spark, folder) or is_delta_table(spark, location):
        return False
    fs, hpath = hadoop_fs(spark, folder)
    fs.delete(hpath, True)
    return True


# Upstream commits a log-path run reads at most; beyond that the keys are compared (one
# pass over every key costs less than hundreds of small reads from an object store).
MAX_LOG_COMMITS = 200


@dataclass(frozen=True)
class TableState:
    """A Delta table at one version, from that version's checksum file (``.crc``)."""

    version: int
    id: str
    schema: T.StructType
    configuration: dict
    partition_columns: tuple[str, ...]


# The Delta releases whose log files and private classes this module was tested with.
TESTED_DELTA = ("4.0.1",)
_RUNNING: dict[str, str] = {}  # per process: the JVM's Delta release, and whether it was said


def delta_version(spark: SparkSession) -> str:
    """The Delta release in the session's JVM (``io.delta.VERSION``), or "unknown"."""
    if "version" not in _RUNNING:
        try:
            _RUNNING["version"] = str(getattr(spark.sparkContext._jvm.io.delta, "package")
                                      .VERSION())
        except Exception:  # noqa: BLE001 - a build without it: not one we tested
            _RUNNING["version"] = "unknown"
    return _RUNNING["version"]


def private_routes(spark: SparkSession) -> bool:
    """Whether Delta's log files and private classes may be used: the running Delta is
    one of :data:`TESTED_DELTA`. When not, a warning says so once per process."""
    version = delta_version(spark)
    if version in TESTED_DELTA:
        return True
    if not _RUNNING.get("said"):
        _RUNNING["said"] = "yes"
        log.warning("Delta %s is not a release this product's log reading and file commit "
                    "were tested with (%s): every table is read and written through Delta's "
                    "public API this run (same results, slower)", version,
                    ", ".join(TESTED_DELTA))
    return False


def _log_file(location: str, version: int, suffix: str) -> str:
    return join_path(log_folder(location), f"{version:020d}.{suffix}")


def read_commit(spark: SparkSession, location: str, version: int) -> list[dict] | None:
    """The actions of one commit of the Delta table at ``location`` (None: not there, or
    a Delta release not tested)."""
    if not private_routes(spark):
        return None
    text = read_text(spark, _log_file(location, version, "json"))
    if text is None:
        return None
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def checksum(spark: SparkSession, location: str, version: int | None = None
             ) -> tuple[int, dict] | None:
    """The version (default: the latest) of the Delta table at ``location`` and its
    checksum file (``.crc``, which Delta 4 writes after each commit); None when there is
    no table or no such file (a writer killed right after its commit), or with a Delta
    release not tested."""
    if not private_routes(spark):
        return None
    if version is None:
        version = latest_version(spark, location)
        if version is None:
            return None
    try:
        found = json.loads(read_text(spark, _log_file(location, version, "crc")) or "null")
    except ValueError:
        return None
    return (version, found) if isinstance(found, dict) else None


def table_state(spark: SparkSession, location: str, version: int | None = None
                ) -> TableState | None:
    """The table at ``version`` (default: its latest) as its checksum file describes it;
    None when that file is missing or says nothing of the table's metadata."""
    found = checksum(spark, location, version)
    return _state(*found) if found else None


def _state(version: int, crc: dict) -> TableState | None:
    """:class:`TableState` from a version's parsed checksum file (None: no metadata)."""
    try:
        metadata = crc.get("metadata") or {}
        return TableState(version, metadata["id"],
                          T.StructType.fromJson(json.loads(metadata["schemaString"])),
                          dict(metadata.get("configuration") or {}),
                          tuple(metadata.get("partitionColumns") or ()))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def data_files(spark: SparkSession, location: str) -> tuple[TableState, list[str]] | None:
    """The latest version of the Delta table at ``location`` and the paths of all its data
    files, from that version's checksum file alone; None when that file does not list
    them (Delta lists them there only for tables of few files:
    ``spark.databricks.delta.allFilesInCrc.thresholdNumFiles``) or when reading the files
    as plain Parquet would not give the table's rows (deletion vectors, column mapping,
    partitions)."""
    found = checksum(spark, location)
    state = _state(*found) if found else None
    if state is None:
        return None
    crc = found[1]
    files = crc.get("allFiles")
    protocol = crc.get("protocol") or {}
    if (not isinstance(files, list) or crc.get("numFiles") != len(files)
            or protocol.get("minReaderVersion") != 1 or state.partition_columns
            or not all(isinstance(add, dict) and _plain_file(add) for add in files)):
        return None
    return state, [join_path(location, unquote(add["path"])) for add in files]


def _plain_file(add: dict) -> bool:
    """Whether an ``add`` action names a data file, relative to the table, whose rows are
    all of the file's rows (no deletion vector, no partition values)."""
    path = add.get("path", "")
    return bool(path) and not (add.get("deletionVector") or add.get("partitionValues")
                               or ":" in path or path.startswith("/"))



def commit_info(actions: list[dict]) -> dict:
    return next((a["commitInfo"] for a in actions if "commitInfo" in a), {})


def is_append(info: dict) -> bool:
    return info.get("operation") == "WRITE" and (
        info.get("operationParameters") or {}).get("mode") == "Append"



def appended_files(spark: SparkSession, location: str, since: int, until: int
                   ) -> list[dict] | None:
    """The ``add`` actions of the commits ``since + 1 .. until`` of the table at
    ``location`` when every one of them is a plain append of new data files (no removed
    file, no deletion vector, no change of schema or protocol); None otherwise, or when a
    commit is missing (log clean-up) or there are more than :data:`MAX_LOG_COMMITS`."""
    if not 0 <= until - since <= MAX_LOG_COMMITS:
        return None
    added = []
    for version in range(since + 1, until + 1):
        actions = read_commit(spark, location, version)
        if actions is None or not is_append(commit_info(actions)):
            return None
        for action in actions:
            kind, body = next(iter(action.items()))
            if kind == "commitInfo":
                continue
            if kind != "add" or not body.get("dataChange", True) or not _plain_file(body):
                return None
            added.append(body)
    return added



def records(add: dict) -> int | None:
    try:
        return int(json.loads(add["stats"])["numRecords"])
    except (KeyError, ValueError, TypeError):
        return None


class Transaction:
    """One Delta transaction on the table at ``location``, opened before the files it
    will add are written (Delta's ``OptimisticTransaction``: a change of the table's
    metadata meanwhile fails its commit). Private classes: used because adding files
    that Python workers wrote, in one commit, is what lets gold skip Spark's writer (7-8
    s of JVM CPU in a 20,000-image run, docs/design.md); see :func:`open_transaction`."""

    def __init__(self, spark: SparkSession, location: str, transaction) -> None:  # noqa: ANN001
        self._spark, self.location, self._txn = spark, location, transaction
        jvm = spark.sparkContext._jvm
        metadata = transaction.metadata()
        self.schema = T.StructType.fromJson(json.loads(metadata.schemaString()))
        self.configuration = dict(jvm.scala.jdk.javaapi.CollectionConverters.asJava(
            metadata.configuration()))
        self.partitioned = not metadata.partitionColumns().isEmpty()

    def add(self, files: Sequence, user_metadata: str) -> int:
        """Commit data files already in the table's folder as an append: each of
        ``files`` has ``file`` (its name), ``size``, ``modification_time`` (ms) and
        ``rows``. Returns the new version."""
        jvm = self._spark.sparkContext._jvm
        none = jvm.scala.Option.empty()
        no_values = getattr(getattr(jvm.scala.collection.immutable, "Map$"), "MODULE$").empty()
        actions = jvm.java.util.ArrayList()
        for f in files:
            actions.add(jvm.org.apache.spark.sql.delta.actions.AddFile(
                f.file, no_values, f.size, f.modification_time, True,
                json.dumps({"numRecords": f.rows}), None, None, none, none, none))
        append = getattr(jvm.org.apache.spark.sql.delta, "DeltaOperations$Write")(
            jvm.org.apache.spark.sql.SaveMode.Append, none, none, jvm.scala.Some(user_metadata))
        seq = jvm.scala.jdk.javaapi.CollectionConverters.asScala(actions).toList()
        return int(self._txn.commit(seq, append))


def open_transaction(spark: SparkSession, location: str) -> Transaction | None:
    """A :class:`Transaction` on the Delta table at ``location``; None with a Delta
    release not tested (:func:`private_routes`): the caller lets Spark write."""
    if not private_routes(spark):
        return None
    jvm = spark.sparkContext._jvm
    delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, location)
    return Transaction(spark, location, delta_log.startTransaction())
