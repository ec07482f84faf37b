"""Which versions of which models are loaded, following TensorFlow Serving's rules.

- :class:`ModelSource` watches one model's ``base_path`` (``<base>/<int version>/saved_model.pb``,
  as train.py exports) and loads the versions its policy asks for: ``latest`` N (the N newest
  that load), ``specific`` versions, or ``all``. A version that fails to load is logged once and
  not retried until its files change, and never replaces a working one: with ``latest`` the
  next newest version that loads is served instead.
- :class:`ModelManager` holds the sources of every configured model, answers handlers'
  lookups (name, version or label -> :class:`~serving.servable.Servable`; status), and applies
  a changed model config (models added, removed, given another policy or labels). A change that
  cannot be applied (a label naming a version that is not available) is logged and the old
  config keeps serving.

:meth:`ModelManager.poll` does the file-system work (blocking: the server calls it from its
loader thread). Handlers only read dictionaries that polling replaces whole, so they need no lock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from serving.errors import ServingError, not_found, one_line
from serving.model_config import ConfigError, ModelEntry
from serving.servable import Servable

log = logging.getLogger("textcls.serve")


class NoLoadableVersion(RuntimeError):
    """A model's base path holds no version that loads."""


def _folder_signature(path: str):
    """What changes when a version folder's files change (to retry a failed load only then)."""
    sig = []
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.stat(os.path.join(root, f))
            except OSError:
                continue
            sig.append((os.path.relpath(os.path.join(root, f), path), st.st_size, st.st_mtime_ns))
    return tuple(sorted(sig))


def _versions(base_path: str) -> list[int]:
    from predictors.export import export_versions

    return export_versions(base_path)


class ModelSource:
    """The loaded versions of one model, kept to its version policy by :meth:`poll`."""

    def __init__(self, entry: ModelEntry, on_event: Callable[[str, int, str], None] | None = None):
        self.entry = entry
        self.servables: dict[int, Servable] = {}  # replaced whole, never mutated in place
        self._failed: dict[int, tuple] = {}  # version -> folder signature when it failed
        self.states: dict[int, tuple[str, str, str]] = {}  # version -> (state, error_code, message)
        self._on_event = on_event or (lambda model, version, event: None)
        self._warned: set = set()

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def base_path(self) -> str:
        return self.entry.base_path

    def latest(self) -> Servable | None:
        s = self.servables
        return s[max(s)] if s else None

    def _load(self, version: int) -> Servable | None:
        path = os.path.join(self.base_path, str(version))
        try:
            if self._failed.get(version) == _folder_signature(path):
                return None
            t = time.perf_counter()
            self.states[version] = ("LOADING", "OK", "")
            servable = Servable(self.name, version, path)
        except Exception as e:  # noqa: BLE001 - a broken export: log it, keep what we have
            self._failed[version] = _folder_signature(path)
            self.states[version] = ("END", "UNKNOWN", one_line(e))
            keep = f"; still serving version(s) {sorted(self.servables)}" if self.servables else ""
            log.error("model %s: version %d at %s failed to load: %s%s (not retried until its files change)",
                      self.name, version, path, one_line(e), keep)
            self._on_event(self.name, version, "load_failed")
            return None
        self._failed.pop(version, None)
        self.states[version] = ("AVAILABLE", "OK", "")
        log.info("model %s: loaded version %d from %s in %.1f s", self.name, version, path, time.perf_counter() - t)
        self._on_event(self.name, version, "loaded")
        return servable

    def poll(self) -> bool:
        """One look at the file system; True when the set of loaded versions changed."""
        try:
            on_disk = _versions(self.base_path)
        except OSError as e:
            log.error("model %s: cannot list %s: %s", self.name, self.base_path, e)
            return False
        kind, arg = self.entry.policy
        loaded = dict(self.servables)
        keep: dict[int, Servable] = {}
        if kind == "latest":
            for v in sorted(on_disk, reverse=True):
                if len(keep) >= arg:
                    break
                s = loaded.get(v) or self._load(v)
                if s is not None:
                    keep[v] = s
        else:
            wanted = on_disk if kind == "all" else [v for v in arg if v in on_disk]
            if kind == "specific":
                for v in arg:
                    if v not in on_disk and ("missing", v) not in self._warned:
                        log.warning("model %s: version %d (model_version_policy specific) is not under %s",
                                    self.name, v, self.base_path)
                        self._warned.add(("missing", v))
            for v in wanted:
                s = loaded.get(v) or self._load(v)
                if s is not None:
                    keep[v] = s
        if not keep and loaded:  # nothing on disk loads any more: keep serving what we have
            if "kept" not in self._warned:
                log.warning("model %s: no version under %s loads now; still serving version(s) %s",
                            self.name, self.base_path, sorted(loaded))
                self._warned.add("kept")
            return False
        self._warned.discard("kept")
        if keep.keys() == loaded.keys():
            return False
        self.servables = keep
        for v in loaded.keys() - keep.keys():
            self.states[v] = ("END", "OK", "")
            self._on_event(self.name, v, "unloaded")
        log.info("model %s: now serving version(s) %s%s", self.name, sorted(keep),
                 f" (unloaded {sorted(loaded.keys() - keep.keys())})" if loaded.keys() - keep.keys() else "")
        return True


