"""The driver JVM's class-data archive (common/jvm.py) and the Python daemon
(common/pydaemon.py): both only speed things up, so the tests check that they are
really in use and that they change nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

import common.jvm as jvm
from common.config import load_config
from common.spark import spark_settings, submit_args

ROOT = Path(__file__).resolve().parents[2]


def _java_options(settings: dict[str, str]) -> str:
    return settings["spark.driver.extraJavaOptions"]


def test_make_setup_built_an_archive_that_this_jvm_accepts(tmp_path: Path) -> None:
    # make test runs make setup first, which builds the archive of this machine's JDK and
    # jars. -Xshare:on makes the JVM fail instead of quietly starting without it.
    option = jvm.archive_option()
    assert option is not None, (
        f"no class archive for fingerprint {jvm.fingerprint()} in {jvm.ARCHIVE_DIR}: "
        "`make setup` builds it (see any .failed file there for why it could not)"
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "spark-submit"), "--version"],
        env={**os.environ, "SPARK_SUBMIT_OPTS": f"{option} -Xshare:on -Xlog:cds=info"},
        capture_output=True, text=True, cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-2000:]
    assert "Unable to use shared archive" not in output
    assert f"Opened archive {option.split('=', 1)[1]}" in output
    assert "version 4.0.1" in output


def test_jobs_use_the_archive_of_the_current_fingerprint_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jvm, "ARCHIVE_DIR", tmp_path)
    config = load_config("local", {"lakehouse": str(tmp_path / "lh")})
    assert "SharedArchiveFile" not in _java_options(spark_settings(config))

    current = tmp_path / f"spark-{jvm.fingerprint()}.jsa"
    current.write_bytes(b"archive")
    options = _java_options(spark_settings(config))
    assert f"-XX:SharedArchiveFile={current}" in options.split()
    submit = submit_args(config)
    assert f"spark.driver.extraJavaOptions={options}" in submit
    # The profile's own options stay, in order.
    assert options.split()[1:3] == ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
    assert "SharedArchiveFile" not in _java_options(spark_settings(config, use_archive=False))

    # Another JDK or another Spark jar: another fingerprint, the old archive is not used.
    monkeypatch.setattr(jvm, "fingerprint", lambda: "0123456789abcdef")
    assert "SharedArchiveFile" not in _java_options(spark_settings(config))

    # A cluster's driver does not run on this machine.
    monkeypatch.undo()
    monkeypatch.setattr(jvm, "ARCHIVE_DIR", tmp_path)
    cluster = load_config("local", {"lakehouse": str(tmp_path / "lh"),
                                    "spark.master": "spark://10.0.0.1:7077"})
    assert "SharedArchiveFile" not in _java_options(spark_settings(cluster))


def test_fingerprint_follows_the_jars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jar = tmp_path / "jars" / "delta-x.jar"
    jar.parent.mkdir()
    jar.write_bytes(b"one")
    monkeypatch.setattr(jvm, "IVY_DIR", tmp_path)
    before = jvm.fingerprint()
    assert before is not None and len(before) == 16
    assert jvm.fingerprint() == before
    jar.write_bytes(b"other")
    os.utime(jar, ns=(1, 1))
    assert jvm.fingerprint() != before


def test_python_workers_run_our_daemon_and_still_see_new_py_files(
    spark, tmp_path: Path
) -> None:
    def probe(module: str) -> str:
        import importlib
        import sys as worker_sys
        import zipimport

        main = worker_sys.modules["__main__"].__spec__.name
        patched = zipimport.zipimporter.invalidate_caches.__qualname__
        return f"{main}|{patched}|{importlib.import_module(module).VALUE}"

    frame = spark.range(1).repartition(1)
    sc = spark.sparkContext
    for name, value in (("probe_first", "one"), ("probe_second", "two")):
        archive = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(archive, "w") as handle:
            handle.writestr(f"{name}.py", f"VALUE = {value!r}\n")
        sc.addPyFile(str(archive))
        # A UDF made after addPyFile ships it. Every worker has read pyspark.zip's
        # directory before its first task (the daemon imports pyspark.worker before it
        # forks), and with the change it never reads it again: a new archive must be
        # found all the same, also by a worker that already ran a task.
        udf = F.udf(probe, T.StringType())
        assert frame.select(udf(F.lit(name))).first()[0] == (
            f"common.pydaemon|_keep_directory|{value}"
        )
