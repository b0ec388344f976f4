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

Every table is a :class:`common.lake.Table`: the reads, merges and appends here go
through it. The log path reads Delta's commit and checksum files through it (and
:mod:`common.delta_log`, the one module that knows them); with a Delta release that
module was not tested with they answer None, and every run compares the keys.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from common.config import memory_bytes
from common.delta_log import commit_info, is_append, records
from common.lake import Table

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
    ``stale``: per target (by its name), how many of its rows have a key that is no
    longer upstream (to delete, :func:`delete_stale`).
    """

    rows: DataFrame
    pending: int
    stale: dict[str, int]
    targets: tuple[Table, ...]
    diff: DataFrame | None  # the keys that differ: path, content_hash, run_id, sides
    # How they were found: "keys" (:func:`changes`) or "log" (:func:`changes_from_log`).
    via: str = "keys"
    # Log path only: the bytes of the upstream files read, and upstream's table properties.
    bytes: int | None = None
    properties: dict = field(default_factory=dict)


def changes(spark: SparkSession, upstream: DataFrame, targets: Sequence[Table]) -> Changes:
    """Compare the keys of ``upstream`` with those of the tables ``targets``.

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
    for i, target in enumerate(targets):
        keyed.append(target.read().select(
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
    stale = dict.fromkeys((t.name for t in targets), 0)
    for r in counts:
        if r.side != _UPSTREAM:
            stale[targets[r.side].name] += r.rows
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


def delete_stale(todo: Changes) -> int:
    """Delete the stale rows of every target of ``todo`` (one merge per target that has
    any; nothing is committed where there are none). Returns how many were deleted."""
    for i, target in enumerate(todo.targets):
        if todo.stale[target.name]:
            stale = todo.diff.where(F.array_contains("sides", i)).select(*KEYS)
            target.merge(stale, _merge_key()).whenMatchedDelete().execute()
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


def _merge_key() -> Column:
    return (F.col("t.path") == F.col("s.path")) & F.col("t.content_hash").eqNullSafe(
        F.col("s.content_hash")
    )


# --- The log path ----------------------------------------------------------------------

# Characters that Spark's file reader would expand as a glob in a file's path.
_GLOB = re.compile(r"[*?\[\]{}\\]")

def sync_marker(run_id: str, upstream: Table, upstream_version: int,
                also: Sequence[Table] = (), **facts: str) -> str:
    """The ``userMetadata`` of the append that ends a run (:meth:`Table.append`).

    Besides the run id it records that the run's targets now agree with ``upstream`` as
    of ``upstream_version`` (its table id and version), the table id and version of
    every other target in ``also`` (written before this append), and ``facts`` (such as
    the model). Only the plain run id when a checksum file is missing: the next run then
    compares the keys.
    """
    source = upstream.state(upstream_version)
    if source is None:
        return run_id
    tables = {}
    for other in also:
        state = other.state()
        if state is None:
            return run_id
        tables[other.name] = {"id": state.id, "version": state.version}
    return json.dumps({"run_id": run_id, "upstream": {"id": source.id,
                                                      "version": upstream_version},
                       "tables": tables, **facts}, sort_keys=True)


def last_marker(target: Table) -> dict | None:
    """The sync marker of the latest commit of ``target``, if that commit is an append
    that carries one (None otherwise)."""
    version = target.version()
    actions = target.commit(version) if version is not None else None
    info = commit_info(actions or [])
    text = info.get("userMetadata") or ""
    if not is_append(info) or not text.startswith("{"):
        return None
    try:
        marker = json.loads(text)
        int(marker["upstream"]["version"]), str(marker["upstream"]["id"])
        dict(marker["tables"])
    except (ValueError, KeyError, TypeError):
        return None
    return marker


def changes_from_log(upstream: Table, upstream_version: int, target: Table,
                     also: Sequence[Table] = (), **facts: str) -> Changes | None:
    """What :func:`changes` would find, from the logs alone, for a run that follows a
    completed one (see the module's docstring); None when that cannot be shown, and the
    caller then compares the keys.

    ``target`` is the table whose appends carry the marker (written last by a run),
    ``also`` the other targets and ``facts`` what the marker must
    also say (such as the model) for the targets to count as up to date.
    """
    marker = last_marker(target)
    if marker is None or any(marker.get(k) != v for k, v in facts.items()):
        return None
    for other in also:
        state = other.state()
        if state is None or marker["tables"].get(other.name) != {"id": state.id,
                                                                 "version": state.version}:
            return None
    since = int(marker["upstream"]["version"])
    source = upstream.state(upstream_version)
    if (source is None or source.id != marker["upstream"]["id"] or source.partition_columns
            or source.configuration.get("delta.columnMapping.mode", "none") != "none"
            or _GLOB.search(upstream.location)):
        return None
    added = upstream.appended_since(since, upstream_version)
    if added is None:
        return None
    rows = upstream.read_files(added, source)
    counts = [records(a) for a in added]
    pending = sum(counts) if None not in counts else rows.count()
    targets = (target, *also)
    return Changes(rows, pending, dict.fromkeys((t.name for t in targets), 0), targets, None,
                   via="log",
                   bytes=sum(int(a.get("size") or 0) for a in added),
                   properties=source.configuration)


