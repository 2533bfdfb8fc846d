"""Attachments as downloads, for the pages and the API alike: never shown inline, whatever
type they claim, with a file name that cannot break the header."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from starlette.responses import Response

from exobot.core.model import AttachmentInfo

_UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9._ ()+-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the real one RFC 5987-encoded."""
    name = _CONTROL.sub("", filename or "").replace("/", "_").replace("\\", "_").strip()
    name = name.strip(".")[:200] or "attachment"
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    fallback = _UNSAFE_ASCII.sub("_", folded).strip(" ._") or "attachment"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def download(attachment: AttachmentInfo) -> Response:
    """The attachment's bytes as `application/octet-stream`, to be saved, not displayed."""
    return Response(
        attachment.data,
        media_type="application/octet-stream",
        headers={
            "content-disposition": content_disposition(attachment.filename),
            "x-content-type-options": "nosniff",
            "cache-control": "no-store",
        },
    )
