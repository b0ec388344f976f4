"""What the layers share: configuration, the SparkSession builder, tables, images, run log.

Importing this package first also makes the process import pyspark and py4j from their
installed packages rather than from Spark's zip copies of them
(:func:`prefer_installed_pyspark`): every spark-submit entry point imports ``common``
before pyspark, and Spark's Python daemon is ``common.pydaemon``.
"""

from __future__ import annotations

import os
import sys


def prefer_installed_pyspark(path: list[str]) -> list[str]:
    """Remove from ``path`` Spark's zips of pyspark and py4j when they are copies of the
    packages installed on it; return what was removed.

    spark-submit puts ``$SPARK_HOME/python/lib/pyspark.zip`` and py4j's source zip first
    on the path of the Python driver and of every Python worker. Python compiles a module
    imported from a zip on every import (zipimport keeps no bytecode cache), and pyspark
    is 1,081 modules: importing a job's modules took 0.83-0.91 s with the zips first and
    0.41-0.42 s from the installed packages, in each process. With pyspark installed by
    pip, ``$SPARK_HOME`` is the installed ``pyspark`` package itself, so its zips are
    copies of packages the interpreter already has, with their bytecode cached. Only
    such zips are removed: a zip of a Spark distribution (EMR, a downloaded Spark) is
    the only copy there and stays.
    """
    removed = []
    on_path = {os.path.realpath(p) for p in path if p}
    for entry in list(path):
        name = os.path.basename(entry)
        if name != "pyspark.zip" and not (name.startswith("py4j-") and name.endswith("-src.zip")):
            continue
        package = os.path.dirname(os.path.dirname(os.path.dirname(entry)))  # .../python/lib/
        site = os.path.dirname(package)
        installed = (os.path.basename(package) == "pyspark"
                     and os.path.isfile(os.path.join(package, "__init__.py"))
                     and os.path.realpath(site) in on_path)
        if name.startswith("py4j-"):  # the same py4j version must be installed beside it
            dist_info = name[: -len("-src.zip")] + ".dist-info"
            installed = installed and os.path.isdir(os.path.join(site, dist_info))
        if installed:
            path.remove(entry)
            removed.append(entry)
    return removed


prefer_installed_pyspark(sys.path)
