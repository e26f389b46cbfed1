"""Writing output files: atomically, with the permissions an ordinary ``open(path, "w")`` gives."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def _umask() -> int:
    # /proc gives the umask without changing it; os.umask must set one to read it, which for that
    # moment would give other threads' new files mode 0o666 (Linux before 4.7 and other systems).
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """``path`` as a Path if a file can be written there, else an OSError naming it (before any work)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; give a file name")
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {path}: the folder {folder} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"{what} {path} exists and is not writable")
    return path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    The file ends with the mode ``open(path, "w")`` would give: an existing file's mode, else
    0o666 less the umask (``mkstemp`` alone would leave 0o600).
    """
    path = check_writable(path)
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
