"""The Parquet export of gold: versioned folders and one atomically switched pointer.

Layout, for the export path ``E`` (default ``<lakehouse>/exports/image_features``)::

    E.versions/v00000012-20261206T193501123456Z/part-*.parquet   one folder per export
    E.versions/v00000012-.../_PUBLISHED                           when it became current
    E.versions/_LATEST                                            the current folder's name
    E -> E.versions/v00000012-...                                 (local disks) a symlink

A version folder is written completely before anything points at it and is never
changed afterwards. The switch is one atomic step: on a local disk a new symlink renamed
over ``E`` (``rename(2)``), on an object store one PUT of ``_LATEST``. A reader that
resolves the pointer once — ``Path(E).resolve()`` locally, ``_LATEST`` on S3 — reads one
whole version, never a mix, while gold writes the next. Folders stop being current when a
newer one is published; they are deleted ``gold.export_keep_minutes`` after that (so a
reader that resolved one keeps its files), the newest former one included.

When gold only gained rows since the current export (every commit since then appended),
a local export's new folder hard-links the previous folder's files and adds one file of
the new rows (named after gold's version), so the cost follows the change; otherwise,
and always on object stores, the folder is written whole from gold at that version.

A kill at any moment leaves the previous export current; the next run writes the folder
again. An export of an older release (a plain folder at ``E`` with ``_gold_version``) is
moved into ``E.versions/`` the first time a version is published.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pyspark.sql import SparkSession

from common.config import Config
from common.jobs import fault_point
from common.lake import Table
from common.storage import hadoop_fs, join_path, local_path, read_text, storage_of, write_text
from gold.transform import export_columns

log = logging.getLogger("gold")

LATEST = "_LATEST"
PUBLISHED = "_PUBLISHED"
LEGACY_MARKER = "_gold_version"


@dataclass(frozen=True)
class Export:
    """Where one export lives: ``path`` (what readers open) and its versions folder."""

    path: str

    @property
    def versions(self) -> str:
        return self.path.rstrip("/") + ".versions"

    @property
    def local(self) -> bool:
        return storage_of(self.path).direct  # a symlink names the current version

    def folder(self, name: str) -> str:
        return join_path(self.versions, name)


def gold_version_of(name: str | None) -> int | None:
    """``v00000012-2026...`` -> 12; None for anything else."""
    if not name or not name.startswith("v") or "-" not in name:
        return None
    number = name[1:].split("-", 1)[0]
    return int(number) if number.isdigit() else None


def current(spark: SparkSession, export: Export) -> str | None:
    """The name of the version folder readers see now, None before the first export."""
    if export.local:
        link = local_path(export.path)
        if link.is_symlink():
            return Path(os.readlink(link)).name
        return None
    text = read_text(spark, export.folder(LATEST))
    return text.strip() if text and text.strip() else None


def export_if_stale(spark: SparkSession, config: Config, gold: Table) -> str:
    """Bring the export up to gold's current version; return the folder readers see."""
    export = Export(config.export_path)
    version = gold.version()
    name = current(spark, export)
    if gold_version_of(name) != version:
        name = _publish_new(spark, export, version, name, gold)
    elif export.local and (read_text(spark, export.folder(LATEST)) or "").strip() != name:
        write_text(spark, export.folder(LATEST), name)  # a kill between the two steps
    _clean(spark, export, name, config.gold.export_keep_minutes)
    return export.folder(name)


def _publish_new(spark: SparkSession, export: Export, version: int, previous: str | None,
                 gold: Table) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    name = f"v{version:08d}-{stamp}"
    target = export.folder(name)
    since = gold_version_of(previous)
    added = gold.appended_since(since, version) if (
        export.local and since is not None and since < version) else None
    state = gold.state(version) if added else None
    if added and state is not None:
        rows = gold.read_files(added, state)
        export_columns(rows).coalesce(1).write.mode("overwrite").parquet(target)
        folder = local_path(target)
        for part in folder.glob("part-*.parquet"):
            part.rename(folder / f"part-v{version:08d}-{part.name[5:10]}.parquet")
        old = local_path(export.folder(previous))
        for part in old.glob("*.parquet"):
            os.link(part, folder / part.name)
        how = f"the previous files plus the rows of gold versions {since + 1}..{version}"
    else:
        export_columns(gold.read(version)).write.mode("overwrite").parquet(target)
        how = "rewritten whole"
    write_text(spark, join_path(target, PUBLISHED), datetime.now(timezone.utc).isoformat())
    fault_point("gold:export_before_switch")
    _switch(spark, export, name)
    log.info("export: gold version %d published at %s (%s)", version, export.path, how)
    return name


def _switch(spark: SparkSession, export: Export, name: str) -> None:
    """Point readers at ``name``: one atomic step (see the module docstring)."""
    if export.local:
        link = local_path(export.path)
        if link.exists() and not link.is_symlink():  # an older release's plain folder
            aside = local_path(export.folder(f"legacy-{time.time_ns()}"))
            link.rename(aside)
            os.utime(aside)  # it stops being current now: kept for the grace period
            log.info("export: moved the previous plain export folder to %s", aside)
        temporary = link.with_name(f".{link.name}.{os.getpid()}.switch")
        relative = os.path.relpath(local_path(export.folder(name)), link.parent)
        temporary.unlink(missing_ok=True)
        os.symlink(relative, temporary, target_is_directory=True)
        os.replace(temporary, link)
    else:
        _drop_legacy_objects(spark, export)
    write_text(spark, export.folder(LATEST), name)


def _drop_legacy_objects(spark: SparkSession, export: Export) -> None:
    """An older release's export on an object store: files straight under the path."""
    fs, marker = hadoop_fs(spark, join_path(export.path, LEGACY_MARKER))
    if fs.exists(marker):
        fs.delete(marker.getParent(), True)


def _clean(spark: SparkSession, export: Export, name: str, keep_minutes: int) -> None:
    """Delete the folders that stopped being current over ``keep_minutes`` ago: a
    published folder when the next one was published, a folder of a run killed before
    its switch (never published) when it was written."""
    fs, root = hadoop_fs(spark, export.versions)
    if not fs.exists(root):
        return
    folders = []
    for status in fs.listStatus(root):
        folder = status.getPath().getName()
        if status.isDirectory() and folder != name and not folder.startswith("_"):
            marker = hadoop_fs(spark, join_path(export.folder(folder), PUBLISHED))[1]
            published = (fs.getFileStatus(marker).getModificationTime()
                         if fs.exists(marker) else None)
            folders.append((folder, status, published))
    current_marker = hadoop_fs(spark, join_path(export.folder(name), PUBLISHED))[1]
    switches = sorted([p for _, _, p in folders if p is not None]
                      + ([fs.getFileStatus(current_marker).getModificationTime()]
                         if fs.exists(current_marker) else []))
    limit_ms = (time.time() - keep_minutes * 60) * 1000
    for folder, status, published in folders:
        if published is None:  # never current
            stopped = status.getModificationTime()
        else:
            stopped = next((t for t in switches if t > published), None)
        if stopped is not None and stopped < limit_ms:
            fs.delete(status.getPath(), True)
            log.info("export: removed %s (not current for over %d min)", folder, keep_minutes)
