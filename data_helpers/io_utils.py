"""Small file helpers: every artifact is written to a temporary name and renamed into place,
so a crash leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import hashlib
import json
import os
import signal


def atomic_write_text(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # Not mkstemp: its files are private (0600), and artifacts are read by servers too.
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str, obj) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


_DIGESTS: dict = {}


def file_digest(path: str | None) -> str | None:
    """sha256 of a file's bytes (None for no file); each version of a file (the same inode, size
    and modification time) is read once per process."""
    if not path:
        return None
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = _sha256(path)
    return _DIGESTS[key]


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class InjectedFault(RuntimeError):
    """Raised at a fault point named in :data:`RAISE_AT` (in-process crash tests)."""


# Names of fault points that raise InjectedFault: a test's cheap stand-in for a kill.
RAISE_AT: set = set()


def fault_point(name: str) -> None:
    """Fault injection for the crash-safety tests: TEXTCLS_KILL_AT=<name> SIGKILLs the process
    here; a name in RAISE_AT raises InjectedFault."""
    if os.environ.get("TEXTCLS_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if name in RAISE_AT:
        raise InjectedFault(name)
