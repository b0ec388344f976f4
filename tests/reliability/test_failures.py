"""Failed runs are recorded and leave the data as it was; foreign tables are refused."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import silver.job
from bronze.job import main as bronze_main
from common.config import load_config
from common.jobs import explain_failure
from silver.job import main as silver_main
from tests.imagegen import gradient, jpeg_bytes, write


def runs(spark, lakehouse: Path) -> list:
    frame = spark.read.format("delta").load(str(lakehouse / "ops" / "runs"))
    return frame.orderBy("ended_at").collect()


def test_a_failed_run_is_logged_and_changes_nothing(
    spark, lakehouse: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    write(tmp_path / "src/Plum/p.jpg", jpeg_bytes(gradient()))
    assert bronze_main(["--source", str(tmp_path / "src"), "--lakehouse", str(lakehouse)]) == 0

    def broken_append(location: str, rows, run_id=None) -> None:  # noqa: ANN001
        raise RuntimeError("disk controller on fire")

    monkeypatch.setattr(silver.job, "append_rows", broken_append)
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
    ("error", "words"),
    [
        (RuntimeError("java.lang.OutOfMemoryError: Java heap space"),
         ["out of memory", "gold.arrow_batch_size", "spark.driver_memory"]),
        (MemoryError(), ["out of memory", "silver.arrow_batch_size"]),
        (OSError(28, "No space left on device"), ["out of disk space", "spark.local.dir"]),
        (RuntimeError("io.delta.exceptions.ConcurrentAppendException: Files were added"),
         ["another process changed the same table", "Run the job again"]),
    ],
)
def test_failures_name_the_setting_to_change(error: BaseException, words: list[str]) -> None:
    message = explain_failure(error, load_config("local"))
    for word in words:
        assert word in message


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