class ModelManager:
    """Every configured model's :class:`ModelSource`, and the lookups handlers make."""

    def __init__(self, entries: list[ModelEntry], poll_seconds: float = 2.0,
                 on_event: Callable[[str, int, str], None] | None = None):
        self.poll_seconds = float(poll_seconds)
        self._on_event = on_event
        self.sources: dict[str, ModelSource] = {e.name: ModelSource(e, on_event) for e in entries}
        self._lock = threading.Lock()

    @classmethod
    def single(cls, name: str, base_path: str, poll_seconds: float = 2.0, **kw) -> "ModelManager":
        """One model, the newest version that loads (``--model_name`` / ``--model_base_path``)."""
        return cls([ModelEntry(name, base_path)], poll_seconds, **kw)

    def set_event_hook(self, on_event: Callable[[str, int, str], None]) -> None:
        self._on_event = on_event
        for s in self.sources.values():
            s._on_event = on_event

    # ---- loading --------------------------------------------------------------------------------
    def load_initial(self) -> None:
        """Load every model; NoLoadableVersion naming the first model with nothing that loads,
        ConfigError for a version label that names a version that is not available."""
        for src in self.sources.values():
            self._load_source(src)
        for src in self.sources.values():
            self._check_labels(src.entry, src)

    @staticmethod
    def _load_source(src: ModelSource) -> None:
        base = src.base_path
        if not os.path.isdir(base):
            raise NoLoadableVersion(f"model {src.name}: {base}: no such directory")
        if not _versions(base):
            raise NoLoadableVersion(f"model {src.name}: {base}: no version folders (<int>/saved_model.pb); "
                                    "export one first with train.py")
        src.poll()
        if not src.servables:
            tried = ", ".join(f"{v} ({src.states[v][2]})" for v in sorted(src._failed, reverse=True))
            raise NoLoadableVersion(f"model {src.name}: {base}: no version loads; tried {tried or 'none of the policy versions'}")

    @staticmethod
    def _check_labels(entry: ModelEntry, src: ModelSource) -> None:
        for label, version in entry.labels:
            if version not in src.servables:
                raise ConfigError(f"model {entry.name}: version label {label!r} names version {version}, which is not "
                                  f"available (available: {sorted(src.servables)})")

    def poll(self) -> bool:
        """One look at every model's files; True when any model's loaded versions changed."""
        with self._lock:
            changed = False
            for src in list(self.sources.values()):
                changed |= src.poll()
            return changed

    def apply_config(self, entries: list[ModelEntry]) -> None:
        """Serve a new model config: new models are loaded, removed ones dropped, changed policies
        and labels take effect. Raises (and changes nothing) when the new config cannot be served."""
        with self._lock:
            new: dict[str, ModelSource] = {}
            for e in entries:
                old = self.sources.get(e.name)
                if old is not None and old.entry.base_path == e.base_path:
                    src = ModelSource(e, self._on_event)
                    src.servables, src.states, src._failed = dict(old.servables), dict(old.states), dict(old._failed)
                else:
                    src = ModelSource(e, self._on_event)
                try:
                    self._load_source(src) if not src.servables else src.poll()
                except NoLoadableVersion as err:
                    raise ConfigError(str(err)) from None
                self._check_labels(e, src)
                new[e.name] = src
            removed = self.sources.keys() - new.keys()
            self.sources = new
        for name in sorted(removed):
            log.info("model %s: removed from the model config; unloaded", name)

    # ---- what handlers ask ----------------------------------------------------------------------
    def source(self, name: str) -> ModelSource:
        src = self.sources.get(name)
        if src is None or not src.servables:
            raise not_found(f"Could not find any versions of model {name}")
        return src

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request names: a version, a version label, or (neither) the newest."""
        src = self.sources.get(name)
        servables = src.servables if src else {}
        if label is not None:
            labels = src.entry.label_map if src else {}
            if label not in labels:  # TensorFlow Serving's code and words for it
                raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
            version = labels[label]
        if version is None:
            if not servables:
                raise not_found(f"Servable not found for request: Latest({name})")
            return servables[max(servables)]
        s = servables.get(version)
        if s is None:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return s

    def status(self, name: str, version: int | None = None) -> list[tuple[int, tuple[str, str, str]]]:
        """[(version, (state, error_code, message))]: the loaded versions, newest first, or the
        one asked for (any state it reached)."""
        src = self.sources.get(name)
        if src is None or not src.states:
            raise not_found(f"Could not find any versions of model {name}")
        if version is None:
            if not src.servables:
                raise not_found(f"Could not find any versions of model {name}")
            return [(v, src.states.get(v, ("AVAILABLE", "OK", ""))) for v in sorted(src.servables, reverse=True)]
        if version not in src.states:
            raise not_found(f"Could not find version {version} of model {name}")
        return [(version, src.states[version])]


__all__ = ["ModelManager", "ModelSource", "NoLoadableVersion", "ConfigError", "ServingError"]
