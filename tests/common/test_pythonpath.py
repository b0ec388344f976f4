"""common/__init__.py: pyspark and py4j come from the installed packages, not Spark's zips."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import py4j
import pyspark
import pytest
from pyspark.sql import functions as F

from common import prefer_installed_pyspark
from tests.submit import ROOT, VENV_BIN, environment


def test_only_zips_that_copy_an_installed_package_leave_the_path(tmp_path: Path) -> None:
    site = tmp_path / "site"
    lib = site / "pyspark" / "python" / "lib"
    lib.mkdir(parents=True)
    (site / "pyspark" / "__init__.py").write_text("")
    (site / "py4j-0.10.9.9.dist-info").mkdir()
    distribution = tmp_path / "spark-4.0.1" / "python" / "lib"  # EMR, a downloaded Spark
    distribution.mkdir(parents=True)
    pyspark_zip, py4j_zip = str(lib / "pyspark.zip"), str(lib / "py4j-0.10.9.9-src.zip")
    other_py4j = str(lib / "py4j-0.10.9.7-src.zip")  # not the py4j installed beside it
    kept = [other_py4j, str(distribution / "pyspark.zip"),
            str(distribution / "py4j-0.10.9.9-src.zip"), "/apps/deps.zip", str(site)]

    path = [pyspark_zip, py4j_zip, *kept]
    assert prefer_installed_pyspark(path) == [pyspark_zip, py4j_zip]
    assert path == kept

    # The installed packages are not on this interpreter's path: the zips are its only copy.
    path = [pyspark_zip, py4j_zip, "/elsewhere"]
    assert prefer_installed_pyspark(path) == []
    assert path == [pyspark_zip, py4j_zip, "/elsewhere"]


def test_python_workers_import_the_installed_pyspark(spark) -> None:
    # Spark puts its zips first on the workers' path; common.pydaemon (the daemon Spark
    # starts) imports common first.
    @F.udf("string")
    def where(_: int) -> str:
        import py4j as worker_py4j
        import pyspark as worker_pyspark

        return f"{worker_pyspark.__file__}|{worker_py4j.__file__}"

    assert spark.range(1).select(where("id")).first()[0] == f"{pyspark.__file__}|{py4j.__file__}"


@pytest.mark.slow
def test_the_spark_submit_driver_imports_the_installed_pyspark(tmp_path: Path) -> None:
    script = tmp_path / "where.py"
    script.write_text("import common\nimport py4j, pyspark\n"
                      "print('WHERE', pyspark.__file__, py4j.__file__)\n")
    profile = subprocess.run(
        [sys.executable, "-m", "common.spark", "--submit-args", "--lakehouse", str(tmp_path)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    result = subprocess.run([str(VENV_BIN / "spark-submit"), *profile, str(script)], cwd=ROOT,
                            env=environment(), capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("WHERE "))
    assert line.split()[1:] == [pyspark.__file__, py4j.__file__]
