"""Which models to serve: ``--model_config_file`` in TensorFlow Serving's ModelServerConfig text format.

::

    model_config_list {
      config {
        name: "textcnn"
        base_path: "/srv/pb_model/textcnn"
        model_platform: "tensorflow"
        model_version_policy { latest { num_versions: 2 } }   # or specific { versions: 3 versions: 4 } or all {}
        version_labels { key: "stable" value: 3 }
      }
    }

The file is parsed with the proto from the ``tensorflow-serving-api`` package, so what TensorFlow
Serving accepts, this server accepts; what this server cannot do (another platform, a custom
model config) is refused with one line naming the field.
"""

from __future__ import annotations

import dataclasses
import os
import re

NAME = re.compile(r"[^/:\s]+")


class ConfigError(ValueError):
    """A model config that cannot be served; the message is one line naming the file and field."""


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One model to serve: its name in URLs, where its versions are, and which to load.

    ``policy`` is ``("latest", n)``, ``("specific", (v, ...))`` or ``("all", None)``;
    ``labels`` maps version labels to versions.
    """

    name: str
    base_path: str
    policy: tuple = ("latest", 1)
    labels: tuple = ()  # ((label, version), ...), hashable so entries compare by value

    @property
    def label_map(self) -> dict:
        return dict(self.labels)


def parse_text(text: str, where: str = "--model_config_file", base_dir: str = ".") -> list[ModelEntry]:
    """A ModelServerConfig in text format -> the entries; ConfigError when it cannot be served.
    Relative base paths are taken from ``base_dir``: the working directory, as TensorFlow Serving does."""
    from google.protobuf import text_format

    from tensorflow_serving.config import model_server_config_pb2

    cfg = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, cfg)
    except text_format.ParseError as e:
        raise ConfigError(f"{where}: {str(e).splitlines()[0]}") from None
    return entries_from_proto(cfg, where, base_dir)


def entries_from_proto(cfg, where: str, base_dir: str = ".") -> list[ModelEntry]:
    """A ModelServerConfig message -> the entries; ConfigError when it cannot be served."""
    if cfg.WhichOneof("config") == "custom_model_config":
        raise ConfigError(f"{where}: custom_model_config is not supported; use model_config_list")
    entries, seen = [], set()
    for i, c in enumerate(cfg.model_config_list.config):
        at = f"{where}: model_config_list.config[{i}]"
        if not NAME.fullmatch(c.name or ""):
            raise ConfigError(f"{at}.name: {c.name!r} must be non-empty, without '/', ':' or spaces")
        if c.name in seen:
            raise ConfigError(f"{at}.name: model {c.name!r} is configured twice")
        seen.add(c.name)
        if not c.base_path:
            raise ConfigError(f"{at}.base_path: missing (the folder of <int version> folders)")
        if c.model_platform not in ("", "tensorflow"):
            raise ConfigError(f"{at}.model_platform: {c.model_platform!r} is not supported (only \"tensorflow\")")
        kind = c.model_version_policy.WhichOneof("policy_choice") or "latest"
        if kind == "latest":
            n = c.model_version_policy.latest.num_versions or 1
            policy = ("latest", int(n))
        elif kind == "specific":
            versions = tuple(sorted(set(int(v) for v in c.model_version_policy.specific.versions)))
            if not versions:
                raise ConfigError(f"{at}.model_version_policy.specific: lists no versions")
            policy = ("specific", versions)
        else:
            policy = ("all", None)
        labels = []
        for label, version in sorted(c.version_labels.items()):
            if not NAME.fullmatch(label) or label.isdigit():
                raise ConfigError(f"{at}.version_labels: {label!r} is not a valid label (not a number, no '/', ':' or spaces)")
            labels.append((label, int(version)))
        base = c.base_path if os.path.isabs(c.base_path) else os.path.normpath(os.path.join(base_dir, c.base_path))
        entries.append(ModelEntry(c.name, base.rstrip("/") or "/", policy, tuple(labels)))
    if not entries:
        raise ConfigError(f"{where}: model_config_list has no config (no model to serve)")
    return entries


def read_file(path: str) -> list[ModelEntry]:
    """Parse a --model_config_file; ConfigError (one line) when it cannot be read or served."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--model_config_file {path}: cannot read it: {getattr(e, 'strerror', None) or e}") from None
    return parse_text(text, where=path)
