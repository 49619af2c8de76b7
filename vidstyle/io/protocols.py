"""What an input names, and which inputs may be opened: local files (also ``file:PATH``), URLs, FFmpeg protocols.

``input_protocol``/``is_url``/``local_path`` tell a URL from a local file the way FFmpeg does; ``open_container``
opens either with a protocol whitelist (a URL may use the network protocols, a file only the file ones, and
``allow_protocols`` widens it), turning every failure into one line.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import av

from ..errors import VidstyleError

# What a URL input may use: the protocols named by the URL and those FFmpeg opens for them inside
# (tcp and tls under http(s) and rtmp(s), udp and rtp under rtsp, crypto and data in HLS playlists).
NETWORK_PROTOCOLS = ("http", "https", "tls", "tcp", "udp", "rtp", "rtmp", "rtmps", "rtsp", "srt", "hls",
                     "crypto", "data", "httpproxy")
# What a local file may use ("crypto" for an encrypted HLS playlist on disk).
LOCAL_PROTOCOLS = ("file", "crypto")


def input_protocol(src: str) -> str | None:
    """The FFmpeg protocol that ``src`` names ('https', 'concat', 'subfile', 'file', ...), or None for a local path.

    FFmpeg's own rule: a name before ':' is a protocol, and so is ``subfile,`` (its options come before
    the ':'); any other name before ',' is part of a file name. An existing file wins, and one letter is
    a Windows drive, not a protocol. ``is_url`` and ``local_path`` say what the answer means.
    """
    m = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", src) or re.match(r"(subfile),.*:", src, re.S)
    if m is None or len(m.group(1)) == 1 or Path(src).exists():
        return None
    return m.group(1).lower()


def is_url(src: str | Path) -> bool:
    """Whether ``src`` is read through a protocol (``https://...``, ``concat:a|b``, ``subfile,...``), not a local file.

    The one test of "URL or local file" for inputs: ``file:x.mp4`` and ``C:/x.mp4`` are local files, and so is
    an existing file whatever its name (``concat:a.mp4`` on disk).
    """
    return input_protocol(str(src)) not in (None, "file")


def local_path(src: str | Path) -> str:
    """The path of a local input: ``src`` without FFmpeg's ``file:`` prefix (anything else unchanged)."""
    s = str(src)
    return s[len("file:"):] if input_protocol(s) == "file" else s


def _allowed_protocols(url: bool, extra: Iterable[str]) -> set[str]:
    """The whitelist for a URL or a local file (``is_url``), widened by ``extra``."""
    base = NETWORK_PROTOCOLS if url else LOCAL_PROTOCOLS
    return set(base) | {p.strip().lower() for p in extra if p.strip()}


def open_container(src: str | Path, allow_protocols: Iterable[str] = ()):
    """av.open with the user-facing checks: missing file, folder, not a media file, protocol not allowed.

    ``allow_protocols`` adds FFmpeg protocols to the whitelist (e.g. ``["concat", "file"]``).
    """
    s = str(src)
    url = is_url(s)
    allowed = _allowed_protocols(url, allow_protocols)
    if not url:
        p = Path(local_path(s))
        if not p.exists():
            raise VidstyleError(f"input not found: {s}")
        if p.is_dir():
            raise VidstyleError(f"input is a directory, not a video file: {s}")
        target = f"file:{p}"  # never read a path such as 'concat:x' as a protocol
    else:
        protocol = input_protocol(s)
        if protocol not in allowed:
            raise VidstyleError(f"input protocol {protocol!r} is not allowed ({s}); allowed: "
                                f"{', '.join(sorted(allowed))}")
        target = s
    try:
        return av.open(target, mode="r", container_options={"protocol_whitelist": ",".join(sorted(allowed))},
                       timeout=(10.0, 10.0) if url else None)
    except av.error.FFmpegError as e:
        raise VidstyleError(f"cannot read {s}: not a video file FFmpeg understands ({e.strerror or e})") from None
