"""Run Spark SQL against the lakehouse from a new process and print plain tables.

    spark-submit $(python -m common.spark --submit-args) common/sql.py \\
        --lakehouse DIR -- "SELECT label, count(*) FROM gold.image_features GROUP BY label"

``--json`` prints every row as one JSON object per line (full values, for scripts);
``--summary`` prints rows per layer, rejects by reason and the last runs;
``--write-init`` writes ``<lakehouse>/_catalog/register.sql`` for ``spark-sql -i``.
"""

from __future__ import annotations

import common  # noqa: F401 - first, before pyspark: see common/__init__.py

import json
import sys
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from common.config import Config
from common.delta_log import is_delta_table
from common.jobs import EXIT_CONFIG, EXIT_OK, base_parser, config_from_args, parse_or_exit
from common.lake import table
from common.log import setup_logging
from common.spark import build_session
from common.storage import join_path, local_path, storage_of
from common.tables import OPS_RUNS, all_tables


def format_table(frame: DataFrame, limit: int = 1000) -> str:
    """A plain-text table of at most ``limit`` rows (long values are cut at 80 chars)."""
    rows = frame.limit(limit).collect()
    header = frame.columns
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (bytes, bytearray)):
        text = f"<{len(value)} bytes>"
    elif isinstance(value, list):
        head = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value[:3])
        text = f"[{head}{', ...' if len(value) > 3 else ''}] ({len(value)})"
    else:
        text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


SUMMARY_QUERIES = (
    ("Rejects by reason", "SELECT reason, count(*) AS files FROM silver.rejects GROUP BY reason"),
    (
        "Last runs",
        "SELECT job, status, round(seconds, 1) AS seconds, rows_in, rows_out, rows_rejected, "
        "rows_deleted, rows_per_second, substr(coalesce(error, ''), 1, 60) AS error "
        "FROM ops.runs ORDER BY ended_at DESC LIMIT 8",
    ),
)


def rows_per_layer(spark: SparkSession) -> str:
    """One query counting the rows of each layer's tables that exist (in pipeline order;
    the run log is shown apart)."""
    present = [spec.name for spec in all_tables()
               if spec is not OPS_RUNS and spark.catalog.tableExists(spec.name)]
    if not present:
        return "SELECT 'none yet' AS table_name, 0 AS rows"
    return " UNION ALL ".join(
        f"SELECT '{name}' AS table_name, count(*) AS rows FROM {name}" for name in present
    )


def print_summary(spark: SparkSession, config: Config) -> None:
    for title, query in (("Rows per layer", rows_per_layer(spark)), *SUMMARY_QUERIES):
        print(f"\n== {title} ==")
        try:
            print(format_table(spark.sql(query)))
        except Exception as exc:  # noqa: BLE001 - a layer may not exist yet
            print(f"(not available yet: {str(exc).splitlines()[0][:120]})")
    print(f"\nParquet export of gold: {config.export_path}")
    print(f"PCA report: {join_path(config.lakehouse, 'reports', 'pca')}")


def write_init(config: Config) -> str:
    """Write the ``spark-sql -i`` file that registers every existing table by name."""
    lines = []
    for spec in all_tables():
        location = spec.location(config.lakehouse)
        if not storage_of(location).direct or is_delta_table(None, location):
            lines.append(f"CREATE DATABASE IF NOT EXISTS {spec.database};")
            lines.append(f"CREATE TABLE IF NOT EXISTS {spec.name} USING delta "
                         f"LOCATION {sql_string(location)};")
    target = local_path(join_path(config.lakehouse, "_catalog", "register.sql"))
    target.parent.mkdir(parents=True, exist_ok=True)
    Path(target).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(target)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("Run Spark SQL on the lakehouse and print the result.")
    parser.add_argument("--summary", action="store_true", help="print the lakehouse summary")
    parser.add_argument("--write-init", action="store_true", help="write the spark-sql -i file")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per row, every row, values not shortened")
    parser.add_argument("query", nargs="?", help="one SQL statement")
    parsed = parse_or_exit(parser, argv, config_from_args)
    if isinstance(parsed, int):
        return parsed
    args, config = parsed
    if args.write_init:
        print(write_init(config))
        return EXIT_OK
    if not args.summary and not args.query:
        print("error: give a query, e.g. \"SELECT count(*) FROM bronze.images\"", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging("WARNING")
    spark = build_session(config, "fruits-sql")
    first = all_tables()[0]  # the first layer's table (bronze.images)
    if not table(spark, first, config.lakehouse).exists():
        print(f"note: no {first.name} under {config.lakehouse} yet", file=sys.stderr)
    if args.summary:
        print_summary(spark, config)
        return EXIT_OK
    try:
        result = spark.sql(args.query)
        if args.json:
            for row in result.toLocalIterator():  # streamed: one partition at a time
                print(json.dumps(row.asDict(recursive=True), default=_json_value))
            return EXIT_OK
        print(format_table(result))
    except Exception as exc:  # noqa: BLE001 - show the user Spark's own reason
        print(f"error: {spark_message(exc)}", file=sys.stderr)
        return 1
    return EXIT_OK


def spark_message(exc: BaseException) -> str:
    """Spark's own message for a failed statement, without its JVM stack trace."""
    lines = []
    for line in str(exc).splitlines():
        if line.strip().startswith("JVM stacktrace") or line.startswith("\tat "):
            break
        if line.strip():
            lines.append(line.rstrip())
    return "\n".join(lines[:8]) or type(exc).__name__


def sql_string(text: str) -> str:
    """``text`` as a Spark SQL string literal (quotes and backslashes escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _json_value(value: object) -> object:
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
