"""The session writes the payload columns without Parquet statistics or dictionary."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from pyspark.sql import types as T

from common.tables import payload_columns


def test_payload_columns_have_no_statistics_nor_dictionary(spark, tmp_path: Path) -> None:
    schema = T.StructType([
        T.StructField("path", T.StringType()),
        T.StructField("content", T.BinaryType()),
        T.StructField("image", T.BinaryType()),
        T.StructField("features", T.ArrayType(T.FloatType())),
    ])
    # Few distinct short values: Parquet would keep both a dictionary and min/max.
    rows = [(f"p{i % 3}", bytes([i % 2]) * 8, bytes([i % 3]) * 8, [float(i % 2)] * 4)
            for i in range(60)]
    out = tmp_path / "table"
    spark.createDataFrame(rows, schema).coalesce(1).write.format("delta").save(str(out))

    files = sorted(out.glob("*.parquet"))
    assert len(files) == 1
    group = pq.ParquetFile(files[0]).metadata.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    assert set(columns) == {"path", "content", "image", "features.list.element"}
    for name, column in columns.items():
        dictionary = any("DICTIONARY" in encoding for encoding in column.encodings)
        has_min_max = column.statistics is not None and column.statistics.has_min_max
        if name in payload_columns():
            assert (dictionary, has_min_max) == (False, False), name
        else:  # the settings name only the payload columns
            assert (dictionary, has_min_max) == (True, True), name
    assert columns["path"].statistics.min == "p0" and columns["path"].statistics.max == "p2"
