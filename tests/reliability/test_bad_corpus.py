"""A generated corpus of awkward inputs: every file ends in exactly one table, run exits 0."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest
from PIL import Image

import bronze.job
from bronze.job import main as bronze_main
from silver.job import main as silver_main
from tests import submit
from tests.imagegen import gradient, jpeg_bytes, png_bytes, write


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def tables(spark, lakehouse: Path) -> tuple[dict, dict, set]:
    def load(name: str, *columns: str):
        return spark.read.format("delta").load(str(lakehouse / name)).select(*columns).collect()

    images = {r.path: r.label for r in load("silver/images", "path", "label")}
    rejects = {r.path: r.reason for r in load("silver/rejects", "path", "reason")}
    bronze = {r.path for r in load("bronze/images", "path")}
    return images, rejects, bronze


def test_awkward_corpus(spark, lakehouse: Path, tmp_path: Path, monkeypatch) -> None:
    source = tmp_path / "a source with spaces"
    good = {
        "Odd %20 names/100% #1 ?.jpg": jpeg_bytes(gradient(seed=1)),
        "Odd %20 names/it's \"quoted\".png": png_bytes(gradient(seed=2)),
        "Ünïcödé/ñame ü.jpg": jpeg_bytes(gradient(seed=3)),
        "deep/a/b/c/d/e/Deep Label/x.jpg": jpeg_bytes(gradient(seed=4)),
        "Modes/rgba.png": encoded(Image.new("RGBA", (40, 40), (1, 2, 3, 255)), "PNG"),
        "Modes/cmyk.jpg": encoded(Image.new("CMYK", (40, 40), (0, 0, 0, 0)), "JPEG"),
        "Modes/gray16.png": encoded(Image.new("I;16", (40, 40), 1000), "PNG"),
    }
    bad = {
        "Bad/empty.jpg": (b"", "empty"),
        "Bad/truncated.jpg": (jpeg_bytes(gradient(100, 100))[:900], "truncated"),
        "Bad/html.jpg": (b"<!doctype html><title>x</title>", "not_an_image"),
        "Bad/zip.png": (b"PK\x03\x04" + bytes(500), "unknown_format"),
    }
    for name, content in good.items():
        write(source / name, content)
    for name, (content, _) in bad.items():
        write(source / name, content)
    (source / "Empty tree/a/b").mkdir(parents=True)
    (source / "Links").mkdir()
    os.symlink(source / "Ünïcödé/ñame ü.jpg", source / "Links/linked.jpg")
    os.symlink(source / "nowhere.jpg", source / "Links/dangling.jpg")
    vanishing = write(source / "Race/vanishes.jpg", jpeg_bytes(gradient(seed=5)))
    changing = write(source / "Race/changes.jpg", jpeg_bytes(gradient(seed=6)))
    changed_content = jpeg_bytes(gradient(90, 90, seed=7))

    real_read = bronze.job.read_files

    def racing_read(spark_session, paths):  # noqa: ANN001, ANN202
        vanishing.unlink()  # deleted after listing, before reading
        changing.write_bytes(changed_content)  # rewritten after listing, before reading
        return real_read(spark_session, paths)

    monkeypatch.setattr(bronze.job, "read_files", racing_read)
    assert bronze_main(["--source", str(source), "--lakehouse", str(lakehouse)]) == 0
    monkeypatch.undo()
    assert silver_main(["--lakehouse", str(lakehouse)]) == 0

    images, rejects, bronze_paths = tables(spark, lakehouse)
    expected_good = {f"file:{source / n}": n.split("/")[-2] for n in good}
    expected_good[f"file:{source / 'Links/linked.jpg'}"] = "Links"  # symlinks are followed
    expected_good[f"file:{source / 'Race/changes.jpg'}"] = "Race"
    assert images == expected_good
    assert rejects == {f"file:{source / n}": reason for n, (_, reason) in bad.items()}
    # The vanished file is gone (nothing to keep); the dangling link is not a file.
    assert bronze_paths == set(images) | set(rejects)
    changed_row = spark.read.format("delta").load(str(lakehouse / "bronze/images")).where(
        f"path = 'file:{source / 'Race/changes.jpg'}'").first()
    assert bytes(changed_row.content) == changed_content and changed_row.length == len(
        changed_content)


@pytest.mark.slow
def test_ten_thousand_tiny_files_in_one_folder(spark, lakehouse: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    folder = source / "Tiny"
    folder.mkdir(parents=True)
    content = jpeg_bytes(gradient(40, 40))
    for i in range(10_000):
        (folder / f"t{i:05d}.jpg").write_bytes(content)
    assert bronze_main(["--source", str(source), "--lakehouse", str(lakehouse)]) == 0
    assert silver_main(["--lakehouse", str(lakehouse)]) == 0
    images, rejects, bronze_paths = tables(spark, lakehouse)
    assert len(bronze_paths) == 10_000 and not rejects
    assert set(images) == bronze_paths and set(images.values()) == {"Tiny"}


@pytest.mark.slow
def test_files_without_read_permission_are_recorded_not_lost(
    spark, lakehouse: Path, tmp_path: Path
) -> None:
    """The jobs run without the right to bypass permissions (as root, which reads
    everything, with CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped). The unreadable
    file is in bronze with status unreadable and in silver.rejects with that reason; a
    folder that cannot be listed is reported by name; the readable file goes through;
    both jobs exit 0."""
    source = tmp_path / "photos"
    ok = write(source / "Plum/ok.jpg", jpeg_bytes(gradient(seed=61)))
    secret = write(source / "Plum/no access.jpg", jpeg_bytes(gradient(seed=62)))
    write(source / "Locked/inside.jpg", jpeg_bytes(gradient(seed=63)))
    secret.chmod(0o000)
    (source / "Locked").chmod(0o000)
    no_bypass = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
                 "--inh-caps", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    try:
        for job, args in (("bronze", ("--source", str(source))), ("silver", ())):
            result = subprocess.run(
                [*no_bypass, "bash", "-c", submit.command(job, lakehouse, *args)],
                cwd=submit.ROOT, env=submit.environment(), capture_output=True, text=True,
                timeout=600,
            )
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            if job == "bronze":
                assert f"{source / 'Locked'}" in result.stdout + result.stderr  # reported
    finally:
        (source / "Locked").chmod(0o755)

    def load(name: str):
        return spark.read.format("delta").load(str(lakehouse / name))

    assert {r.path: r.status for r in load("bronze/images").collect()} == {
        f"file:{ok}": "ok", f"file:{secret}": "unreadable"}
    assert [r.path for r in load("silver/images").collect()] == [f"file:{ok}"]
    assert {(r.path, r.reason) for r in load("silver/rejects").collect()} == {
        (f"file:{secret}", "unreadable")}
