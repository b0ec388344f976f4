"""silver/job.py end to end: labels, conversions, rejects with reasons, increments."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
import pyarrow.parquet as pq
from PIL import Image

from bronze.job import main as bronze_main
from silver.job import main as silver_main
from tests.gold.helpers import last_run
from tests.imagegen import gradient, jpeg_bytes, write

OPTS = ["--set", "spark.shuffle_partitions=2", "--set", "bronze.max_file_bytes=200000"]


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def pipeline(source: Path, lakehouse: Path, *bronze_extra: str) -> None:
    assert bronze_main(["--source", str(source), "--lakehouse", str(lakehouse), *OPTS,
                        *bronze_extra]) == 0
    assert silver_main(["--lakehouse", str(lakehouse), *OPTS]) == 0


def table(spark, lakehouse: Path, name: str):
    return spark.read.format("delta").load(str(lakehouse / name))


GOOD = {
    "Apple Red/rgb.jpg": jpeg_bytes(gradient(100, 100, seed=1)),
    "Apple Red/gray.jpg": encoded(gradient(64, 64).convert("L"), "JPEG"),
    "Fraise ü/rgba.png": encoded(Image.new("RGBA", (50, 50), (10, 200, 30, 0)), "PNG"),
    "Fraise ü/palette.png": encoded(gradient(60, 40).convert("P"), "PNG"),
    "Fraise ü/cmyk.jpg": encoded(Image.new("CMYK", (40, 40), (255, 0, 0, 0)), "JPEG"),
    "Kiwi/deep/sixteen.png": encoded(Image.new("I;16", (40, 40), 32768), "PNG"),
}
BAD = {
    "Kiwi/empty.jpg": (b"", "empty"),
    "Kiwi/truncated.jpg": (jpeg_bytes(gradient(100, 100, seed=2))[:1500], "truncated"),
    "Kiwi/page.jpg": (b"<html><body>404 Not Found</body></html>\n", "not_an_image"),
    "Kiwi/noise.png": (bytes(range(256)) * 4, "unknown_format"),
    "Kiwi/tiny.jpg": (jpeg_bytes(gradient(10, 10)), "too_small"),
    "Kiwi/bomb.png": (encoded(Image.new("1", (30000, 30000), 0), "PNG"), "decompression_bomb"),
    "Kiwi/huge.jpg": (b"\xff\xd8" + bytes(300000), "too_large"),
}


def test_good_files_are_labelled_and_resized_bad_ones_quarantined(
    spark, lakehouse: Path, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    for name, content in GOOD.items():
        write(source / name, content)
    for name, (content, _) in BAD.items():
        write(source / name, content)
    pipeline(source, lakehouse)

    images = {r.path: r for r in table(spark, lakehouse, "silver/images").collect()}
    assert {p: r.label for p, r in images.items()} == {
        f"file:{source / n}": n.split("/")[-2] for n in GOOD
    }
    rgb = images[f"file:{source / 'Apple Red/rgb.jpg'}"]
    notebook = np.asarray(Image.open(io.BytesIO(GOOD["Apple Red/rgb.jpg"])).resize([224, 224]))
    assert np.array_equal(np.frombuffer(rgb.image, np.uint8).reshape(224, 224, 3), notebook)
    assert (rgb.width, rgb.height, rgb.mode) == (100, 100, "RGB")
    rgba = np.frombuffer(images[f"file:{source / 'Fraise ü/rgba.png'}"].image, np.uint8)
    assert np.all(rgba == 255)  # transparent -> white
    sixteen = images[f"file:{source / 'Kiwi/deep/sixteen.png'}"]
    assert sixteen.mode in ("I;16", "I") and np.all(np.frombuffer(sixteen.image, np.uint8) == 128)
    cmyk = np.frombuffer(images[f"file:{source / 'Fraise ü/cmyk.jpg'}"].image, np.uint8)
    assert np.abs(cmyk.reshape(-1, 3).astype(int) - [0, 255, 255]).max() <= 2

    rejects = {r.path: (r.reason, r.label) for r in table(spark, lakehouse, "silver/rejects").collect()}
    assert rejects == {f"file:{source / n}": (reason, "Kiwi") for n, (_, reason) in BAD.items()}
    errors = {r.reason: r.error for r in table(spark, lakehouse, "silver/rejects").collect()}
    assert "truncated" in errors["truncated"] and "pixels" in errors["decompression_bomb"]

    bronze_paths = {r.path for r in table(spark, lakehouse, "bronze/images").select("path").collect()}
    assert bronze_paths == set(images) | set(rejects) and not set(images) & set(rejects)

    # silver.images' files use silver.image_codec (local profile: lz4_raw); the other
    # tables keep the session's zstd. pyarrow names Parquet's LZ4_RAW "LZ4" (and Hadoop's
    # framed LZ4 "LZ4_HADOOP"); Spark names the files after the codec.
    assert _codecs(lakehouse / "silver/images") == {"LZ4"}
    assert all(f.name.endswith(".lz4raw.parquet")
               for f in (lakehouse / "silver/images").glob("*.parquet"))
    assert _codecs(lakehouse / "silver/rejects") == {"ZSTD"}


def _codecs(folder: Path) -> set[str]:
    return {pq.ParquetFile(f).metadata.row_group(0).column(0).compression
            for f in folder.glob("*.parquet")}


def test_only_new_and_changed_rows_are_processed(spark, lakehouse: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    for i in range(3):
        write(source / f"Pear/p{i}.jpg", jpeg_bytes(gradient(seed=i)))
    write(source / "Pear/bad.jpg", b"")
    pipeline(source, lakehouse)
    first_images = {r.path: r.run_id for r in table(spark, lakehouse, "silver/images").collect()}
    first_rejects = {r.path: r.run_id for r in table(spark, lakehouse, "silver/rejects").collect()}
    versions = [spark.sql(f"DESCRIBE HISTORY delta.`{lakehouse / t}`").count()
                for t in ("silver/images", "silver/rejects")]

    pipeline(source, lakehouse)  # nothing new: no new commit in silver
    assert [spark.sql(f"DESCRIBE HISTORY delta.`{lakehouse / t}`").count()
            for t in ("silver/images", "silver/rejects")] == versions

    later = time.time() + 5
    write(source / "Pear/p0.jpg", b"not an image any more")  # good -> bad
    os.utime(source / "Pear/p0.jpg", (later, later))
    write(source / "Pear/bad.jpg", jpeg_bytes(gradient(seed=7)))  # bad -> good
    os.utime(source / "Pear/bad.jpg", (later, later))
    write(source / "Pear/p9.jpg", jpeg_bytes(gradient(seed=9)))  # new
    (source / "Pear/p2.jpg").unlink()  # deleted, synced below
    pipeline(source, lakehouse, "--sync-deletes")

    images = {r.path: r.run_id for r in table(spark, lakehouse, "silver/images").collect()}
    rejects = {r.path: (r.run_id, r.reason) for r in table(spark, lakehouse, "silver/rejects").collect()}
    p = {n: f"file:{source / 'Pear' / n}" for n in ("p0.jpg", "p1.jpg", "p2.jpg", "p9.jpg", "bad.jpg")}
    assert set(images) == {p["p1.jpg"], p["p9.jpg"], p["bad.jpg"]}
    assert set(rejects) == {p["p0.jpg"]} and rejects[p["p0.jpg"]][1] == "not_an_image"
    assert images[p["p1.jpg"]] == first_images[p["p1.jpg"]]  # untouched row, old run id
    new_run = images[p["p9.jpg"]]
    assert new_run not in set(first_images.values()) | set(first_rejects.values())
    assert images[p["bad.jpg"]] == new_run and rejects[p["p0.jpg"]][0] == new_run
    # bronze replaced and deleted rows: silver compared every key
    assert last_run(spark, lakehouse, "silver")["details"]["changes_from"] == "keys"

    # Only new files since: bronze appended them, and silver reads just those from
    # bronze's log. A reject alone leaves silver.images' marker behind silver.rejects,
    # so the run after it compares the keys again.
    write(source / "Pear/p10.jpg", jpeg_bytes(gradient(seed=10)))
    write(source / "Pear/p11.jpg", b"")
    pipeline(source, lakehouse)
    run = last_run(spark, lakehouse, "silver")
    assert (run["details"]["changes_from"], run["rows_out"], run["rows_rejected"]) == ("log", 1, 1)
    write(source / "Pear/p12.jpg", b"")
    pipeline(source, lakehouse)
    run = last_run(spark, lakehouse, "silver")
    assert (run["details"]["changes_from"], run["rows_out"], run["rows_rejected"]) == ("log", 0, 1)
    write(source / "Pear/p13.jpg", jpeg_bytes(gradient(seed=13)))
    pipeline(source, lakehouse)
    run = last_run(spark, lakehouse, "silver")
    assert (run["details"]["changes_from"], run["rows_out"], run["rows_rejected"]) == ("keys", 1, 0)
    pipeline(source, lakehouse)  # nothing new, from the log
    assert last_run(spark, lakehouse, "silver")["details"]["changes_from"] == "log"

    images = {r.path: r for r in table(spark, lakehouse, "silver/images").collect()}
    rejects = {r.path: r.reason for r in table(spark, lakehouse, "silver/rejects").collect()}
    p.update({n: f"file:{source / 'Pear' / n}" for n in ("p10.jpg", "p11.jpg", "p12.jpg",
                                                         "p13.jpg")})
    assert set(images) == {p["p1.jpg"], p["p9.jpg"], p["bad.jpg"], p["p10.jpg"], p["p13.jpg"]}
    assert rejects == {p["p0.jpg"]: "not_an_image", p["p11.jpg"]: "empty", p["p12.jpg"]: "empty"}
    for name, seed in (("p10.jpg", 10), ("p13.jpg", 13)):
        row = images[p[name]]
        expected = np.asarray(Image.open(io.BytesIO(jpeg_bytes(gradient(seed=seed))))
                              .convert("RGB").resize((224, 224)))
        assert row.label == "Pear"
        np.testing.assert_array_equal(
            np.frombuffer(row.image, dtype=np.uint8).reshape(224, 224, 3), expected)


@pytest.mark.parametrize("rule, expected", [
    ("parent", {"Plum/a.jpg": "Plum", "Plum/2024/b.jpg": "2024", "Fig ü/Summer trip/x/c.png": "x"}),
    ("first_folder", {"Plum/a.jpg": "Plum", "Plum/2024/b.jpg": "Plum",
                      "Fig ü/Summer trip/x/c.png": "Fig ü"}),
])
def test_labels_follow_the_label_rule_and_a_file_in_the_root_is_no_label(
    spark, lakehouse: Path, tmp_path: Path, rule: str, expected: dict
) -> None:
    source = tmp_path / "my photos"
    for i, name in enumerate(["loose.jpg", *expected]):
        write(source / name, jpeg_bytes(gradient(60, 60, seed=i)))
    assert bronze_main(["--source", str(source), "--lakehouse", str(lakehouse), *OPTS]) == 0
    assert silver_main(["--lakehouse", str(lakehouse), "--set", "silver.label_rule=folder"]) == 2
    assert silver_main(["--lakehouse", str(lakehouse), *OPTS,
                        "--set", f"silver.label_rule={rule}"]) == 0
    labels = {r.path.split("my photos/")[1]: r.label
              for r in table(spark, lakehouse, "silver/images").collect()}
    assert labels == expected
    rejects = table(spark, lakehouse, "silver/rejects").collect()
    assert [(r.path, r.label, r.reason) for r in rejects] == [
        (f"file:{source}/loose.jpg", None, "no_label")]
    assert rejects[0].error == (f"the file is directly in the source root file:{source}: "
                                "put it in a folder named after its class")


def test_every_phone_format_reaches_silver_and_the_run_counts_outcomes_and_formats(
    spark, lakehouse: Path, tmp_path: Path, capsys
) -> None:
    import pillow_heif  # noqa: F401 - registers HEIF with Pillow (silver does the same)

    source = tmp_path / "src"
    photo = gradient(120, 90, seed=5)
    formats = {"HEIF": "IMG_0001.HEIC", "AVIF": "a.avif", "WEBP": "w.webp", "TIFF": "t.tif",
               "BMP": "b.bmp", "GIF": "g.gif", "PNG": "p.png", "JPEG": "j.jpeg"}
    for fmt, name in formats.items():
        write(source / "Kiwi" / name, encoded(photo, fmt))
    write(source / "Kiwi" / "notes.txt", b"bought on Monday\n")
    write(source / "Kiwi" / "clip.mov", bytes(range(256)) * 8)
    write(source / "loose.jpg", jpeg_bytes(photo))
    pipeline(source, lakehouse)

    images = {r.path for r in table(spark, lakehouse, "silver/images").collect()}
    assert images == {f"file:{source / 'Kiwi' / name}" for name in formats.values()}
    rejects = {r.path.rsplit("/", 1)[1]: r.reason
               for r in table(spark, lakehouse, "silver/rejects").collect()}
    assert rejects == {"notes.txt": "not_an_image", "clip.mov": "unknown_format",
                       "loose.jpg": "no_label"}
    details = last_run(spark, lakehouse, "silver")["details"]
    assert details["outcomes"] == "images 8, no_label 1, not_an_image 1, unknown_format 1"
    assert details["formats"] == ("JPEG 2, other 2, AVIF 1, BMP 1, GIF 1, HEIF 1, PNG 1, "
                                  "TIFF 1, WEBP 1")
    out = capsys.readouterr().out
    assert "outcomes=images 8, no_label 1, not_an_image 1, unknown_format 1" in out
