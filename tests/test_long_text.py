"""long_text: which tokens of a text longer than sequence_length are read (truncate, head_tail),
the same in training, the export's signatures, the Predictor and explanation spans."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from data_helpers.config import load_config
from data_helpers.long_text import cut_chars
from data_helpers.tokenizer import Tokenizer, keep_mask
from tests.conftest import KEYWORDS, quiet, tiny_config


def test_keep_mask_reads_the_head_and_the_tail():
    mask = keep_mask(tf.constant([3, 10, 8], tf.int64), 8, "head_tail", 0.25).to_list()
    assert mask[0] == [True] * 3
    assert mask[1] == [True, True, False, False] + [True] * 6  # first 2, last 6
    assert mask[2] == [True] * 8
    assert keep_mask(tf.constant([10], tf.int64), 8).to_list()[0] == [True] * 8 + [False] * 2


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet="ab中文字 ,。x1", max_size=60), st.integers(4, 30), st.sampled_from(["truncate", "head_tail"]))
def test_the_graph_cuts_characters_as_python_does_and_spans_point_into_the_text(text, max_chars, long_text):
    tok = Tokenizer("char", max_chars=max_chars, long_text=long_text)
    kept, head, skipped = cut_chars(text, max_chars, long_text)
    assert len(kept) <= max_chars + 1 and skipped >= 0
    assert tok._cut(tf.constant([text])).numpy()[0].decode("utf-8") == kept
    tokens, starts, ends = tok.split_with_spans(tf.constant([text]))
    for t, a, b in zip(tokens.to_list()[0], starts.to_list()[0], ends.to_list()[0]):
        assert text[a:b].lower() == t.decode("utf-8")


def test_word_offsets_skip_the_middle():
    tok = Tokenizer("word", max_chars=12, long_text="head_tail")
    text = "今天天气很好" + "中间的话不要" * 5 + "我们去公园散步"
    (segmented, where), = tok.segment_with_offsets([text])
    assert segmented.replace(" ", "") == (text[:3] + text[-9:])
    for i, c in enumerate(segmented):
        assert where[i] == -1 and c == " " or text[where[i]] == c


def long_lines(n: int, seed: int) -> list[str]:
    """Filler with the label's keyword near the end: past sequence_length tokens."""
    rng = random.Random(seed)
    filler = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面"
    lines = []
    for i in range(n):
        key = list(KEYWORDS)[i % 3]
        body = "".join(rng.choice(filler) for _ in range(rng.randint(40, 60)))
        lines.append(body + KEYWORDS[key] + "".join(rng.choice(filler) for _ in range(2)) + "\t" + KEYWORDS[key])
    return lines


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("long")
    (root / "train.txt").write_text("\n".join(long_lines(300, 1)) + "\n", encoding="utf-8")
    (root / "eval.txt").write_text("\n".join(long_lines(60, 2)) + "\n", encoding="utf-8")
    return root


def test_head_tail_reads_the_end_of_long_texts_everywhere(long_corpus, tmp_path):
    from predictors import Predictor
    from trainers.trainer import Trainer

    reports, logs = {}, []
    for long_text in ("truncate", "head_tail"):
        path = tiny_config(tmp_path / long_text, long_corpus, "textcnn", sequence_length=16, long_text=long_text,
                           epochs=4, learning_rate=0.02, keep_prob=1.0, eval_every=50, checkpoint_every=50,
                           export_explain=long_text == "head_tail")
        reports[long_text] = Trainer(load_config(path, log=quiet), log=logs.append, verbose=0).train()
    # The keyword sits past the first 16 tokens: truncate never sees it, head_tail always does.
    assert reports["truncate"]["accuracy"] < 0.6 and reports["head_tail"]["accuracy"] > 0.9
    assert any("300 of 300 training texts have more than 16 tokens; long_text head_tail reads "
               "their first 4 and last 12" in str(line) for line in logs)

    p = Predictor(str(tmp_path / "head_tail" / "textcnn.json"))
    texts = [line.split("\t")[0] for line in long_lines(12, 3)]
    labels = [line.split("\t")[1] for line in long_lines(12, 3)]
    assert p.predict(texts) == labels
    vocab = {w: i for i, w in enumerate(open(os.path.join(p.export_dir, "assets", "vocab.txt"), encoding="utf-8").read().split("\n"))}
    rows = [[vocab.get(c, 1) for c in t] for t in texts]  # every token, more than 16, 0-padded
    ids = tf.constant([r + [0] * (max(map(len, rows)) - len(r)) for r in rows], tf.int32)
    by_ids = p.signatures["predict_ids"](ids=ids)["probabilities"].numpy()
    np.testing.assert_allclose(by_ids, p.predict_proba_array(texts), atol=1e-5)
    why = p.explain(texts[0], method="integrated_gradients")
    assert len(why["tokens"]) == 16
    for t in why["tokens"]:
        assert texts[0][t["start"]:t["end"]] == t["token"]
    top = max(why["tokens"], key=lambda t: t["score"])
    assert top["start"] > 16 and top["token"] in labels[0]  # the keyword, near the end


