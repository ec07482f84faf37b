"""config -> reader -> tokenizer -> vocab -> ids: the data half of the pipeline, shared by every model.

:func:`load_examples` reads and checks the data without TensorFlow, so a command can report
bad data before it pays for importing TensorFlow; :func:`prepare_data` does the rest."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from data_helpers.config import ConfigError
from data_helpers.io_utils import file_digest
from data_helpers.reader import DataError, Examples, read_class_names, read_examples

if TYPE_CHECKING:  # TensorFlow is imported only when prepare_data runs
    from data_helpers.vocab import TextEncoder, VocabArtifacts


@dataclass
class LoadedExamples:
    train: Examples
    evals: Examples
    labels: list[str]  # id order
    binary: bool


@dataclass
class PreparedData:
    artifacts: "VocabArtifacts"
    encoder: "TextEncoder"
    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    eval_texts: list[str]


def _label_order(labels: set[str]) -> list[str]:
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def resolve_labels(cfg, train_labels: list[str], class_names: list[str] | None) -> tuple[list[str], bool]:
    """The label list (id order) and whether the model is binary (one sigmoid output)."""
    seen = set(train_labels)
    labels = list(class_names) if class_names else _label_order(seen)
    if len(seen) < 2:
        raise DataError(f"{cfg.train_data}: only one class ({next(iter(seen))!r}); a classifier needs at least two")
    if cfg.num_classes == 1:
        if len(labels) != 2:
            raise ConfigError(
                f"{cfg.source}: key 'num_classes' is 1 (binary, sigmoid) but {cfg.train_data} has {len(labels)} labels; "
                f"set num_classes to {len(labels)} or null"
            )
        return labels, True
    if cfg.num_classes is not None and cfg.num_classes != len(labels):
        where = cfg.class_names if class_names else cfg.train_data
        raise ConfigError(
            f"{cfg.source}: key 'num_classes' is {cfg.num_classes} but {where} has {len(labels)} labels "
            f"({', '.join(labels[:5])}{', ...' if len(labels) > 5 else ''}); set num_classes to {len(labels)} or null"
        )
    return labels, False


def data_settings(cfg) -> dict:
    """What, besides the tokenizer, decides the vocabulary and label ids."""
    return {
        "train_data_sha256": file_digest(cfg.train_data),
        "class_names_sha256": file_digest(cfg.class_names),
        "min_count": cfg.min_count,
        "vocab_size": cfg.vocab_size,
    }


def _changed(old: dict, new: dict, prefix="") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def load_examples(cfg, log=print) -> LoadedExamples:
    """Read train_data and eval_data and check their labels against each other and the config."""
    names = read_class_names(cfg.class_names) if cfg.class_names else None
    train = read_examples(cfg.train_data, id_to_name=names, log=log)
    evals = read_examples(cfg.eval_data, id_to_name=names, log=log)
    labels, binary = resolve_labels(cfg, train.labels, names)
    unseen = sorted(set(evals.labels) - set(train.labels))
    if unseen:
        n = sum(label in unseen for label in evals.labels)
        raise DataError(
            f"{cfg.eval_data}: label {unseen[0]!r} never occurs in {cfg.train_data} "
            f"({len(unseen)} unseen label(s), {n} eval examples)"
        )
    return LoadedExamples(train, evals, labels, binary)


def prepare_data(cfg, examples: LoadedExamples | None = None, log=print) -> PreparedData:
    """Build (or confirm) the vocabulary in output_path and encode both files."""
    from data_helpers.tokenizer import Tokenizer
    from data_helpers.vocab import TextEncoder, VocabArtifacts, build_vocab, count_tokens

    ex = examples or load_examples(cfg, log=log)
    train, evals, labels, binary = ex.train, ex.evals, ex.labels, ex.binary
    label_id = {label: i for i, label in enumerate(labels)}
    tokenizer = Tokenizer.from_run_config(cfg)
    tokens = build_vocab(count_tokens(tokenizer, train.texts), cfg.min_count, cfg.vocab_size)
    artifacts = VocabArtifacts(tokens, labels, tokenizer.get_config(), cfg.sequence_length, binary, data_settings(cfg))
    _save_vocab(artifacts, cfg.output_path, log)
    log(f"vocab: {len(tokens)} tokens ({cfg.tokenizer}), {len(labels)} labels, fingerprint {artifacts.fingerprint}")

    encoder = TextEncoder(tokenizer, os.path.join(cfg.output_path, "vocab.txt"), cfg.sequence_length)
    return PreparedData(
        artifacts=artifacts,
        encoder=encoder,
        x_train=encoder.encode(train.texts),
        y_train=np.array([label_id[label] for label in train.labels], np.int32),
        x_eval=encoder.encode(evals.texts),
        y_eval=np.array([label_id[label] for label in evals.labels], np.int32),
        eval_texts=evals.texts,
    )


def _summary(a) -> dict:
    return {"tokenizer": a.tokenizer, "sequence_length": a.sequence_length, "binary": a.binary, "labels": a.labels, **a.settings}


def _save_vocab(artifacts, folder: str, log) -> None:
    """Save the vocab; say so when it replaces one built with other settings or data."""
    from data_helpers.vocab import StaleVocabError, VocabArtifacts

    path = os.path.join(folder, "vocab.json")
    if os.path.exists(path):
        try:
            old = VocabArtifacts.load(folder)
        except (StaleVocabError, ValueError, KeyError) as e:
            log(f"{path}: unreadable ({e}); rebuilding")
        else:
            if old.fingerprint == artifacts.fingerprint:
                return
            what = _changed(_summary(old), _summary(artifacts))
            log(f"{path}: built with other settings or data ({', '.join(what) or 'content'} changed); rebuilt")
    artifacts.save(folder)
