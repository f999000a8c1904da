"""Writing a tar.gz archive of in-memory members, fast.

tarfile builds every header field by field in Python, which dominated the
collector's profile for large backlogs. Here a USTAR header is a template
made once per archive, with the member's name, size and checksum put in (the
same bytes tarfile writes); only a name USTAR cannot hold (over 255 bytes, not
splittable, or not ASCII) falls back to tarfile's PAX header. Output is a
standard archive any tar reads.
"""

from __future__ import annotations

import functools
import gzip
import queue
import struct
import tarfile
import threading
from types import TracebackType
from typing import BinaryIO

BLOCK = 512
_FLUSH_AT = 1 << 20
# Where the USTAR fields that change from member to member start (or lie); the rest is one template per archive.
_NAME, _SIZE, _CHECKSUM, _PREFIX = 0, slice(124, 136), slice(148, 156), 345
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s12x")


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _split_name(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) for USTAR, or None when the name does not fit; the shortest prefix, as tarfile cuts."""
    if len(name) <= 100:
        return b"", name
    cut = name.find(b"/", 1)
    while 0 < cut <= 155:
        if len(name) - cut - 1 <= 100:
            return name[:cut], name[cut + 1 :]
        cut = name.find(b"/", cut + 1)
    return None


@functools.lru_cache(maxsize=8)
def _template(mtime: int, mode: int) -> tuple[bytes, int]:
    """A regular file's USTAR header with no name and size 0 (the checksum field blank, as summed), and its
    byte sum: tarfile's USTAR header for the same fields, byte for byte."""
    fields = [b"", _octal(mode, 8), _octal(0, 8), _octal(0, 8), b"", _octal(mtime, 12), b" " * 8, b"0"]
    header = _HEADER.pack(*fields, b"", b"ustar\0", b"00", b"", b"", b"", b"", b"")
    return header, sum(header)


def ustar_header(name: str, size: int, mtime: int, mode: int = 0o644) -> bytes:
    """The member's header: USTAR when the name fits (a template with the name, size and checksum put in:
    summing 512 bytes and packing 16 fields per member was the larger part of the packaging's own time),
    else tarfile's PAX header."""
    try:
        encoded = name.encode("ascii")
    except UnicodeEncodeError:
        split = None
    else:
        split = _split_name(encoded)
    if split is None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, mtime, mode
        return info.tobuf(tarfile.PAX_FORMAT)
    prefix, short = split
    template, template_sum = _template(mtime, mode)
    size_field = _octal(size, 12)
    header = bytearray(template)
    header[_NAME : _NAME + len(short)] = short
    header[_SIZE] = size_field
    header[_PREFIX : _PREFIX + len(prefix)] = prefix
    name_sum = sum(encoded) - (ord("/") if prefix else 0)  # the slash between prefix and name is not written
    header[_CHECKSUM] = b"%06o\0 " % (template_sum + name_sum + sum(size_field))
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
