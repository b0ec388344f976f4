"""The local source listing gives exactly what Spark's own listing gives.

Bronze keys every row by its path, so a listing that wrote one path differently (a
space, a ``%``, a Unicode name), kept a file Spark hides, or rounded a modification time
differently would re-ingest files or keep two rows for one file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from bronze.storage import _list_with_spark, is_hidden, list_source, walk_files
from tests.imagegen import gradient, jpeg_bytes, write


def awkward_tree(root: Path) -> dict[str, int]:
    """Files Spark lists (relative name -> length) under ``root``, plus files it hides."""
    listed = {
        "Apple Red/100% #1 ?.jpg": jpeg_bytes(gradient(seed=1)),
        "Ünïcödé/ñame ü.jpg": jpeg_bytes(gradient(seed=2)),
        "it's \"quoted\" [1]{a,b}*.png": b"not really a png",
        "deep/a/b/c/x.JPG": jpeg_bytes(gradient(seed=3)),
        "Bad/empty.jpg": b"",
        "notes.txt": b"listed: the extension filter comes later",
        "year=2024/_taken=0612.jpg": b"a '_' name holding '=' is not hidden",
        "_metadata.jpg": b"kept by Spark's rule",
    }
    hidden = {
        ".hidden.jpg": b"x",
        "_underscore.jpg": b"x",
        "_temporary/inside.jpg": b"x",
        "year=2024/_hidden.jpg": b"x",
        ".git/objects/x.jpg": b"x",
        "copy.jpg._COPYING_": b"x",
    }
    for name, content in {**listed, **hidden}.items():
        write(root / name, content)
    # A modification time with sub-millisecond digits: both must truncate it alike.
    os.utime(root / "notes.txt", ns=(1_700_000_000_123_456_789, 1_700_000_000_987_654_321))
    (root / "Links").mkdir()
    os.symlink(root / "Ünïcödé/ñame ü.jpg", root / "Links/linked.jpg")
    os.symlink(root / "deep/a", root / "Links/folder")
    os.symlink(root / "nowhere.jpg", root / "Links/dangling.jpg")
    (root / "Empty tree/a/b").mkdir(parents=True)
    sizes = {name: len(content) for name, content in listed.items()}
    sizes["Links/linked.jpg"] = sizes["Ünïcödé/ñame ü.jpg"]
    sizes["Links/folder/b/c/x.JPG"] = sizes["deep/a/b/c/x.JPG"]
    return sizes


def rows(frame) -> dict[str, tuple[datetime, int]]:
    return {r.path: (r.modificationTime, r.length) for r in frame.collect()}


def test_local_listing_equals_sparks_own(spark, tmp_path: Path) -> None:
    root = tmp_path / "a source with spaces"
    sizes = awkward_tree(root)
    local = rows(list_source(spark, str(root)))
    assert {p: length for p, (_, length) in local.items()} == {
        f"file:{root / name}": size for name, size in sizes.items()
    }
    assert local[f"file:{root / 'notes.txt'}"][0] == datetime(
        2023, 11, 14, 22, 13, 20, 987000, tzinfo=timezone.utc
    ).astimezone().replace(tzinfo=None)
    assert local == rows(_list_with_spark(spark, str(root)))
    # The same root given as a file: URI or with a trailing slash lists the same paths.
    assert rows(list_source(spark, f"file:{root}/")) == local


def test_hidden_names_follow_sparks_rule() -> None:
    assert [n for n in ("a.jpg", ".a.jpg", "_a.jpg", "a=1", "_a=1", "_metadata",
                        "_common_metadata.jpg", "a.jpg._COPYING_") if not is_hidden(n)] == [
        "a.jpg", "a=1", "_a=1", "_metadata", "_common_metadata.jpg"]



def test_a_link_back_up_the_tree_is_not_followed_forever(tmp_path: Path) -> None:
    write(tmp_path / "Plum/a.jpg", b"a")
    write(tmp_path / "Fig/b.jpg", b"bb")
    os.symlink(tmp_path, tmp_path / "Plum/loop")  # a cycle: Plum/loop/Plum/loop/...
    os.symlink(tmp_path / "Fig", tmp_path / "Plum/fig")  # no cycle: listed again
    rows, locked = walk_files(str(tmp_path))
    assert sorted((p, length) for p, _, length in rows) == [
        (str(tmp_path / "Fig/b.jpg"), 2),
        (str(tmp_path / "Plum/a.jpg"), 1),
        (str(tmp_path / "Plum/fig/b.jpg"), 2),
    ] and locked == []


def test_a_link_that_cannot_be_followed_costs_only_itself(tmp_path: Path) -> None:
    """A link into a folder without search permission is reported by its own path; the
    other files of its folder are still listed, whatever order the folder lists them in.
    Run without the right to bypass permissions (root keeps it otherwise)."""
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        write(tmp_path / "Plum" / name, b"x" * 3)
    write(tmp_path / "Locked/x.jpg", b"y")
    os.symlink(tmp_path / "Locked/x.jpg", tmp_path / "Plum/link.jpg")
    (tmp_path / "Locked").chmod(0o000)
    no_bypass = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
                 "--inh-caps", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    code = ("import json, sys; from bronze.storage import walk_files; "
            "rows, locked = walk_files(sys.argv[1]); "
            "print(json.dumps([sorted((p, n) for p, _, n in rows), locked]))")
    try:
        result = subprocess.run([*no_bypass, sys.executable, "-c", code, str(tmp_path)],
                                cwd=Path(__file__).resolve().parents[2], capture_output=True,
                                text=True, timeout=60, check=True)
    finally:
        (tmp_path / "Locked").chmod(0o755)
    rows, locked = json.loads(result.stdout)
    assert rows == [[str(tmp_path / "Plum" / n), 3] for n in ("a.jpg", "b.jpg", "c.jpg", "d.jpg")]
    assert locked == [str(tmp_path / "Locked"), str(tmp_path / "Plum/link.jpg")]
