"""The Spark driver JVM's class-data archive: a job's classes, loaded once at set-up.

A job's JVM loads some 20,000 classes from Spark's ~250 jars and Delta's before its first
query; looking each one up in the jars, parsing and verifying it is most of a small
run's fixed cost. The JDK can save the classes a run loaded into an archive (AppCDS:
``-XX:ArchiveClassesAtExit``) and map it at the next start (``-XX:SharedArchiveFile``).
Measured on a no-op gold run (the job reads every table and finds nothing to do): 17.7 to
19.5 s without the archive, 12.3 to 12.5 s with it.

``python -m common.jvm --build`` (``make setup`` runs it) runs the pipeline once on a
few generated images with random weights, in a JVM that writes the archive when it
exits, to ``.jvm/spark-<fingerprint>.jsa``. The fingerprint names what the JVM checks
before it trusts an archive: the JDK, Spark's jars and the Delta jars. Jobs use the
archive only when the one of the current fingerprint exists (:func:`archive_option`): a
missing or stale archive costs start-up time, never a failure (the JVM would ignore a
stale one anyway, with a warning).

No pyspark import at module level: ``make setup`` checks the archive on every ``make``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
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


def build(force: bool = False) -> int:
    """Build the archive of the current fingerprint (once; a failure is remembered)."""
    target = archive_path()
    if target is None:
        print("warning: no java found; the JVM class archive is not built", file=sys.stderr)
        return 0
    failed = target.with_suffix(".failed")
    if not force and (target.is_file() or failed.is_file()):
        return 0
    ARCHIVE_DIR.mkdir(exist_ok=True)
    for old in ARCHIVE_DIR.glob("spark-*"):  # archives of an earlier JDK or Spark
        old.unlink()
    print("building the JVM class archive (once, about 2 minutes): "
          "the pipeline on a few generated images ...", flush=True)
    started = time.monotonic()
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    with tempfile.TemporaryDirectory(prefix="fruits-jvm-") as tmp:
        result = _warm_up_run(Path(tmp), partial)
    if result.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        failed.write_text(result.stdout[-4000:] + result.stderr[-4000:])
        print(f"warning: the JVM class archive could not be built (exit code "
              f"{result.returncode}; output in {failed}). Jobs run the same, each JVM "
              "start about 6 s slower. `make jvm-archive` tries again.", file=sys.stderr)
        return 0
    partial.replace(target)
    print(f"JVM class archive {target} ({target.stat().st_size / 1e6:.0f} MB) built in "
          f"{time.monotonic() - started:.0f}s", flush=True)
    return 0


def _warm_up_run(tmp: Path, archive: Path) -> subprocess.CompletedProcess:
    """bronze, silver, gold (random weights) and PCA on the demo images, in one JVM that
    archives the classes it loaded when it exits."""
    from common.config import load_config
    from common.demo import generate
    from common.spark import spark_settings, submit_args

    source = tmp / "images"
    generate(source)
    config = load_config("local", {"lakehouse": str(tmp / "lakehouse")})
    java_options = spark_settings(config, use_archive=False)["spark.driver.extraJavaOptions"]
    python = sys.executable
    argv = [
        str(Path(python).parent / "spark-submit"), *submit_args(config, use_archive=False),
        "--conf", f"spark.driver.extraJavaOptions={java_options} "
                  f"-XX:ArchiveClassesAtExit={archive}",
        str(PROJECT_ROOT / "common" / "pipeline.py"), "--env", "local",
        "--lakehouse", str(tmp / "lakehouse"), "--source", str(source), "--weights", "random",
    ]
    env = {**os.environ, "PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python,
           "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")}
    return subprocess.run(argv, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] + " Without options: print the archive in use.")
    parser.add_argument("--build", action="store_true",
                        help="build the archive if this machine's is missing")
    parser.add_argument("--force", action="store_true", help="rebuild it, even after a failure")
    args = parser.parse_args(argv)
    if args.build or args.force:
        return build(force=args.force)
    option = archive_option()
    print(option.split("=", 1)[1] if option else "none (python -m common.jvm --build)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
