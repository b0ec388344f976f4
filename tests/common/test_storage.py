"""common/storage.py: the local file system and the object store behind one interface.

The object store's implementation goes through Hadoop's FileSystem, which also serves
``file:`` URIs: run on a local folder here, it must leave the same files as the local
implementation (the S3 run of every layer is in tests/cluster/test_s3.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.storage import LOCAL, OBJECT_STORE, LockBusy, storage_of


@pytest.mark.parametrize("uri, expected", [
    ("s3a://bucket/lakehouse", OBJECT_STORE), ("hdfs://nn:8020/x", OBJECT_STORE),
    ("/data/lakehouse", LOCAL), ("file:/data/lakehouse", LOCAL), ("file:///data/x", LOCAL),
    ("relative/folder", LOCAL),
])
def test_the_storage_is_chosen_from_the_uri(uri: str, expected: object) -> None:
    assert storage_of(uri) is expected


def test_paths_become_the_uris_spark_writes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert LOCAL.absolute("photos") == str(tmp_path / "photos")
    assert LOCAL.uri(LOCAL.absolute("file:photos")) == f"file:{tmp_path}/photos"
    assert LOCAL.uri(str(tmp_path)) == f"file:{tmp_path}"
    assert OBJECT_STORE.absolute("s3a://b/photos") == "s3a://b/photos"
    assert OBJECT_STORE.uri("s3a://b/photos") == "s3a://b/photos"
    assert LOCAL.model_cache("/lh") == Path("/lh/models")
    assert OBJECT_STORE.model_cache("s3a://b/lh") is None
    assert LOCAL.direct and LOCAL.locks and not OBJECT_STORE.direct and not OBJECT_STORE.locks


@pytest.mark.parametrize("storage", [LOCAL, OBJECT_STORE], ids=["local", "object-store"])
def test_small_files_listing_and_publishing(spark, tmp_path: Path, storage) -> None:
    root = f"file:{tmp_path}" if storage is OBJECT_STORE else str(tmp_path)
    assert storage.read_text(spark, f"{root}/none.txt") is None
    assert storage.list_names(spark, f"{root}/no-folder") is None
    assert not storage.exists(spark, f"{root}/a/latest")

    storage.write_text(spark, f"{root}/a/latest", "v1")
    storage.write_text(spark, f"{root}/a/latest", "v2 ünïcode")  # replaced
    assert storage.read_text(spark, f"{root}/a/latest") == "v2 ünïcode"
    assert storage.exists(spark, f"{root}/a/latest")
    # No temporary file is left beside it (Hadoop's local checksum files aside).
    assert [p.name for p in (tmp_path / "a").iterdir() if not p.name.endswith(".crc")] == ["latest"]

    report = tmp_path / "report"
    report.mkdir()
    (report / "figure.png").write_bytes(b"\x89PNG...")
    (report / "metrics.json").write_text('{"k": 3}')
    storage.publish(spark, report, f"{root}/published/pca")
    published = tmp_path / "published" / "pca"
    assert (published / "figure.png").read_bytes() == b"\x89PNG..."
    assert (published / "metrics.json").read_text() == '{"k": 3}'
    names = storage.list_names(spark, f"{root}/published/pca")
    assert sorted(n for n in names if not n.endswith(".crc")) == ["figure.png", "metrics.json"]


def test_a_local_lock_held_by_another_process_names_it(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from common.storage import LOCAL\n"
         f"with LOCAL.lock({str(tmp_path)!r}, 'gold'):\n"
         "    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy, match=f"pid {holder.pid}"):
            with LOCAL.lock(str(tmp_path), "gold", wait=False):
                pass
        with LOCAL.lock(str(tmp_path), "silver", wait=False):  # another name: free
            pass
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10
    while True:  # the kernel releases a killed holder's lock
        try:
            with LOCAL.lock(str(tmp_path), "gold", wait=False):
                break
        except LockBusy:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    with OBJECT_STORE.lock("s3a://b/lh/_locks", "gold", wait=False):
        pass  # no lock on an object store: nothing to hold, nothing raised
