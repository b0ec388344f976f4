"""Silver's images read by gold's Python workers straight from silver's Parquet files.

Gold needs each pending silver row's 150 KB image in a Python worker. Through Spark, the
JVM reads and decompresses the image column, copies each image several times (Parquet
page, column vector, row, Arrow buffer) and sends it over a socket to the worker: about
half of what the driver JVM allocated in a gold run (Java Flight Recorder), CPU taken
from the two workers that run the model. With ``gold.image_reader: workers`` the JVM
reads only the small columns (the keys, the label) and hands each worker the key and the
silver file of each row (``_metadata.file_path``, which Delta's scan exposes); the worker
reads that file's image column itself with pyarrow, one row group at a time, in the
order the rows come (the scan's order), and keeps at most ``WINDOW_ROWS`` decoded
images.

Which rows are featurized is still decided by Spark and Delta (the pinned snapshot, the
key comparison, deletion vectors; or the files silver's log shows appended since gold's
last run, :func:`common.incremental.changes_from_log`): the worker only looks up, in a
file of that snapshot, the image of a key it was given. Each silver file is written by one append, so a key is
in it once. A key not found raises :class:`SilverFileError` (the file is not what the
snapshot said: changed under the run).

Local files only (``file:`` URIs and plain paths): on an object store the JVM reads the
images, with Hadoop's credentials and retries (``auto`` picks that there).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from urllib.parse import unquote, urlparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common.tables import IMAGE_SIZE

# Decoded images kept per worker (at most 256 x 150 KB = 38 MB): rows are read from a
# row group in slices of this many; silver's 2 MB row groups hold ~80-300 images. Reading
# 3,000 images of one bench silver file (groups of ~110 rows) this way: 0.06-0.07 ms an
# image with slices of 64 or 256 rows.
WINDOW_ROWS = 256
_PIXELS = IMAGE_SIZE * IMAGE_SIZE * 3


class SilverFileError(RuntimeError):
    """A silver file does not hold a row the snapshot said it holds."""


def local_file(uri: str) -> str:
    """The local path of a ``file:`` URI as Spark gives it (percent-encoded) or a path."""
    if "://" in uri or uri.startswith("file:"):
        parsed = urlparse(uri)
        if parsed.scheme not in ("", "file"):
            raise SilverFileError(f"{uri}: gold's workers read local silver files only")
        return unquote(parsed.path)
    return uri


class SilverImages:
    """One worker's reader: the images of given keys, from one silver file at a time.

    The first request for a file indexes its keys (``path``, ``content_hash``: small
    columns) by row group and row. Images are then read from the row group of each key
    in slices of ``window`` rows, moving forward; a key behind the current slice (not the
    scan's order) restarts that row group's reading.
    """

    def __init__(self, window: int = WINDOW_ROWS) -> None:
        self.window = window
        self._uri: str | None = None
        self._file: pq.ParquetFile | None = None
        self._index: dict[tuple[str, str | None], tuple[int, int]] = {}
        self._group = -1
        self._slices: Iterator[pa.RecordBatch] | None = None
        self._first = 0  # row (within the group) of the slice's first image
        self._slice: pa.BinaryArray | None = None
        self._offsets = np.zeros(1, np.int32)
        self._data = np.empty(0, np.uint8)
        self.row_groups_read = 0

    def pixels(self, uri: str, paths: Sequence[str], hashes: Sequence[str | None],
               out: np.ndarray | None = None) -> np.ndarray:
        """uint8 (n, 224, 224, 3): the images of the keys ``zip(paths, hashes)`` in ``uri``."""
        self._open(uri)
        if out is None:
            out = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        flat = out.reshape(len(paths), _PIXELS)
        for i, key in enumerate(zip(paths, hashes)):
            where = self._index.get(key)
            if where is None:
                raise SilverFileError(
                    f"silver file {uri} holds no row {key[0]!r} (content_hash {key[1]!r}): "
                    "it changed under this run; run gold again")
            image = self._image(*where)
            if len(image) != _PIXELS:
                raise SilverFileError(
                    f"silver row {key[0]!r} in {uri} has {len(image)} image bytes, not "
                    f"{_PIXELS} (224x224 RGB)")
            flat[i] = image
        return out

    def _close(self) -> None:
        # The reader of the row group being left, and its decoded slice.
        if self._slices is not None:
            self._slices.close()
        self._slices, self._slice = None, None

    def _open(self, uri: str) -> None:
        if uri == self._uri:
            return
        local = local_file(uri)
        # The keys through a handle of their own: pyarrow 21's ParquetFile, once it has
        # read row groups with read_row_group, kept ~20 MB more for each row group it then
        # read with iter_batches (1.7 GB after a 10,000-image file; 0.2 GB apart).
        keys = pq.ParquetFile(local)
        index = {}
        for group in range(keys.metadata.num_row_groups):
            table = keys.read_row_group(group, columns=["path", "content_hash"])
            for row, key in enumerate(zip(table.column(0).to_pylist(),
                                          table.column(1).to_pylist())):
                index[key] = (group, row)
        handle = pq.ParquetFile(local)
        self._close()
        self._uri, self._file, self._index, self._group = uri, handle, index, -1

    def _image(self, group: int, row: int) -> np.ndarray:
        if group != self._group or row < self._first:
            self._close()
            self._group, self._first = group, 0
            self._slices = self._file.iter_batches(
                batch_size=self.window, row_groups=[group], columns=["image"],
                use_threads=False)
            self.row_groups_read += 1
        while self._slice is None or row >= self._first + len(self._offsets) - 1:
            if self._slice is not None:
                self._first += len(self._offsets) - 1
            self._slice = next(self._slices).column(0)
            # The slice's bytes and offsets as NumPy views: an image is a view of the
            # bytes, no copy. (pyarrow's per-value scalars, ``column[i].as_buffer()``,
            # kept every image's 150 KB alive: 1.5 GB after a 10,000-image file.)
            width = np.int64 if pa.types.is_large_binary(self._slice.type) else np.int32
            _, offsets, data = self._slice.buffers()
            self._offsets = np.frombuffer(offsets, dtype=width)[
                self._slice.offset : self._slice.offset + len(self._slice) + 1]
            self._data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(
                0, np.uint8)
        at = row - self._first
        return self._data[self._offsets[at] : self._offsets[at + 1]]
