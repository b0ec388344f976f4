"""make sql-shell's registration file: paths with quotes, backslashes, $ and unicode."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from common.lake import ensure_table
from common.spark import local_frame
from common.sql import spark_message, sql_string, write_init
from common.tables import OPS_RUNS
from tests.conftest import make_config


def test_the_registration_sql_escapes_awkward_paths(spark, lakehouse: Path) -> None:
    folder = lakehouse.parent / "it's a \\ $HOME ü lake"
    config = make_config(folder)
    location = ensure_table(spark, OPS_RUNS, config.lakehouse).location
    now = datetime.now(timezone.utc)
    row = ("gold", "run-1", "succeeded", now, now, 1.0, 1, 1, 0, 0, None, None, "app", "{}", None)
    local_frame(spark, [row], OPS_RUNS.schema).write.format("delta").mode("append").save(location)
    spark.sql("DROP DATABASE IF EXISTS ops CASCADE")

    statements = Path(write_init(config)).read_text(encoding="utf-8").strip().splitlines()
    assert statements[-1] == (f"CREATE TABLE IF NOT EXISTS ops.runs USING delta LOCATION "
                              f"{sql_string(location)};")
    for statement in statements:
        spark.sql(statement.rstrip(";"))
    assert [r.run_id for r in spark.sql("SELECT run_id FROM ops.runs").collect()] == ["run-1"]
    assert spark.sql("DESCRIBE DETAIL ops.runs").first().location.endswith(
        "it's a \\ $HOME ü lake/ops/runs")


def test_a_failed_statement_shows_sparks_message_not_an_empty_line(spark) -> None:
    try:
        spark.sql("SELEC 1")
    except Exception as exc:  # noqa: BLE001
        message = spark_message(exc)
    assert message.startswith("[PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'")
    assert "JVM stacktrace" not in message
