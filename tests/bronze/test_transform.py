"""bronze/transform.py: which listed files are work, and which of them replace a row."""

from __future__ import annotations

from bronze.transform import new_or_changed


def test_new_or_changed_keeps_new_and_rewritten_files_and_marks_the_rewritten(spark) -> None:
    current = spark.createDataFrame(
        [("file:/p/a.jpg", 1000, 10), ("file:/p/b.jpg", 1000, 20), ("file:/p/c.jpg", 1000, 30)],
        "path string, modification_time long, length long",
    )
    listing = spark.createDataFrame(
        [
            ("file:/p/a.jpg", 1000, 10),  # unchanged
            ("file:/p/b.jpg", 2000, 20),  # touched: new modification time
            ("file:/p/c.jpg", 1000, 31),  # same time, new length
            ("file:/p/d.jpg", 1000, 40),  # new path
        ],
        "path string, modificationTime long, length long",
    )
    work = listing.transform(new_or_changed(current))
    assert work.columns == ["path", "modificationTime", "length", "changed_in_place"]
    assert sorted(tuple(r) for r in work.collect()) == [
        ("file:/p/b.jpg", 2000, 20, True),
        ("file:/p/c.jpg", 1000, 31, True),
        ("file:/p/d.jpg", 1000, 40, False),
    ]
