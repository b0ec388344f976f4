"""Where a lakehouse, a source or an output lives: the local file system or an object store.

What differs between the two is decided here, once, from the URI (:func:`storage_of`),
not at each call site:

============================  ==========================  ===============================
                              :class:`LocalStorage`       :class:`ObjectStorage` (s3a://)
============================  ==========================  ===============================
``direct``: this process and  yes: they read and write    no: every file goes through
the workers open its files    its files by path            Spark / Hadoop's FileSystem
``lock``                      ``flock`` on a file under    none: Delta's optimistic
                              ``<lakehouse>/_locks``       concurrency rejects the loser
``list_names``                ``os.listdir``              Hadoop's listing (py4j)
``read_text``/``write_text``  Python; the write is a      Hadoop's FileSystem; the write
                              rename (atomic)             is one PUT (atomic)
``publish`` a local folder    copied                      each file PUT
``model_cache``               ``<lakehouse>/models``      None (each run converts)
``absolute``/``uri``          resolved, ``file:`` URI     as given
============================  ==========================  ===============================

A URI with a scheme (``s3a://``, ``hdfs://``) is an object store; a plain path or a
``file:`` URI is local. The Hadoop calls take the running session (``spark``); nothing
here starts one, and nothing here imports another module of this project.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def join_path(root: str, *parts: str) -> str:
    """Join path parts onto a local path or a URI (``s3a://bucket/x``) alike."""
    return "/".join([root.rstrip("/"), *parts])


def local_path(path: str) -> Path:
    """A local filesystem path from a plain path or a ``file:`` URI."""
    if path.startswith("file://"):
        return Path(path[len("file://") :])
    if path.startswith("file:"):
        return Path(path[len("file:") :])
    return Path(path)


def _has_scheme(path: str) -> bool:
    return "://" in path and not path.startswith("file:")


# --- Hadoop's FileSystem, for object stores (and anything else Spark can read) ---------

def hadoop_fs(spark: SparkSession, path: str):  # noqa: ANN201 - py4j objects
    """The Hadoop FileSystem and Path for ``path`` (local, s3a, hdfs alike)."""
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hpath


def path_exists(spark: SparkSession, path: str) -> bool:
    fs, hpath = hadoop_fs(spark, path)
    return bool(fs.exists(hpath))


def input_files(spark: SparkSession, frame: DataFrame) -> list[str]:
    """``frame.inputFiles()`` in one py4j call (PySpark's fetches 20,000 paths one by one,
    ~2 s). URIs never contain a raw newline, so it separates them safely."""
    joined = spark.sparkContext._jvm.org.apache.hadoop.util.StringUtils.join(
        "\n", frame._jdf.inputFiles()
    )
    return joined.split("\n") if joined else []


def write_bytes(spark: SparkSession, path: str, data: bytes) -> None:
    """Write a small file through Hadoop's FileSystem (local or s3a; overwrites)."""
    fs, hpath = hadoop_fs(spark, path)
    stream = fs.create(hpath, True)
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()


class LockBusy(RuntimeError):
    """Another process holds the lock; the message names it (``pid N``)."""


class Storage:
    """The operations whose implementation depends on where the files are."""

    direct: bool
    locks: bool  # whether :meth:`lock` excludes other processes
    name: str

    def absolute(self, path: str) -> str:
        raise NotImplementedError

    def uri(self, path: str) -> str:
        """``path`` as the URI Spark writes into tables (``file:/abs`` or ``s3a://...``)."""
        raise NotImplementedError

    def lock(self, folder: str, name: str, *, wait: bool = True
             ) -> contextlib.AbstractContextManager[None]:
        """Held while the block runs: one process at a time per ``name`` in ``folder``.
        With ``wait=False`` a lock another process holds raises :class:`LockBusy`."""
        raise NotImplementedError

    def list_names(self, spark: SparkSession, folder: str) -> list[str] | None:
        """The names in ``folder``, or None when it does not exist."""
        raise NotImplementedError

    def exists(self, spark: SparkSession, path: str) -> bool:
        raise NotImplementedError

    def read_text(self, spark: SparkSession, path: str) -> str | None:
        """A small text file, None if absent."""
        raise NotImplementedError

    def write_text(self, spark: SparkSession, path: str, text: str) -> None:
        """A small text file, replaced atomically."""
        raise NotImplementedError

    def publish(self, spark: SparkSession, folder: Path, target: str) -> None:
        """Copy the files of the local ``folder`` into ``target``."""
        raise NotImplementedError

    def model_cache(self, lakehouse: str) -> Path | None:
        """Where converted models are kept between runs, None where they are not."""
        raise NotImplementedError


class LocalStorage(Storage):
    direct = True
    locks = True
    name = "local file system"

    def absolute(self, path: str) -> str:
        return str(local_path(os.path.expanduser(path)).resolve()) if path else path

    def uri(self, path: str) -> str:
        return path if path.startswith("file:") else f"file:{path}"

    @contextlib.contextmanager
    def lock(self, folder: str, name: str, *, wait: bool = True) -> Iterator[None]:
        # flock is released by the kernel when the process dies, even by SIGKILL, so a
        # killed run never leaves a stale lock. The holder writes its pid in the file.
        lock_dir = local_path(folder)
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f"{name}.lock", "a+", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                handle.seek(0)
                raise LockBusy(handle.read().strip() or "unknown") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def list_names(self, spark: SparkSession, folder: str) -> list[str] | None:
        # Python itself: walking Hadoop's listing through py4j costs three calls per entry.
        try:
            return os.listdir(local_path(folder))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def exists(self, spark: SparkSession, path: str) -> bool:
        return local_path(path).exists()

    def read_text(self, spark: SparkSession, path: str) -> str | None:
        try:
            with open(local_path(path), encoding="utf-8") as file:
                return file.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write_text(self, spark: SparkSession, path: str, text: str) -> None:
        target = local_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, target)

    def publish(self, spark: SparkSession, folder: Path, target: str) -> None:
        destination = local_path(target)
        destination.mkdir(parents=True, exist_ok=True)
        for file in folder.iterdir():
            shutil.copy2(file, destination / file.name)

    def model_cache(self, lakehouse: str) -> Path | None:
        return local_path(join_path(lakehouse, "models"))


