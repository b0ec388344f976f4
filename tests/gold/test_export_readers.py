"""A pandas reader looping over the Parquet export while gold rewrites it sees one whole
export each time: the previous one or the new one, never a mix, an error or a part."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest

from tests.gold.helpers import RANDOM, bronze_silver, gold, gold_features
from tests.imagegen import gradient, jpeg_bytes, write

pytestmark = pytest.mark.slow


def test_a_reader_looping_during_rewrites_sees_whole_exports(spark, lakehouse: Path,
                                                             tmp_path: Path) -> None:
    source = tmp_path / "src"
    for i in range(8):
        write(source / f"Pear {i % 2}/p{i}.jpg", jpeg_bytes(gradient(seed=i)))
    bronze_silver(source, lakehouse)
    assert gold(lakehouse, *RANDOM) == 0
    export = lakehouse / "exports" / "image_features"
    exports = [frozenset(gold_features(spark, lakehouse))]

    seen: list[frozenset] = []
    errors: list[str] = []
    stop = threading.Event()

    def read_in_a_loop() -> None:
        while not stop.is_set():
            try:
                frame = pd.read_parquet(export.resolve())  # the README's read
                assert frame.features.map(len).eq(1280).all()
                seen.append(frozenset(frame.path))
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                errors.append(f"{type(exc).__name__}: {exc}")

    reader = threading.Thread(target=read_in_a_loop, daemon=True)
    reader.start()
    try:
        for round_ in range(3):  # a delete each round: the export is rewritten whole
            (source / f"Pear {round_ % 2}/p{round_}.jpg").unlink()
            write(source / f"Pear {round_ % 2}/n{round_}.jpg",
                  jpeg_bytes(gradient(seed=40 + round_)))
            bronze_silver(source, lakehouse, "--sync-deletes")
            assert gold(lakehouse, *RANDOM) == 0
            exports.append(frozenset(gold_features(spark, lakehouse)))
    finally:
        stop.set()
        reader.join(timeout=60)

    assert errors == []
    assert len(seen) >= 20
    assert set(seen) <= set(exports)  # each read is one whole export
    assert len(set(seen)) >= 3  # the loop really ran across the rewrites
    assert frozenset(pd.read_parquet(export).path) == exports[-1]
