"""Exactly-once bookkeeping shared by silver, gold and PCA.

Each downstream table carries the ``(path, content_hash)`` of the upstream row it was
made from, so the tables themselves are the only progress record (no checkpoint files
that could disagree with them). A run

1. pins the upstream table at its current version,
2. compares its keys with the targets' in one pass (:func:`changes`),
3. deletes target rows whose key is no longer upstream (file deleted, changed in place,
   moved between silver.images and silver.rejects),
4. computes the upstream rows whose key is in no target yet, once, and appends them.

Killed anywhere, the next run sees exactly what was committed and does the rest: no
duplicates (step 4 skips keys already present) and no losses (nothing is marked done
except by the commit of the row itself).

The log path (:func:`changes_from_log`) is the same comparison made cheap for the usual
run, the one that follows a completed run of the same job while upstream only gained
files. The append that ends a run records, in its commit's ``userMetadata``, the
upstream table and version its targets now agree with (:func:`sync_marker`). When that
commit is still the target's latest (and the other targets are still at the versions
it names), and upstream's commits since that version are all plain appends, the
pending rows are exactly the rows of the files those commits added, and nothing is
stale: the run reads those files and a handful of commit files, and no table's file
list is rebuilt. In any other case (no marker, a merge or delete upstream or in a
target, a run killed between its commits, log clean-up, other weights...) the run
compares the keys as above.

This module is also the one place that knows Delta's log files (commits and checksum
files) and Delta's private classes (:class:`Transaction`, through py4j). Both are
used only with a Delta release they were tested with (:data:`TESTED_DELTA`, checked
against the session's JVM: :func:`private_routes`); with any other, every function here
that reads the log answers None and no transaction opens, so each caller takes its
public-API route (the key comparison, Spark's reader and writer), and the run log says
so once.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from urllib.parse import unquote

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.config import join_path, memory_bytes
from common.spark import latest_version
from common.storage import read_text

log = logging.getLogger("incremental")

KEYS = ("path", "content_hash")
# Which table a key row comes from in :func:`changes`: the upstream table, or the i-th
# target (i >= 0).
_UPSTREAM = -1


@dataclass(frozen=True)
class Changes:
    """What one run must do to bring its target tables up to date with their upstream.

    ``rows``: the upstream rows whose key is in no target (to process and append), read
    only from the upstream files that can hold them; ``pending``: how many they are;
    ``stale``: per target location, how many of its rows have a key that is no longer
    upstream (to delete, :func:`delete_stale`).
    """

    rows: DataFrame
    pending: int
    stale: dict[str, int]
    targets: tuple[str, ...]
    diff: DataFrame | None  # the keys that differ: path, content_hash, run_id, sides
    # How they were found: "keys" (:func:`changes`) or "log" (:func:`changes_from_log`).
    via: str = "keys"
    # Log path only: the bytes of the upstream files read, and upstream's table properties.
    bytes: int | None = None
    properties: dict = field(default_factory=dict)


def changes(spark: SparkSession, upstream: DataFrame, targets: Sequence[str]) -> Changes:
    """Compare the keys of ``upstream`` with those of the Delta tables at ``targets``.

    One pass over the key columns of every table: the keys are grouped, so a key found
    upstream and in no target is pending, and one found in a target but not upstream is
    stale there (a file deleted or changed in place, or moved between silver's two
    tables). ``content_hash`` is null for files bronze could not read; grouping treats
    nulls as equal, as the null-safe comparison of the merge does.

    The differing keys are checkpointed (not cached: the caller deletes from and appends
    to the targets they were read from) and counted in one collect. A plain anti-join
    would scan every upstream row with all its columns (the images of bronze and
    silver), so a run with 1% new rows would cost as much as the first one. Instead every
    upstream row carries the ``run_id`` of the run that wrote it, and each append writes
    files of one run only, so ``run_id IN (...)`` lets Delta skip every file (by its
    min/max statistics) that holds no pending row; the semi-join then keeps exactly the
    pending keys. They are broadcast to it when they fit (:func:`_fits_broadcast`), so
    the payload rows are never shuffled.
    """
    keyed = [upstream.select(*KEYS, "run_id", F.lit(_UPSTREAM).alias("side"))]
    for i, location in enumerate(targets):
        keyed.append(spark.read.format("delta").load(location).select(
            *KEYS, F.lit(None).cast("string").alias("run_id"), F.lit(i).alias("side")))
    grouped = reduce(DataFrame.unionByName, keyed).groupBy(*KEYS).agg(
        F.max("run_id").alias("run_id"), F.collect_set("side").alias("sides"))
    upstream_only = F.array_contains("sides", _UPSTREAM) & (F.size("sides") == 1)
    diff = grouped.where(upstream_only | ~F.array_contains("sides", _UPSTREAM)).localCheckpoint()
    # One row per (side, run): the pending keys per upstream run, the stale keys per target.
    side = F.explode(F.when(F.array_contains("sides", _UPSTREAM), F.array(F.lit(_UPSTREAM)))
                     .otherwise(F.col("sides")))
    counts = diff.select(side.alias("side"), "run_id", *KEYS).groupBy("side", "run_id").agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.octet_length("path") + F.coalesce(F.octet_length("content_hash"), F.lit(0)))
        .alias("chars"),
    ).collect()
    runs = [r for r in counts if r.side == _UPSTREAM]
    stale = dict.fromkeys(targets, 0)
    for r in counts:
        if r.side != _UPSTREAM:
            stale[targets[r.side]] += r.rows
    return Changes(_pending_rows(upstream, diff, runs), sum(r.rows for r in runs), stale,
                   tuple(targets), diff)


def _pending_rows(upstream: DataFrame, diff: DataFrame, runs: list) -> DataFrame:
    """The upstream rows of the pending keys of ``diff``, from the files of ``runs``."""
    if not runs:
        return upstream.limit(0)
    candidates = upstream.where(F.col("run_id").isin(sorted(r.run_id for r in runs)))
    # Renamed: ``diff`` comes from ``upstream`` and shares its column ids, so a condition
    # on the original names would compare each column with itself.
    wanted = diff.where(F.array_contains("sides", _UPSTREAM)).select(
        F.col("path").alias("_path"), F.col("content_hash").alias("_hash"))
    key_bytes = sum(r.chars + _KEY_ROW_BYTES * r.rows for r in runs)
    if _fits_broadcast(upstream.sparkSession, key_bytes):
        wanted = F.broadcast(wanted)
    return candidates.join(
        wanted,
        (candidates["path"] == wanted["_path"])
        & candidates["content_hash"].eqNullSafe(wanted["_hash"]),
        "left_semi",
    )


def delete_stale(spark: SparkSession, todo: Changes) -> int:
    """Delete the stale rows of every target of ``todo`` (one merge per target that has
    any; nothing is committed where there are none). Returns how many were deleted."""
    for i, location in enumerate(todo.targets):
        if todo.stale[location]:
            stale = todo.diff.where(F.array_contains("sides", i)).select(*KEYS)
            (
                DeltaTable.forPath(spark, location).alias("t")
                .merge(stale.alias("s"), _merge_key())
                .whenMatchedDelete()
                .execute()
            )
    return sum(todo.stale.values())


# Bytes of one key row in a broadcast hash relation besides its characters (row header,
# field offsets, padding, the map's entry): generous, so the estimate errs high.
_KEY_ROW_BYTES = 64


def _fits_broadcast(spark: SparkSession, key_bytes: int) -> bool:
    """Whether keys of ``key_bytes`` are under Spark's broadcast-join threshold.

    The planner decides from an estimate: a checkpoint of key columns inherits the size
    of the scan it came from, scaled by column widths, and that scan's files are mostly
    payload (images). On 20,400 distinct photos silver holds ~90 KB an image, the keys
    were estimated above the 64 MB threshold, and gold shuffled every image for the
    semi-join (2 GB through local disk) before featurizing them in 4 tasks: 171-173
    img/s, the JVM busy 79 s. With the measured keys broadcast: 219.6 img/s, JVM 52 s
    (the same silver, gold alone). The threshold the user configured still decides;
    it is applied to what the keys really weigh.
    """
    threshold = memory_bytes(spark.conf.get("spark.sql.autoBroadcastJoinThreshold", "10m"))
    return threshold is not None and 0 <= key_bytes <= threshold


def read_pinned(spark: SparkSession, location: str) -> tuple[DataFrame, int]:
    """The Delta table at ``location`` as of its latest version, and that version."""
    version = latest_version(spark, location)
    if version is None:
        raise FileNotFoundError(f"no Delta table at {location}")
    frame = spark.read.format("delta").option("versionAsOf", version).load(location)
    return frame, version


def _merge_key() -> Column:
    return (F.col("t.path") == F.col("s.path")) & F.col("t.content_hash").eqNullSafe(
        F.col("s.content_hash")
    )


def append_rows(location: str, rows: DataFrame, run_id: str | None = None, *,
                marker: str | None = None) -> None:
    """Append ``rows`` to the Delta table at ``location`` in one commit (its history's
    ``userMetadata`` records ``run_id``, the run id every appended row carries, or the
    run's ``marker`` (:func:`sync_marker`), which holds it)."""
    writer = rows.write.format("delta").mode("append")
    if marker or run_id:
        writer = writer.option("userMetadata", marker or run_id)
    writer.save(location)


# --- The log path ----------------------------------------------------------------------

# Upstream commits a log-path run reads at most; beyond that the keys are compared (one
# pass over every key costs less than hundreds of small reads from an object store).
MAX_LOG_COMMITS = 200
# Characters that Spark's file reader would expand as a glob in a file's path.
_GLOB = re.compile(r"[*?\[\]{}\\]")


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
    return join_path(location, "_delta_log", f"{version:020d}.{suffix}")


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


def sync_marker(spark: SparkSession, run_id: str, upstream: str, upstream_version: int,
                also: Mapping[str, str] | None = None, **facts: str) -> str:
    """The ``userMetadata`` of the append that ends a run (:func:`append_rows`).

    Besides the run id it records that the run's targets now agree with the table at
    ``upstream`` as of ``upstream_version`` (its table id and version), the table id and
    version of every other target in ``also`` (name -> location; written before this
    append), and ``facts`` (such as the model). Only the plain run id when a checksum
    file is missing: the next run then compares the keys.
    """
    source = table_state(spark, upstream, upstream_version)
    if source is None:
        return run_id
    tables = {}
    for name, location in (also or {}).items():
        state = table_state(spark, location)
        if state is None:
            return run_id
        tables[name] = {"id": state.id, "version": state.version}
    return json.dumps({"run_id": run_id, "upstream": {"id": source.id,
                                                      "version": upstream_version},
                       "tables": tables, **facts}, sort_keys=True)


def _commit_info(actions: list[dict]) -> dict:
    return next((a["commitInfo"] for a in actions if "commitInfo" in a), {})


def _is_append(info: dict) -> bool:
    return info.get("operation") == "WRITE" and (
        info.get("operationParameters") or {}).get("mode") == "Append"


def last_marker(spark: SparkSession, location: str) -> dict | None:
    """The sync marker of the latest commit of the table at ``location``, if that commit
    is an append that carries one (None otherwise)."""
    version = latest_version(spark, location)
    actions = read_commit(spark, location, version) if version is not None else None
    info = _commit_info(actions or [])
    text = info.get("userMetadata") or ""
    if not _is_append(info) or not text.startswith("{"):
        return None
    try:
        marker = json.loads(text)
        int(marker["upstream"]["version"]), str(marker["upstream"]["id"])
        dict(marker["tables"])
    except (ValueError, KeyError, TypeError):
        return None
    return marker


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
        if actions is None or not _is_append(_commit_info(actions)):
            return None
        for action in actions:
            kind, body = next(iter(action.items()))
            if kind == "commitInfo":
                continue
            if kind != "add" or not body.get("dataChange", True) or not _plain_file(body):
                return None
            added.append(body)
    return added


def read_added(spark: SparkSession, location: str, state: TableState,
               added: Sequence[dict]) -> DataFrame:
    """The rows of the data files ``added`` to the table at ``location`` (a plain Parquet
    read with the table's schema: appended files carry no deletion vector)."""
    if not added:
        return spark.createDataFrame([], state.schema)
    files = [join_path(location, unquote(a["path"])) for a in added]
    return spark.read.schema(state.schema).parquet(*files)


def changes_from_log(spark: SparkSession, upstream: str, upstream_version: int, target: str,
                     also: Mapping[str, str] | None = None, **facts: str) -> Changes | None:
    """What :func:`changes` would find, from the logs alone, for a run that follows a
    completed one (see the module's docstring); None when that cannot be shown, and the
    caller then compares the keys.

    ``target`` is the table whose appends carry the marker (written last by a run),
    ``also`` the other targets (name -> location) and ``facts`` what the marker must
    also say (such as the model) for the targets to count as up to date.
    """
    marker = last_marker(spark, target)
    if marker is None or any(marker.get(k) != v for k, v in facts.items()):
        return None
    for name, location in (also or {}).items():
        state = table_state(spark, location)
        if state is None or marker["tables"].get(name) != {"id": state.id,
                                                           "version": state.version}:
            return None
    since = int(marker["upstream"]["version"])
    source = table_state(spark, upstream, upstream_version)
    if (source is None or source.id != marker["upstream"]["id"] or source.partition_columns
            or source.configuration.get("delta.columnMapping.mode", "none") != "none"
            or _GLOB.search(upstream)):
        return None
    added = appended_files(spark, upstream, since, upstream_version)
    if added is None:
        return None
    rows = read_added(spark, upstream, source, added)
    counts = [_records(a) for a in added]
    pending = sum(counts) if None not in counts else rows.count()
    targets = (target, *(also or {}).values())
    return Changes(rows, pending, dict.fromkeys(targets, 0), targets, None, via="log",
                   bytes=sum(int(a.get("size") or 0) for a in added),
                   properties=source.configuration)


def _records(add: dict) -> int | None:
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