def test_chunked_model_pools_its_windows_logits():
    from models import build_model, window_model

    cfg = load_config_dict(model_name="textcnn", sequence_length=8, long_text="chunks", chunk_stride=4, max_chunks=3)
    ids = np.zeros((2, 30), np.int32)
    ids[0, :30] = np.arange(2, 32)  # longer than read: 8 + 2 x 4 = 16 tokens
    ids[1, :5] = np.arange(2, 7)  # one window
    for pooling, reduce_fn in (("mean", np.mean), ("max", np.max)):
        model = build_model(cfg.replace(chunk_pooling=pooling), 40, 3)
        inner = window_model(model)
        assert inner is not model and inner.output.shape[-1] == 3
        logits0 = inner(np.stack([ids[0, s:s + 8] for s in (0, 4, 8)])).numpy()
        logits1 = inner(ids[1:2, :8]).numpy()
        want = tf.nn.softmax(np.stack([reduce_fn(logits0, axis=0), logits1[0]])).numpy()
        np.testing.assert_allclose(model(ids).numpy(), want, atol=1e-5)
        # tokens past the 16 read, and padding, change nothing
        np.testing.assert_allclose(model(ids[:, :16]).numpy(), want, atol=1e-5)
        np.testing.assert_allclose(model(np.pad(ids, [(0, 0), (0, 7)])).numpy(), want, atol=1e-5)


def load_config_dict(**values):
    from data_helpers.config import validate

    return validate({"train_data": "t", "eval_data": "e", "embedding_size": 8, "num_filters": 4, "filter_sizes": [2],
                     **values})


def test_chunk_stride_longer_than_a_window_is_refused():
    from data_helpers.config import ConfigError

    with pytest.raises(ConfigError, match="key 'chunk_stride' \\(9\\) must be at most sequence_length \\(8\\)"):
        load_config_dict(model_name="textcnn", sequence_length=8, long_text="chunks", chunk_stride=9)


def test_chunks_read_long_texts_whole_everywhere(long_corpus, tmp_path):
    from predictors import Predictor
    from trainers.trainer import Trainer

    logs = []
    path = tiny_config(tmp_path / "chunks", long_corpus, "textcnn", sequence_length=16, long_text="chunks", max_chunks=4,
                       epochs=4, learning_rate=0.02, keep_prob=1.0, eval_every=50, checkpoint_every=50, export_explain=True)
    report = Trainer(load_config(path, log=quiet), log=logs.append, verbose=0).train()
    # The keyword sits past the first 16 tokens (test above: truncate < 0.6); 4 windows of 16 read it.
    assert report["accuracy"] > 0.9
    assert "export: no explain signatures for long_text chunks (the explanations read one window)" in logs

    p = Predictor(path)
    assert p.sequence_length == 64  # tokens read: 4 windows of 16
    lines = long_lines(12, 3)
    texts, labels = [line.split("\t")[0] for line in lines], [line.split("\t")[1] for line in lines]
    assert p.predict(texts) == labels
    # predict_ids with every token of every text (more than the 64 read) answers as the text does
    vocab = {w: i for i, w in enumerate(open(os.path.join(p.export_dir, "assets", "vocab.txt"), encoding="utf-8").read().split("\n"))}
    rows = [[vocab.get(c, 1) for c in t + t] for t in texts]  # twice the text: up to 124 tokens
    ids = tf.constant([r + [0] * (max(map(len, rows)) - len(r)) for r in rows], tf.int32)
    doubled = p.predict_proba_array([t + t for t in texts])
    np.testing.assert_allclose(p.signatures["predict_ids"](ids=ids)["probabilities"].numpy(), doubled, atol=1e-5)
    # one text alone answers as it does in a batch of longer and shorter ones
    np.testing.assert_allclose(p.predict_proba_array(texts[:1]), p.predict_proba_array(texts)[:1], atol=1e-5)
    with pytest.raises(ValueError, match="long_text chunks"):
        p.explain(texts[0])
