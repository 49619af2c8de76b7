"""Safe files: what every output of vidstyle goes through before and while it is written.

* ``check_target``: refuse an output that is the input, a folder, in a missing or read-only folder, or that
  exists without ``overwrite``;
* ``AtomicPath``: a hidden, locked temporary file beside the target (``.NAME.partial-PID-XXXXXXXX.SUFFIX``),
  renamed over it at the end with the permissions a new file would get; ``atomic_write_bytes``/``_text`` for
  small files;
* ``remove_stale_partials``: the partial files a killed run left, removed by the next run to the same target.

Video files, model files, images, checkpoints, exports and manifests all use these.
"""
from __future__ import annotations

import glob
import logging
import os
import re
import tempfile
import time
import weakref
from pathlib import Path

from ..errors import VidstyleError, overwrite_switch
from .protocols import is_url, local_path

try:
    import fcntl
except ImportError:  # not POSIX: partial files are judged by their PID only
    fcntl = None

log = logging.getLogger("vidstyle")


def same_file(src: str, dst: Path) -> bool:
    """Whether the input ``src`` (a path, or FFmpeg's ``file:`` path) is the file ``dst``.

    Links count: ``os.path.samefile`` when both exist, resolved paths otherwise. URLs (``is_url``) never match.
    """
    if is_url(src):
        return False
    src = local_path(src)
    if os.path.exists(src) and dst.exists():
        return os.path.samefile(src, dst)
    return Path(src).resolve() == dst.resolve()


def check_target(dst: Path, overwrite: bool, src: str | None = None) -> None:
    """Refuse what would fail late or destroy data: same file as input, existing file, missing folder."""
    if src is not None and same_file(src, dst):
        raise VidstyleError(f"the output would overwrite the input: {dst}")
    if dst.is_dir():
        raise VidstyleError(f"output is a directory: {dst}")
    if not dst.parent.is_dir():
        raise VidstyleError(f"output folder does not exist: {dst.parent}")
    if not os.access(dst.parent, os.W_OK):
        raise VidstyleError(f"no permission to write in {dst.parent}")
    if dst.exists() and not overwrite:
        raise VidstyleError(f"{dst} exists; pass {overwrite_switch.get()} to replace it")


# -- partial files -------------------------------------------------------------
STALE_AFTER = 10 * 60  # seconds untouched after which an unlocked partial file of a running PID is stale


def _partial_prefix(dst: Path) -> str:
    return f".{dst.stem}.partial-"


def _umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def pid_running(pid: int) -> bool:
    """Whether a process with this id exists (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _locked(path: Path) -> bool | None:
    """Whether a process holds the lock of a partial file: True, False, or None when it cannot be told."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)


def _is_stale(path: Path, pid: int) -> bool:
    """A partial file is stale when no process holds its lock and its writer is gone or it has sat untouched."""
    if pid == os.getpid():
        return False
    locked = _locked(path)
    if locked:
        return False
    if not pid_running(pid):
        return True
    try:
        old = time.time() - path.stat().st_mtime > STALE_AFTER
    except OSError:
        return False
    return locked is False and old


def remove_stale_partials(dst: Path, wait: float = 0.0) -> list[Path]:
    """Delete the partial files that killed runs left for ``dst``; returns the paths removed.

    Only hidden files named exactly like this module's partial files for this very target
    (``.NAME.partial-PID-XXXXXXXX.SUFFIX``) are considered, and only stale ones are removed.
    ``wait``: seconds to wait for writers that are being stopped (a cancelled Ray task) to be gone.
    """
    dst = Path(dst)
    name = re.compile(re.escape(_partial_prefix(dst)) + r"(\d+)-[a-z0-9_]{8}" + re.escape(dst.suffix))
    removed = []
    deadline = time.monotonic() + wait
    while True:
        left = []
        for p in dst.parent.glob(glob.escape(_partial_prefix(dst)) + "*"):
            m = name.fullmatch(p.name)
            if not (m and p.is_file() and not p.is_symlink()):
                continue
            if not _is_stale(p, int(m.group(1))):
                left.append(p)
                continue
            try:
                p.unlink()
            except OSError:
                continue
            removed.append(p)
            log.info("removed %s, left by a run that was killed", p)
        if not left or time.monotonic() >= deadline:
            return removed
        time.sleep(0.1)


def _drop(tmp: Path, fd: int) -> None:
    """Remove a partial file and release its lock."""
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


class AtomicPath:
    """A hidden temporary file beside ``dst`` that becomes ``dst`` on commit.

    The name, ``.NAME.partial-PID-XXXXXXXX.SUFFIX``, is made by ``tempfile.mkstemp`` (created
    exclusively, not guessable) and keeps the suffix, so muxers are chosen right. The file is
    locked until commit or discard, so that a later run can tell the leftovers of a killed run
    (removed when an AtomicPath for the same target is made) from a file being written.
    It is removed when the object goes away uncommitted, at the latest at interpreter exit.
    """

    def __init__(self, dst: Path):
        self.dst = Path(dst)
        remove_stale_partials(self.dst)
        fd, name = tempfile.mkstemp(prefix=f"{_partial_prefix(self.dst)}{os.getpid()}-", suffix=self.dst.suffix,
                                    dir=self.dst.parent)
        self.tmp = Path(name)
        self._fd = fd
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a file system without locks: the PID in the name still protects it
                pass
        self._cleanup = weakref.finalize(self, _drop, self.tmp, fd)

    def commit(self) -> None:
        """Move the finished file to the target, with the permissions a new file would get."""
        os.chmod(self.tmp, 0o666 & ~_umask())
        os.replace(self.tmp, self.dst)
        if self._cleanup.detach() is not None:
            os.close(self._fd)

    def discard(self) -> None:
        """Remove the temporary file; the target is left as it was. Safe to call more than once."""
        self._cleanup()

    def __enter__(self) -> "AtomicPath":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Commit when the block ends normally, discard when it raises."""
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through an ``AtomicPath``, synced to disk before the rename."""
    with AtomicPath(path) as atomic:
        with open(atomic.tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """``atomic_write_bytes`` for UTF-8 text (manifests, JSON sidecars)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_file(tensors: dict, filename: str, metadata: dict | None = None) -> None:
    """safetensors' ``save_file`` for torch tensors, or for NumPy arrays (then without importing PyTorch)."""
    import numpy as np

    if all(isinstance(v, np.ndarray) for v in tensors.values()):
        from safetensors.numpy import save_file as save
    else:
        from safetensors.torch import save_file as save
    save(tensors, filename, metadata=metadata)


def write_safetensors(path: Path, tensors: dict, meta: dict) -> Path:
    """``save_file`` to a temporary file beside ``path`` that then replaces it: never half a model file.
    ``tensors``: torch tensors, or NumPy arrays (no PyTorch needed then)."""
    atomic = AtomicPath(path)
    try:
        save_file(tensors, str(atomic.tmp), metadata=meta)
        atomic.commit()
    except BaseException:
        atomic.discard()
        raise
    return path
