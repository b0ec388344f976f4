"""bronze/job.py end to end through main([...]), on the test session."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from bronze.job import main
from tests.conftest import SAMPLE
from tests.gold.helpers import last_run
from tests.imagegen import gradient, jpeg_bytes, png_bytes, write


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def bronze_rows(spark, lakehouse: Path) -> dict[str, tuple]:
    frame = spark.read.format("delta").load(str(lakehouse / "bronze" / "images"))
    return {
        r.path: (r.content_hash, r.length, r.status, r.run_id, bytes(r.content) if r.content else None)
        for r in frame.collect()
    }


def run(source: Path, lakehouse: Path, *extra: str) -> int:
    return main(["--source", str(source), "--lakehouse", str(lakehouse), *extra,
                 "--set", "spark.shuffle_partitions=2"])


def touch_later(path: Path) -> None:
    later = time.time() + 5
    os.utime(path, (later, later))


def drop_checksums(lakehouse: Path) -> None:
    """Without its checksum files bronze cannot be read by the job's own process: the job
    compares the listing through Spark instead."""
    for crc in (lakehouse / "bronze" / "images" / "_delta_log").glob("*.crc"):
        crc.unlink()


@pytest.mark.parametrize("via", ["checksum", "spark"])
def test_incremental_new_unchanged_changed_deleted(
    spark, lakehouse: Path, tmp_path: Path, via: str
) -> None:
    def run(*extra: str) -> int:
        """A run whose listing is compared with bronze ``via`` the given path (the first
        run creates bronze, so it has its checksum either way)."""
        again = lakehouse.exists()
        if via == "spark" and again:
            drop_checksums(lakehouse)
        code = main(["--source", str(source), "--lakehouse", str(lakehouse), *extra,
                     "--set", "spark.shuffle_partitions=2"])
        if again:
            assert last_run(spark, lakehouse, "bronze")["details"]["compared_with"] == via
        return code

    source = tmp_path / "photos"
    files = {
        "Apple Red/img 1.jpg": jpeg_bytes(gradient(seed=1)),
        "Fraise/ü nested/déjà vu.jpg": jpeg_bytes(gradient(seed=2)),
        "Kiwi/deep/er/kiwi.png": png_bytes(gradient(seed=3)),
    }
    for name, content in files.items():
        write(source / name, content)
    expected = {f"file:{source / n}": (sha(c), len(c), "ok", c) for n, c in files.items()}

    assert run() == 0
    first = bronze_rows(spark, lakehouse)
    assert {p: (h, n, s, c) for p, (h, n, s, _, c) in first.items()} == expected
    assert len({r[3] for r in first.values()}) == 1  # one run id

    assert run() == 0  # nothing new: the rows are untouched
    assert bronze_rows(spark, lakehouse) == first

    changed = jpeg_bytes(gradient(seed=9))
    write(source / "Apple Red/img 1.jpg", changed)
    touch_later(source / "Apple Red/img 1.jpg")
    write(source / "Kiwi/new.jpg", jpeg_bytes(gradient(seed=4)))
    (source / "Fraise/ü nested/déjà vu.jpg").unlink()
    assert run() == 0
    third = bronze_rows(spark, lakehouse)
    apple, kiwi, fraise = (f"file:{source / n}" for n in
                           ("Apple Red/img 1.jpg", "Kiwi/new.jpg", "Fraise/ü nested/déjà vu.jpg"))
    assert third[apple][0] == sha(changed) and third[apple][3] != first[apple][3]
    assert kiwi in third and fraise in third  # deleted file stays without the flag
    assert third[f"file:{source / 'Kiwi/deep/er/kiwi.png'}"] == first[
        f"file:{source / 'Kiwi/deep/er/kiwi.png'}"]

    assert run("--sync-deletes") == 0
    assert set(bronze_rows(spark, lakehouse)) == {apple, kiwi, f"file:{source / 'Kiwi/deep/er/kiwi.png'}"}


NAMES = ["a/A.JPG", "a/b.jpeg", "a/c.Png", "a/d.gif", "a/e.txt", "a/f.jpg.bak",
         "a/q #1%?[x].jpg", "a/it's \"q\".jpg", "a/IMG_0001.HEIC", "a/noext"]


def test_every_non_hidden_file_by_default(spark, lakehouse: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    content = jpeg_bytes(gradient())
    for name in NAMES + ["a/.DS_Store", ".hidden/x.jpg", "a/_tmp.jpg"]:
        write(source / name, content)
    assert run(source, lakehouse) == 0
    assert set(bronze_rows(spark, lakehouse)) == {f"file:{source / n}" for n in NAMES}


def test_extensions_any_case_and_only_those(spark, lakehouse: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    content = jpeg_bytes(gradient())
    for name in NAMES:
        write(source / name, content)
    assert run(source, lakehouse, "--set", "bronze.extensions=[jpg,jpeg,png]") == 0
    assert set(bronze_rows(spark, lakehouse)) == {
        f"file:{source / n}" for n in ["a/A.JPG", "a/b.jpeg", "a/c.Png", "a/q #1%?[x].jpg",
                                       "a/it's \"q\".jpg"]
    }


def test_oversize_files_are_recorded_not_read(spark, lakehouse: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    small, big = jpeg_bytes(gradient(20, 20)), jpeg_bytes(gradient(400, 400, seed=5))
    assert len(small) < 3000 < len(big)
    write(source / "x/small.jpg", small)
    write(source / "x/big.jpg", big)
    assert run(source, lakehouse, "--set", "bronze.max_file_bytes=3000") == 0
    rows = bronze_rows(spark, lakehouse)
    assert rows[f"file:{source / 'x/big.jpg'}"][:3] == (None, len(big), "too_large")
    assert rows[f"file:{source / 'x/big.jpg'}"][4] is None
    assert rows[f"file:{source / 'x/small.jpg'}"][0] == sha(small)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--source", "{tmp}/nope"], "does not exist"),
        (["--source", "{tmp}/empty"], "contains no files"),
        (["--source", "{tmp}/file.jpg"], "is not a folder"),
        ([], "no image source"),
        (["--source", "{tmp}/empty", "--env", "prod"], "unknown profile 'prod'"),
        (["--source", "{tmp}/empty", "--set", "bronze.max_file_bytes=-1"], "greater than 0"),
    ],
)
def test_bad_arguments_fail_before_anything_is_touched(
    tmp_path: Path, capsys, argv: list[str], message: str
) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    write(tmp_path / "file.jpg", b"x")
    lakehouse = tmp_path / "lakehouse"
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--lakehouse", str(lakehouse)])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not lakehouse.exists()


@pytest.mark.slow
@pytest.mark.skipif(not SAMPLE.is_dir(), reason="needs ../shared/data/fruits360-sample")
def test_real_sample_images(spark, lakehouse: Path) -> None:
    # The jobs record the source as its real path (symlinks resolved, see common.config).
    classes = sorted(SAMPLE.resolve().iterdir())[:3]
    assert main(["--source", str(SAMPLE), "--lakehouse", str(lakehouse)]) == 0
    rows = bronze_rows(spark, lakehouse)
    wanted = {f"file:{p}": sha(p.read_bytes()) for c in classes for p in sorted(c.iterdir())}
    # every file, its README.md too (silver gives that one a reason in silver.rejects)
    assert len(rows) == sum(1 for p in SAMPLE.rglob("*") if p.is_file())
    assert {p: rows[p][0] for p in wanted} == wanted
