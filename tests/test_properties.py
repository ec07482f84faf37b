"""Property-based tests: any Unicode text passes the reader, every tokenizer, the vocabulary and
the Predictor without an exception, every id inside the vocabulary; any label set round-trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_helpers.reader import DataError, read_examples
from data_helpers.tokenizer import Tokenizer
from data_helpers.vocab import PAD, UNK, TextEncoder, VocabArtifacts

# All of Unicode but surrogates (which no str read from a file or the network can hold).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TOKENIZERS = {mode: Tokenizer(mode) for mode in ("char", "word", "whitespace")}


@FAST
@given(st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=8))
def test_reader_parses_or_reports_any_lines(tmp_path, rows):
    path = tmp_path / "any.txt"
    path.write_text("".join(f"{t}\t{l}\n" for t, l in rows), encoding="utf-8")
    try:
        ex = read_examples(str(path), max_bad_fraction=1.0, log=lambda *a: None)
    except DataError as e:
        assert "\n" not in str(e)
        return
    assert len(ex.texts) == len(ex.labels) >= 1
    assert all(t.strip() and l.strip() for t, l in zip(ex.texts, ex.labels))


@FAST
@given(TEXT)
@pytest.mark.parametrize("mode", sorted(TOKENIZERS))
def test_every_tokenizer_takes_any_text(mode, text):
    tokens = TOKENIZERS[mode].tokenize(text)
    assert all(t and not any(c.isspace() for c in t if c not in "\x1c\x1d\x1e\x1f\x85") for t in tokens)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    d = tmp_path_factory.mktemp("vocab")
    VocabArtifacts([PAD, UNK, "好", "吃", "ok"], ["a", "b"], Tokenizer("char").get_config(), 16, True, {}).save(str(d))
    return TextEncoder(Tokenizer("char"), str(d / "vocab.txt"), 16)


@FAST
@given(st.lists(TEXT, min_size=1, max_size=5))
def test_encoder_ids_stay_inside_the_vocabulary(encoder, texts):
    ids = encoder.encode(texts)
    assert ids.shape == (len(texts), 16) and ids.min() >= 0 and ids.max() < 5
    # Padding only after the text: no id 0 before a real token.
    for row in ids:
        nz = np.flatnonzero(row)
        assert len(nz) == 0 or nz[-1] == len(nz) - 1


@FAST
@given(TEXT)
def test_predictor_answers_any_text(trained, text):

    p = _predictor(trained)
    assert p.predict(text) in p.classes_
    assert abs(sum(p.predict_proba(text).values()) - 1) < 1e-4


_CACHE = {}


def _predictor(trained):
    from predictors import Predictor

    if "p" not in _CACHE:
        _CACHE["p"] = Predictor(trained("textcnn")[0])
    return _CACHE["p"]


LABEL = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=20)


@FAST
@given(st.lists(LABEL, min_size=2, max_size=12, unique=True))
def test_any_label_set_round_trips_through_the_saved_label_map(tmp_path, labels):
    art = VocabArtifacts([PAD, UNK], labels, Tokenizer("char").get_config(), 8, False, {})
    folder = tmp_path / "labels"
    art.save(str(folder))
    assert VocabArtifacts.load(str(folder)).labels == labels
