"""gold.silver_files: images looked up by key in a Parquet file, as gold's workers do.

No Spark: the files are written with pyarrow in silver's layout (several row groups), the
keys asked in the orders a task can ask them, and the pixels compared with the images
written.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gold.silver_files import SilverFileError, SilverImages, local_file
from tests.imagegen import gradient


def _silver_file(path: Path, count: int, row_group: int) -> tuple[list, np.ndarray]:
    """A Parquet file of ``count`` silver-like rows, ``row_group`` rows per group."""
    images = np.stack([np.asarray(gradient(224, 224, seed=i)) for i in range(count)])
    keys = [(f"file:/photos/Kiwi/k{i}.jpg", f"h{i:03d}" if i % 5 else None) for i in range(count)]
    table = pa.table({
        "path": [k[0] for k in keys],
        "label": ["Kiwi"] * count,
        "content_hash": [k[1] for k in keys],
        "image": pa.array([img.tobytes() for img in images], type=pa.binary()),
    })
    pq.write_table(table, path, row_group_size=row_group, compression="zstd")
    return keys, images


def test_images_are_found_by_key_across_row_groups_and_windows(tmp_path: Path) -> None:
    folder = tmp_path / "lake house"  # a space: Spark gives percent-encoded URIs
    folder.mkdir()
    file = folder / "part-0.parquet"
    keys, images = _silver_file(file, count=23, row_group=7)
    assert pq.ParquetFile(file).metadata.num_row_groups == 4
    uri = "file:" + quote(str(file))
    reader = SilverImages(window=3)

    # The scan's order, a subset (the pending rows), over every row group.
    wanted = [1, 2, 6, 7, 13, 14, 20, 22]
    got = reader.pixels(uri, [keys[i][0] for i in wanted], [keys[i][1] for i in wanted])
    np.testing.assert_array_equal(got, images[wanted])
    assert reader.row_groups_read == 4

    # The next batch of the same task continues where the last one stopped; a key behind
    # the current window (not the scan's order) is still found.
    got = reader.pixels(uri, [keys[22][0], keys[0][0]], [keys[22][1], keys[0][1]])
    np.testing.assert_array_equal(got, images[[22, 0]])


def test_a_key_the_file_does_not_hold_is_an_error_not_a_wrong_image(tmp_path: Path) -> None:
    file = tmp_path / "part-0.parquet"
    keys, _ = _silver_file(file, count=4, row_group=2)
    reader = SilverImages()
    with pytest.raises(SilverFileError, match="holds no row"):
        reader.pixels(str(file), [keys[1][0]], ["another hash"])  # same path, other content
    with pytest.raises(SilverFileError, match="holds no row"):
        reader.pixels(str(file), ["file:/photos/Kiwi/gone.jpg"], ["h001"])


def test_only_local_files_are_read() -> None:
    assert local_file("file:/tmp/lake%20house/x.parquet") == "/tmp/lake house/x.parquet"
    assert local_file("file:///tmp/x.parquet") == "/tmp/x.parquet"
    assert local_file("/tmp/x.parquet") == "/tmp/x.parquet"
    with pytest.raises(SilverFileError, match="local silver files only"):
        local_file("s3a://bucket/silver/images/part-0.parquet")


@pytest.mark.parametrize(
    ("setting", "lakehouse", "properties", "reader"),
    [
        ("auto", "/data/lake", {}, "workers"),
        ("auto", "/data/lake", {"delta.columnMapping.mode": "none"}, "workers"),
        ("auto", "s3a://bucket/lake", {}, "spark"),
        ("auto", "/data/lake", {"delta.columnMapping.mode": "name"}, "spark"),
        ("spark", "/data/lake", {}, "spark"),
        ("workers", "/data/lake", {}, "workers"),
    ],
)
def test_who_reads_the_images(setting: str, lakehouse: str, properties: dict,
                              reader: str) -> None:
    from common.config import load_config
    from gold.job import image_reader

    config = load_config("local", {"gold.image_reader": setting, "lakehouse": lakehouse})
    assert image_reader(config, properties) == reader


def test_workers_refuse_a_silver_with_column_mapping() -> None:
    from common.config import ConfigError, load_config
    from gold.job import image_reader

    config = load_config("local", {"gold.image_reader": "workers", "lakehouse": "/data/lake"})
    with pytest.raises(ConfigError, match="column mapping"):
        image_reader(config, {"delta.columnMapping.mode": "id"})


def test_memory_stays_flat_over_many_row_groups(tmp_path: Path) -> None:
    """Reading a file's row groups one after the other keeps one slice, not the file:
    pyarrow once kept every row group read (about its decoded size each)."""
    file = tmp_path / "part-0.parquet"
    rng = np.random.default_rng(0)
    count, group = 640, 8  # 80 row groups of 1.2 MB of (incompressible) pixels
    images = rng.integers(0, 256, size=(count, 224 * 224 * 3), dtype=np.uint8)
    pq.write_table(pa.table({
        "path": [f"file:/p/{i}.jpg" for i in range(count)],
        "content_hash": [f"h{i}" for i in range(count)],
        "image": pa.array([row.tobytes() for row in images], type=pa.binary()),
    }), file, row_group_size=group, compression="zstd")
    last = images[-1].copy()
    del images

    def resident_mb() -> float:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0]) / 1024

    reader = SilverImages()
    keys = [(f"file:/p/{i}.jpg", f"h{i}") for i in range(count)]
    reader.pixels(str(file), *zip(*keys[:group]))  # the index, the first slice
    before = resident_mb()
    for start in range(group, count, group):
        got = reader.pixels(str(file), *zip(*keys[start:start + group]))
    assert reader.row_groups_read == count // group
    np.testing.assert_array_equal(got[-1].reshape(-1), last)
    assert resident_mb() - before < 40, resident_mb() - before  # 94 MB if kept
