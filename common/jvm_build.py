"""Builds the driver JVM's class-data archive that :mod:`common.jvm` finds for each job.

``python -m common.jvm_build`` (``make setup`` runs it; ``make jvm-archive`` adds
``--force``) runs the pipeline once on a few generated images with random weights, in a
JVM that writes the archive when it exits, to ``.jvm/spark-<fingerprint>.jsa``. It is
built once per fingerprint; a failure is remembered in a ``.failed`` file next to it and
costs start-up time, never a job. This module starts jobs, so it imports
:mod:`common.spark`; :mod:`common.jvm`, which :mod:`common.spark` imports, does not.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common.config import load_config
from common.demo import generate
from common.jvm import ARCHIVE_DIR, PROJECT_ROOT, archive_path
from common.spark import spark_settings, submit_args


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild it, even after a failure")
    return build(force=parser.parse_args(argv).force)


if __name__ == "__main__":
    sys.exit(main())
