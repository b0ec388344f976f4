"""A new process queries the tables by name (make sql's spark-submit line), joins included."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import submit
from tests.gold.helpers import bronze_silver, gold
from tests.imagegen import gradient, jpeg_bytes, write


@pytest.mark.slow
def test_sql_by_name_from_a_new_process(spark, lakehouse: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    for i in range(3):
        write(source / "Mango" / f"m{i}.jpg", jpeg_bytes(gradient(seed=i)))
    write(source / "Kiwi" / "k.jpg", jpeg_bytes(gradient(seed=5)))
    write(source / "Kiwi" / "bad.jpg", b"not an image")
    bronze_silver(source, lakehouse)
    assert gold(lakehouse, "--weights", "random", "--engine", "tensorflow") == 0

    code, output = submit.run(
        "sql", lakehouse, "--",
        "SELECT label, count(*) AS n FROM gold.image_features GROUP BY label ORDER BY label",
    )
    assert code == 0, output[-2000:]
    lines = [line.split() for line in output.splitlines()]
    assert ["Kiwi", "1"] in lines and ["Mango", "3"] in lines and ["(2", "rows)"] in lines

    code, output = submit.run(
        "sql", lakehouse, "--",
        "SELECT s.label, count(r.path) AS rejects FROM "
        "(SELECT DISTINCT label FROM silver.images) s "
        "LEFT JOIN silver.rejects r ON r.label = s.label GROUP BY s.label ORDER BY s.label",
    )
    assert code == 0, output[-2000:]
    lines = [line.split() for line in output.splitlines()]
    assert ["Kiwi", "1"] in lines and ["Mango", "0"] in lines

    # a syntax error and a missing table: Spark's own message, exit 1
    code, output = submit.run("sql", lakehouse, "--", "SELEC label FROM gold.image_features")
    assert code == 1 and "error: [PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'" in output
    code, output = submit.run("sql", lakehouse, "--", "SELECT * FROM gold.nothing")
    assert code == 1 and "error: [TABLE_OR_VIEW_NOT_FOUND]" in output and "gold`.`nothing" in output
