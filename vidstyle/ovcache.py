"""OpenVINO without PyTorch: the import (without its telemetry), the process's Core, the user cache folder and
compiled blobs kept there.

Both painting paths use it: ``vidstyle.engines`` (the network converted from PyTorch) and ``vidstyle.light`` (the
network built from its weights, no PyTorch at all). Cache layout: see ``vidstyle.engines``.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from .errors import VidstyleError

log = logging.getLogger("vidstyle")

BLOBS_KEPT = 64  # compiled blobs kept on disk, newest first (a few MB each)
# How many conversions, IR loads and compilations happened in this process (tests check that the cache is used).
STATS = {"converted": 0, "quantized": 0, "loaded": 0, "compiled": 0}


def require_openvino():
    """The ``openvino`` module, or one clear VidstyleError saying how to get it.

    OpenVINO's converter (and NNCF) send usage telemetry to Google Analytics, each event from a child
    process, unless the user opted out; vidstyle never phones home. Both fall back to a silent stub
    when ``openvino_telemetry`` does not import, so it is hidden from them before openvino is first
    imported (a program that imported it itself keeps it).
    """
    sys.modules.setdefault("openvino_telemetry", None)
    try:
        import openvino
    except ImportError as e:
        raise VidstyleError(f"the OpenVINO engine needs the openvino package: pip install openvino "
                            f"({str(e).splitlines()[0][:80]})") from None
    return openvino


def cache_root() -> Path:
    """The user cache folder: ``$VIDSTYLE_CACHE``, ``$XDG_CACHE_HOME/vidstyle`` or ``~/.cache/vidstyle``."""
    if os.environ.get("VIDSTYLE_CACHE"):
        return Path(os.environ["VIDSTYLE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "vidstyle"


_core = None
_core_lock = threading.Lock()


def core():
    """The process's one ``openvino.Core``."""
    global _core
    with _core_lock:
        if _core is None:
            _core = require_openvino().Core()
        return _core


def clean_stale(folder: Path, pattern: str, age_s: float = 3600) -> None:
    now = time.time()
    for p in folder.glob(pattern):
        try:
            if now - p.stat().st_mtime > age_s:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def _prune(blobs: Path, keep: int = BLOBS_KEPT) -> None:
    """Delete the oldest compiled blobs beyond ``keep`` (one per model, size and settings)."""
    try:
        files = sorted(blobs.glob("*.blob"), key=lambda p: p.stat().st_mtime)
        for p in files[:max(0, len(files) - keep)]:
            p.unlink(missing_ok=True)
    except OSError:
        pass


def compile_cached(om, config: dict):
    """``core.compile_model(om, "CPU", config)`` with the compiled blob cached in ``openvino/blobs``.

    OpenVINO writes its blobs in place; so it gets a private staging CACHE_DIR holding links to
    the shared blobs, and any blob it makes there is renamed into the shared folder complete.
    """
    ov_core = core()
    blobs = cache_root() / "openvino" / "blobs"
    try:
        blobs.mkdir(parents=True, exist_ok=True)
        clean_stale(blobs, ".stage-*")
        stage = Path(tempfile.mkdtemp(prefix=".stage-", dir=blobs))
    except OSError as e:
        log.info("vidstyle cache: cannot use %s (%s); compiling without it", blobs, e)
        STATS["compiled"] += 1
        return ov_core.compile_model(om, "CPU", config)
    try:
        known = set()
        for p in blobs.glob("*.blob"):
            try:
                os.link(p, stage / p.name)
            except OSError:
                try:
                    shutil.copyfile(p, stage / p.name)
                except OSError:
                    continue
            known.add(p.name)
        try:
            compiled = ov_core.compile_model(om, "CPU", {**config, "CACHE_DIR": str(stage)})
        except Exception as e:  # noqa: BLE001 - a bad blob must not stop the run
            log.info("OpenVINO compile with cache failed (%s); compiling without it", str(e)[:120])
            compiled = ov_core.compile_model(om, "CPU", config)
        STATS["compiled"] += 1
        new = [p for p in stage.iterdir() if p.name not in known and p.is_file()]
        for p in new:
            try:
                os.replace(p, blobs / p.name)
            except OSError:
                pass
        if new:
            _prune(blobs)
        return compiled
    finally:
        shutil.rmtree(stage, ignore_errors=True)
