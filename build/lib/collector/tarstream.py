"""Writing a tar.gz archive of in-memory members, fast.

tarfile builds every header field by field in Python, which dominated the
collector's profile for large backlogs. Here a USTAR header is one
struct.pack; only a name USTAR cannot hold (over 255 bytes, not splittable,
or not ASCII) falls back to tarfile's PAX header. Output is a standard
archive any tar reads.
"""

from __future__ import annotations

import gzip
import queue
import struct
import tarfile
import threading
from types import TracebackType
from typing import BinaryIO

BLOCK = 512
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s12x")
_FLUSH_AT = 1 << 20


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _split_name(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) for USTAR, or None when the name does not fit."""
    if len(name) <= 100:
        return b"", name
    cut = name.rfind(b"/", 0, 156)
    while cut > 0:
        if len(name) - cut - 1 <= 100:
            return name[:cut], name[cut + 1 :]
        cut = name.rfind(b"/", 0, cut)
    return None


def ustar_header(name: str, size: int, mtime: int, mode: int = 0o644) -> bytes:
    try:
        split = _split_name(name.encode("ascii"))
    except UnicodeEncodeError:
        split = None
    if split is None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, mtime, mode
        return info.tobuf(tarfile.PAX_FORMAT)
    prefix, short = split
    fields = [
        short,
        _octal(mode, 8),
        _octal(0, 8),
        _octal(0, 8),
        _octal(size, 12),
        _octal(mtime, 12),
        b" " * 8,
        b"0",
        b"",
        b"ustar\0",
        b"00",
        b"",
        b"",
        _octal(0, 8),
        _octal(0, 8),
        prefix,
    ]
    header = bytearray(_HEADER.pack(*fields))
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


class TarGzWriter:
    """`add(name, data)` members, then close; writes through gzip in ~1 MiB chunks.

    Compression runs on its own thread (zlib releases the GIL), so reading the
    next files overlaps compressing the previous ones.
    """

    def __init__(self, out: BinaryIO, compresslevel: int = 6, mtime: int = 0) -> None:
        self._gzip = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=compresslevel, mtime=mtime)
        self._buffer = bytearray()
        self._mtime = mtime
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._compressor = threading.Thread(target=self._compress, name="tar-gzip", daemon=True)
        self._compressor.start()

    def _compress(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            if self._error is None:
                try:
                    self._gzip.write(chunk)
                except BaseException as exc:
                    self._error = exc

    def add(self, name: str, data: bytes) -> None:
        self._buffer += ustar_header(name, len(data), self._mtime)
        self._buffer += data
        self._buffer += b"\0" * (-len(data) % BLOCK)
        if len(self._buffer) >= _FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        self._chunks.put(bytes(self._buffer))
        self._buffer.clear()

    def close(self) -> None:
        """Finish the archive; raises what compressing or writing raised (ENOSPC, say)."""
        self._buffer += b"\0" * (2 * BLOCK)
        self._flush()
        self._chunks.put(None)
        self._compressor.join()
        if self._error is not None:
            raise self._error
        self._gzip.close()

    def __enter__(self) -> TarGzWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
