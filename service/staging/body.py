"""The body as received: what the API writes to disk of each chunk of a request body, as it streams in."""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Iterator

from service.errors import BadRequestError, PayloadTooLargeError
from service.staging.formats import UploadFormat

logger = logging.getLogger("stockyard.staging")

_BYTE_ORDER_MARK = b"\xef\xbb\xbf"

_BLANK_LINES = re.compile(rb"\n\n+")

_INFLATE_STEP = 1 << 20

_GZIP_WINDOW = 16 + zlib.MAX_WBITS


class BodyDecoder:
    """What the API writes to disk of each chunk of a request body, as it streams in.

    A gzip body (Content-Encoding: gzip, one or more members) is inflated a bounded step at a time, and
    PayloadTooLargeError is raised as soon as its inflated size passes `limit`: a small body never
    becomes a large one in memory. NDJSON and CSV lose a leading byte-order mark and have their line
    endings made "\\n" (CR LF and a lone CR too), which DuckDB's reader needs; CSV also loses its blank
    lines (inside a quoted value as well), so that its record numbers are exact.
    """

    def __init__(self, limit: int, *, gzip: bool, upload_format: UploadFormat) -> None:
        self.limit = limit
        self.size = 0
        self._inflater = zlib.decompressobj(_GZIP_WINDOW) if gzip else None
        self._text = upload_format in (UploadFormat.NDJSON, UploadFormat.CSV)
        self._drop_blank_lines = upload_format is UploadFormat.CSV
        self._held = b""  # the start of the body until a byte-order mark can be told, or a CR that an LF may follow
        self._started = False
        self._at_line_start = True

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        for piece in self._inflate(chunk):
            yield self._normalize(piece, final=False)

    def finish(self) -> bytes:
        if self._inflater is not None and not self._inflater.eof:
            raise BadRequestError("body is not valid gzip: the compressed stream is cut short")
        return self._normalize(b"", final=True)

    def _count(self, size: int) -> None:
        self.size += size
        if self.size > self.limit:
            raise PayloadTooLargeError(f"the uncompressed body is larger than the limit of {self.limit} bytes")

    def _inflate(self, data: bytes) -> Iterator[bytes]:
        if self._inflater is None:
            self._count(len(data))
            yield data
            return
        while True:
            if self._inflater.eof and data:  # the next member of a multi-member gzip body
                self._inflater = zlib.decompressobj(_GZIP_WINDOW)
            try:
                piece = self._inflater.decompress(data, _INFLATE_STEP)
            except zlib.error as error:
                raise BadRequestError(f"body is not valid gzip: {error}") from None
            data = self._inflater.unused_data if self._inflater.eof else self._inflater.unconsumed_tail
            self._count(len(piece))
            if piece:
                yield piece
            if not data and len(piece) < _INFLATE_STEP:  # a full step may leave output inside zlib
                return

    def _normalize(self, data: bytes, *, final: bool) -> bytes:
        if not self._text:
            return data
        data, self._held = self._held + data, b""
        if not self._started:
            if len(data) < len(_BYTE_ORDER_MARK) and not final:
                self._held = data
                return b""
            self._started = True
            data = data.removeprefix(_BYTE_ORDER_MARK)
        if data.endswith(b"\r") and not final:
            self._held, data = b"\r", data[:-1]
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._drop_blank_lines:
            data = _BLANK_LINES.sub(b"\n", data)
            if self._at_line_start:
                data = data.lstrip(b"\n")
            if data:
                self._at_line_start = data.endswith(b"\n")
        return data
