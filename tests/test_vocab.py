"""Vocabulary building, the saved artifacts, the encoder, and the stale-vocab guard."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_helpers.config import load_config
from data_helpers.dataset import prepare_data
from data_helpers.tokenizer import Tokenizer
from data_helpers.vocab import PAD, UNK, StaleVocabError, TextEncoder, VocabArtifacts, build_vocab
from tests.conftest import quiet, tiny_config


def test_build_vocab_orders_by_count_then_token_with_min_count_and_cap():
    tokens = ["b", "a", "a", "c", "c", "c", "d"]
    assert build_vocab(tokens) == [PAD, UNK, "c", "a", "b", "d"]
    assert build_vocab(tokens, min_count=2) == [PAD, UNK, "c", "a"]
    assert build_vocab(tokens, max_size=4) == [PAD, UNK, "c", "a"]


def artifacts(**kw):
    base = dict(tokens=[PAD, UNK, "好", "吃"], labels=["neg", "pos"], tokenizer=Tokenizer("char").get_config(),
                sequence_length=8, binary=True, settings={"min_count": 1})
    base.update(kw)
    return VocabArtifacts(**base)


def test_artifacts_round_trip_as_json_not_pickle(tmp_path):
    a = artifacts()
    a.save(str(tmp_path))
    data = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    assert data["tokens"] == a.tokens and data["fingerprint"] == a.fingerprint
    assert (tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines() == a.tokens
    assert (tmp_path / "labels.txt").read_text(encoding="utf-8").splitlines() == ["neg", "pos"]
    b = VocabArtifacts.load(str(tmp_path))
    assert b.to_json() == a.to_json()


def test_fingerprint_follows_every_setting():
    a = artifacts()
    assert artifacts().fingerprint == a.fingerprint
    assert artifacts(tokenizer=Tokenizer("word").get_config()).fingerprint != a.fingerprint
    assert artifacts(tokenizer=Tokenizer("char", stop_words=["的"]).get_config()).fingerprint != a.fingerprint
    assert artifacts(sequence_length=9).fingerprint != a.fingerprint
    assert artifacts(settings={"min_count": 2}).fingerprint != a.fingerprint


def test_hand_edited_vocab_is_refused(tmp_path):
    artifacts().save(str(tmp_path))
    data = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    data["tokens"].append("新")
    (tmp_path / "vocab.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(StaleVocabError, match="fingerprint does not match"):
        VocabArtifacts.load(str(tmp_path))


def test_encoder_pads_truncates_and_maps_unknown_and_literal_pad(tmp_path):
    a = artifacts(sequence_length=4)
    a.save(str(tmp_path))
    enc = TextEncoder(Tokenizer("whitespace", lowercase=False), str(tmp_path / "vocab.txt"), 4)
    ids = enc.encode(["好 吃", "好 吃 好 吃 好 吃", "", "<PAD> 新"])
    assert ids.dtype == np.int32 and ids.shape == (4, 4)
    assert ids.tolist() == [[2, 3, 0, 0], [2, 3, 2, 3], [0, 0, 0, 0], [1, 1, 0, 0]]


def test_changed_settings_rebuild_the_vocab_and_say_so(tmp_path, corpus):
    logs = []
    cfg = load_config(tiny_config(tmp_path, corpus), log=quiet)
    first = prepare_data(cfg, log=logs.append)
    assert not any("rebuilt" in m for m in logs)
    second = prepare_data(cfg, log=logs.append)  # same settings: same vocab, no message
    assert second.artifacts.fingerprint == first.artifacts.fingerprint and not any("rebuilt" in m for m in logs)
    third = prepare_data(cfg.replace(tokenizer="word"), log=logs.append)
    assert third.artifacts.fingerprint != first.artifacts.fingerprint
    msg = [m for m in logs if "rebuilt" in m]
    assert len(msg) == 1 and "tokenizer.mode" in msg[0]
    assert VocabArtifacts.load(cfg.output_path).tokenizer["mode"] == "word"
    assert first.scan.train_label_counts == third.scan.train_label_counts and first.artifacts.labels == third.artifacts.labels


def test_changed_training_data_also_counts(tmp_path, corpus):
    cfg = load_config(tiny_config(tmp_path, corpus), log=quiet)
    fp = prepare_data(cfg, log=quiet).artifacts.fingerprint
    other = tmp_path / "train2.txt"
    other.write_text((corpus / "train.txt").read_text(encoding="utf-8") + "新的句子\t好评\n", encoding="utf-8")
    assert prepare_data(cfg.replace(train_data=str(other)), log=quiet).artifacts.fingerprint != fp
