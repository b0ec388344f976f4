"""The Spark driver JVM's class-data archive: a job's classes, loaded once at set-up.

A job's JVM loads some 20,000 classes from Spark's ~250 jars and Delta's before its first
query; looking each one up in the jars, parsing and verifying it is most of a small
run's fixed cost. The JDK can save the classes a run loaded into an archive (AppCDS:
``-XX:ArchiveClassesAtExit``) and map it at the next start (``-XX:SharedArchiveFile``).
Measured on a no-op gold run (the job reads every table and finds nothing to do): 17.7 to
19.5 s without the archive, 12.3 to 12.5 s with it.

:mod:`common.jvm_build` (``make setup`` runs it) runs the pipeline once on a few
generated images with random weights, in a JVM that writes the archive when it exits, to
``.jvm/spark-<fingerprint>.jsa``. The fingerprint names what the JVM checks
before it trusts an archive: the JDK, Spark's jars and the Delta jars. Jobs use the
archive only when the one of the current fingerprint exists (:func:`archive_option`): a
missing or stale archive costs start-up time, never a failure (the JVM would ignore a
stale one anyway, with a warning).

This module imports nothing of the project: :mod:`common.spark` imports it to find the
archive and the Delta jars.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IVY_DIR = PROJECT_ROOT / ".ivy"
ARCHIVE_DIR = PROJECT_ROOT / ".jvm"


def delta_jars() -> list[str]:
    """Jars fetched by ``python -m common.spark --fetch-jars`` (empty when not fetched)."""
    jar_dir = IVY_DIR / "jars"
    return sorted(str(p) for p in jar_dir.glob("*.jar")) if jar_dir.is_dir() else []


def _java() -> Path | None:
    """The java that spark-submit starts: $JAVA_HOME/bin/java, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    return Path(found).resolve() if found and Path(found).exists() else None


def _spark_jars() -> list[Path]:
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted((Path(spec.submodule_search_locations[0]) / "jars").glob("*.jar"))


def fingerprint() -> str | None:
    """A short hash of the JDK's files and every jar on the driver's class path."""
    java = _java()
    if java is None:
        return None
    jdk = java.parent.parent
    files = [java, *sorted(jdk.glob("lib/server/*")), *_spark_jars(),
             *map(Path, delta_jars())]
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def archive_path() -> Path | None:
    key = fingerprint()
    return ARCHIVE_DIR / f"spark-{key}.jsa" if key else None


def archive_option() -> str | None:
    """``-XX:SharedArchiveFile=...`` when this machine's archive is built, else None."""
    path = archive_path()
    return f"-XX:SharedArchiveFile={path}" if path is not None and path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0] + " Prints the archive in use "
                            "(python -m common.jvm_build builds it).").parse_args(argv)
    option = archive_option()
    print(option.split("=", 1)[1] if option else "none (python -m common.jvm_build)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
