"""Failed runs are recorded and leave the data as it was; foreign tables are refused."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bronze.job import main as bronze_main
from common.config import load_config
from common.jobs import explain_failure
from common.lake import Table
from common.tables import OPS_RUNS
from silver.job import main as silver_main
from tests.imagegen import gradient, jpeg_bytes, write
from tests.submit import finish, start


def runs(spark, lakehouse: Path) -> list:
    frame = spark.read.format("delta").load(str(lakehouse / "ops" / "runs"))
    return frame.orderBy("ended_at").collect()


def test_a_failed_run_is_logged_and_changes_nothing(
    spark, lakehouse: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    write(tmp_path / "src/Plum/p.jpg", jpeg_bytes(gradient()))
    assert bronze_main(["--source", str(tmp_path / "src"), "--lakehouse", str(lakehouse)]) == 0

    append = Table.append

    def broken_append(self: Table, rows, metadata=None) -> None:  # noqa: ANN001
        if self.spec is not OPS_RUNS:  # silver's tables; the run log still works
            raise RuntimeError("disk controller on fire")
        append(self, rows, metadata)

    monkeypatch.setattr(Table, "append", broken_append)
    assert silver_main(["--lakehouse", str(lakehouse)]) == 1
    assert "disk controller on fire" in capsys.readouterr().err
    last = runs(spark, lakehouse)[-1]
    assert (last.job, last.status) == ("silver", "failed")
    assert "disk controller on fire" in last.error and last.app_id.startswith("local-")
    assert spark.read.format("delta").load(str(lakehouse / "silver/images")).count() == 0

    monkeypatch.undo()
    assert silver_main(["--lakehouse", str(lakehouse)]) == 0  # the next run does the work
    last = runs(spark, lakehouse)[-1]
    assert (last.status, last.rows_out, last.error) == ("succeeded", 1, None)
    assert json.loads(last.details)["bronze_version"] >= 1


def test_files_that_are_not_our_table_are_refused(
    spark, lakehouse: Path, tmp_path: Path, capsys
) -> None:
    write(tmp_path / "src/Plum/p.jpg", jpeg_bytes(gradient()))
    foreign = write(lakehouse / "bronze" / "images" / "precious.csv", b"a,b\n1,2\n")
    assert bronze_main(["--source", str(tmp_path / "src"), "--lakehouse", str(lakehouse)]) == 4
    assert "no Delta log" in capsys.readouterr().err
    assert foreign.read_bytes() == b"a,b\n1,2\n"
    assert sorted(p.name for p in foreign.parent.iterdir()) == ["precious.csv"]


def test_a_table_whose_creation_was_killed_is_created_again(
    spark, lakehouse: Path, tmp_path: Path
) -> None:
    # Delta makes _delta_log before it writes version 0: a kill in between leaves the
    # folder without a version (here with the temporary file of the unwritten commit).
    photo = write(tmp_path / "src/Plum/p.jpg", jpeg_bytes(gradient()))
    location = lakehouse / "bronze" / "images"
    write(location / "_delta_log" / ".00000000000000000000.json.5f0c.tmp", b'{"commitInfo"')
    assert bronze_main(["--source", str(tmp_path / "src"), "--lakehouse", str(lakehouse)]) == 0
    table = spark.read.format("delta").load(str(location))
    assert [(r.path, r.length) for r in table.collect()] == [
        (f"file:{photo}", photo.stat().st_size)]
    # A version-less log beside files that are not ours is still refused.
    foreign = lakehouse / "silver" / "images"
    write(foreign / "_delta_log" / ".00000000000000000000.json.77aa.tmp", b"")
    precious = write(foreign / "precious.parquet", b"PAR1")
    assert silver_main(["--lakehouse", str(lakehouse)]) == 4
    assert precious.read_bytes() == b"PAR1"


def test_a_delta_table_with_other_columns_is_refused(
    spark, lakehouse: Path, tmp_path: Path, capsys
) -> None:
    write(tmp_path / "src/Plum/p.jpg", jpeg_bytes(gradient()))
    location = str(lakehouse / "bronze" / "images")
    spark.createDataFrame([(1, "x")], "id int, name string").write.format("delta").save(location)
    assert bronze_main(["--source", str(tmp_path / "src"), "--lakehouse", str(lakehouse)]) == 4
    assert "not bronze.images" in capsys.readouterr().err
    assert spark.read.format("delta").load(location).collect()[0].asDict() == {"id": 1, "name": "x"}


@pytest.mark.parametrize(
    ("job", "error", "words"),
    [
        ("gold", RuntimeError("java.lang.OutOfMemoryError: Java heap space"),
         ["out of memory in the Spark JVM", "gold.arrow_batch_size", "spark.driver_memory"]),
        ("bronze", RuntimeError("java.lang.OutOfMemoryError: Java heap space"),
         ["out of memory in the Spark JVM", "bronze.max_file_bytes", "spark.driver_memory"]),
        ("silver", MemoryError(), ["out of memory in a Python worker", "silver.arrow_batch_size",
                                   "spark.executor.pyspark.memory"]),
        ("gold", RuntimeError("org.apache.spark.SparkException: Python worker exited "
                              "unexpectedly (crashed)"),
         ["Python worker died", "memory runs out", "gold.arrow_batch_size"]),
        ("silver", RuntimeError("py4j.protocol.Py4JNetworkError: Answer from Java side is "
                                "empty"),
         ["Spark JVM stopped", "OutOfMemoryError", "spark.driver_memory",
          "silver.arrow_batch_size"]),
        ("bronze", OSError(28, "No space left on device"), ["out of disk space", "spark.local.dir"]),
        ("gold", RuntimeError("io.delta.exceptions.ConcurrentAppendException: Files were added"),
         ["another process changed the same table", "Run the job again"]),
    ],
)
def test_failures_name_the_setting_to_change(
    job: str, error: BaseException, words: list[str]
) -> None:
    message = explain_failure(error, load_config("local"), job)
    for word in words:
        assert word in message, message


@pytest.mark.long
def test_a_real_out_of_memory_is_reported_as_such_and_changes_nothing(
    spark, tmp_path: Path
) -> None:
    """Bronze with the smallest heap Spark accepts and 10 files of 40 MB: the JVM runs out
    of heap. The run says so, names the settings, is logged as failed and writes nothing;
    the same run with the profile's memory then ingests every file."""
    lakehouse = tmp_path / "lakehouse"
    source = tmp_path / "src"
    contents = {}
    for i in range(10):  # random bytes: bronze reads any file by its name's ending
        contents[f"file:{source / f'Big/b{i}.png'}"] = data = os.urandom(40 * 1024**2)
        write(source / f"Big/b{i}.png", data)
    code, out = finish(start("bronze", lakehouse, "--source", str(source),
                             "--set", "spark.driver_memory=512m"))
    assert code == 1, out[-3000:]
    error = [line for line in out.splitlines() if line.startswith("error: ")]
    assert error and "bronze failed: out of memory in the Spark JVM" in error[-1], out[-3000:]
    assert "spark.driver_memory" in error[-1] and "bronze.max_file_bytes" in error[-1]
    # printed by the JVM itself (-XX:OnOutOfMemoryError), whichever thread ran out
    assert "error: the Spark driver JVM ran out of memory (Java heap, spark.driver_memory=512m)" \
        in out
    logged = runs(spark, lakehouse)
    assert [(r.job, r.status) for r in logged] == [("bronze", "failed")]
    assert "out of memory" in logged[0].error and logged[0].rows_out == 0
    images = str(lakehouse / "bronze" / "images")
    assert spark.read.format("delta").load(images).count() == 0

    code, out = finish(start("bronze", lakehouse, "--source", str(source)))
    assert code == 0, out[-3000:]
    ingested = spark.read.format("delta").load(images).select("path", "content_hash").collect()
    assert {r.path: r.content_hash for r in ingested} == {
        path: hashlib.sha256(data).hexdigest() for path, data in contents.items()}