class ObjectStorage(Storage):
    direct = False
    locks = False
    name = "object store"

    def absolute(self, path: str) -> str:
        return path

    def uri(self, path: str) -> str:
        return path

    @contextlib.contextmanager
    def lock(self, folder: str, name: str, *, wait: bool = True) -> Iterator[None]:
        yield  # no lock: Delta's optimistic concurrency rejects the conflicting commit

    def list_names(self, spark: SparkSession, folder: str) -> list[str] | None:
        fs, hpath = hadoop_fs(spark, folder)
        if not fs.exists(hpath):
            return None
        return [status.getPath().getName() for status in fs.listStatus(hpath)]

    def exists(self, spark: SparkSession, path: str) -> bool:
        return path_exists(spark, path)

    def read_text(self, spark: SparkSession, path: str) -> str | None:
        # The whole file in one py4j call (a Delta commit of a large run is a few hundred
        # lines).
        fs, hpath = hadoop_fs(spark, path)
        if not fs.exists(hpath):
            return None
        stream = fs.open(hpath)
        try:
            data = spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
            return bytes(data).decode("utf-8")
        finally:
            stream.close()

    def write_text(self, spark: SparkSession, path: str, text: str) -> None:
        write_bytes(spark, path, text.encode("utf-8"))  # one PUT: whole or absent

    def publish(self, spark: SparkSession, folder: Path, target: str) -> None:
        # Through an output stream: S3A's copyFromLocalFile of a single file fails
        # ("Cannot get relative path") in hadoop-aws 3.4.1.
        for file in folder.iterdir():
            write_bytes(spark, join_path(target, file.name), file.read_bytes())

    def model_cache(self, lakehouse: str) -> Path | None:
        return None


LOCAL = LocalStorage()
OBJECT_STORE = ObjectStorage()


def storage_of(path: str) -> Storage:
    """The storage of a path or URI: an object store for ``s3a://``, ``hdfs://`` ...; the
    local file system for a plain path or a ``file:`` URI."""
    return OBJECT_STORE if _has_scheme(path) else LOCAL


def read_text(spark: SparkSession, path: str) -> str | None:
    """A small text file wherever it is, None if absent."""
    return storage_of(path).read_text(spark, path)


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """A small text file wherever it is, replaced atomically."""
    storage_of(path).write_text(spark, path, text)
