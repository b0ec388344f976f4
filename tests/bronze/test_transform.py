"""bronze/transform.py: which listed files are work, and which of them replace a row."""

from __future__ import annotations

import pandas as pd

from bronze.transform import image_files, new_or_changed, new_or_changed_files

KNOWN = [("file:/p/a.jpg", 1000, 10), ("file:/p/b.jpg", 1000, 20), ("file:/p/c.jpg", 1000, 30),
         ("file:/p/e.jpg", 1000, 50)]
LISTED = [
    ("file:/p/a.jpg", 1000, 10),  # unchanged
    ("file:/p/b.jpg", 2000, 20),  # touched: new modification time
    ("file:/p/c.jpg", 1000, 31),  # same time, new length
    ("file:/p/d.jpg", 1000, 40),  # new path
    ("file:/p/e.jpg", 1001, 50),  # a millisecond later
]
WORK = [
    ("file:/p/b.jpg", 2000, 20, True),
    ("file:/p/c.jpg", 1000, 31, True),
    ("file:/p/d.jpg", 1000, 40, False),
    ("file:/p/e.jpg", 1001, 50, True),
]


def test_new_or_changed_keeps_new_and_rewritten_files_and_marks_the_rewritten(spark) -> None:
    current = spark.createDataFrame(KNOWN, "path string, modification_time long, length long")
    listing = spark.createDataFrame(LISTED, "path string, modificationTime long, length long")
    work = listing.transform(new_or_changed(current))
    assert work.columns == ["path", "modificationTime", "length", "changed_in_place"]
    assert sorted(tuple(r) for r in work.collect()) == WORK


def millis(values: list[int]) -> pd.Series:
    return pd.to_datetime(pd.Series(values, dtype="int64"), unit="ms", utc=True)


def test_the_drivers_comparison_finds_the_same_work() -> None:
    """The comparison the job makes in its own process when it can read bronze's files
    (bronze.storage.known_files): same rows, timestamps to the millisecond."""
    known = pd.DataFrame(KNOWN, columns=["path", "modification_time", "length"])
    known["modification_time"] = millis(known["modification_time"])
    listing = pd.DataFrame(LISTED, columns=["path", "modificationTime", "length"])
    listing["modificationTime"] = millis(listing["modificationTime"])
    work = new_or_changed_files(listing, known)
    assert list(work.columns) == ["path", "modificationTime", "length", "changed_in_place"]
    assert sorted(
        (r.path, r.modificationTime.value // 1_000_000, r.length, r.changed_in_place)
        for r in work.itertuples()
    ) == WORK
    assert new_or_changed_files(listing.iloc[:0], known).empty


def test_image_files_on_the_driver_keep_the_extensions_in_any_case() -> None:
    listing = pd.DataFrame({"path": ["file:/a/x.JPG", "file:/a/y.jpeg", "file:/a/z.png.bak",
                                     "file:/a/w.Png", "file:/a/v.gif"]})
    assert image_files(listing, ["jpg", ".jpeg", "PNG"])["path"].tolist() == [
        "file:/a/x.JPG", "file:/a/y.jpeg", "file:/a/w.Png"]


def test_star_keeps_every_file_on_the_driver() -> None:
    listing = pd.DataFrame({"path": ["file:/a/x.JPG", "file:/a/IMG_1.HEIC", "file:/a/notes"]})
    assert image_files(listing, ["*"])["path"].tolist() == listing["path"].tolist()