@pytest.mark.slow
def test_a_full_disk_is_reported_as_such_and_changes_nothing(
    spark, tmp_path: Path, capsys
) -> None:
    """A real full disk: the lakehouse on a 4 MB tmpfs (mounting needs root, as in CI)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    lakehouse = tmp_path / "small disk"
    lakehouse.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(lakehouse)],
                   check=True)
    try:
        source = tmp_path / "src"
        write(source / "Plum/p.jpg", jpeg_bytes(gradient()))
        assert bronze_main(["--source", str(source), "--lakehouse", str(lakehouse)]) == 0
        before = {r.path for r in spark.read.format("delta").load(
            str(lakehouse / "bronze/images")).collect()}
        for i in range(6):  # incompressible: ~6 MB that cannot fit in what is left
            write(source / f"Noise/n{i}.png", os.urandom(1_000_000))
        capsys.readouterr()
        assert bronze_main(["--source", str(source), "--lakehouse", str(lakehouse)]) == 1
        err = capsys.readouterr().err
        assert "out of disk space" in err and str(lakehouse) in err, err[-2000:]
        after = {r.path for r in spark.read.format("delta").load(
            str(lakehouse / "bronze/images")).collect()}
        assert after == before == {f"file:{source / 'Plum/p.jpg'}"}
    finally:
        spark.catalog.clearCache()
        subprocess.run(["umount", "-l", str(lakehouse)], check=False)


@pytest.mark.long
def test_a_python_worker_out_of_memory_fails_the_run_and_loses_no_image(
    spark, tmp_path: Path
) -> None:
    """Silver with each Python worker capped at 700 MB (spark.executor.pyspark.memory)
    and an 8000x8000 PNG (192 MB decoded, under silver.max_pixels): the decoder runs out
    of memory. That is not the file's fault, so the image is not quarantined: the run
    fails, says what to change, writes nothing; the next run without the cap decodes it."""
    lakehouse = tmp_path / "lakehouse"
    source = tmp_path / "src"
    ramp = np.tile(np.linspace(0, 255, 8000, dtype=np.uint8), (8000, 1))
    huge = source / "Huge/h.png"
    huge.parent.mkdir(parents=True)
    Image.fromarray(np.stack([ramp] * 3, axis=-1)).save(huge)
    write(source / "Plum/p.jpg", jpeg_bytes(gradient()))
    assert finish(start("bronze", lakehouse, "--source", str(source)))[0] == 0

    code, out = finish(start("silver", lakehouse,
                             "--set", "spark.extra.spark.executor.pyspark.memory=700m"))
    assert code == 1, out[-3000:]
    error = [line for line in out.splitlines() if line.startswith("error: ")]
    assert error and "silver failed: out of memory in a Python worker" in error[-1], out[-3000:]
    assert "silver.arrow_batch_size" in error[-1] and "pyspark.memory" in error[-1]
    assert [(r.job, r.status) for r in runs(spark, lakehouse)] == [
        ("bronze", "succeeded"), ("silver", "failed")]
    for table in ("silver/images", "silver/rejects"):
        assert spark.read.format("delta").load(str(lakehouse / table)).count() == 0

    assert finish(start("silver", lakehouse))[0] == 0
    images = spark.read.format("delta").load(str(lakehouse / "silver/images"))
    decoded = {r.path: (r.label, r.width, r.height) for r in images.collect()}
    assert decoded == {f"file:{huge}": ("Huge", 8000, 8000),
                       f"file:{source / 'Plum/p.jpg'}": ("Plum", *gradient().size)}
