"""Spark's Python daemon (``pyspark.daemon``) without a fixed cost on every task.

Before each task a reused Python worker calls ``importlib.invalidate_caches()``
(``pyspark.worker_util.setup_spark_files``) so that files added with ``--py-files`` are
seen. On Python 3.11 that makes every zip importer re-read its archive's directory, in
pure Python: ``pyspark.zip`` (1,220 entries) once for every pyspark sub-package the
worker has imported (where pyspark is not installed; where it is, :mod:`common` takes
the zip off the path), and the spark-core jar (5,261 entries) that Spark also puts on
the workers' path. py-spy on a gold run: 0.2 s at the start of every task, 9% of a worker's
time with ~30 tasks on 5,100 images (the model itself took 80%).

An archive on the path does not change while a worker lives (a file added with
``--py-files`` is a new path, which gets a new importer), so here the zip importers keep
the directory they read; every other finder is invalidated as before. Spark starts this
module instead of ``pyspark.daemon`` because of ``spark.python.daemon.module``
(:func:`common.spark.spark_settings`); it forks the workers, which inherit the change.
"""

from __future__ import annotations

import zipimport


def _keep_directory(self: zipimport.zipimporter) -> None:  # noqa: ARG001
    """An archive's entries are read once, when it is first imported from."""


zipimport.zipimporter.invalidate_caches = _keep_directory  # type: ignore[method-assign]

from pyspark import daemon  # noqa: E402 - after the change: it imports the worker

if __name__ == "__main__":
    daemon.manager()
