"""The streaming input path: files read by tf.data and parsed in the graph give exactly what the
Python reader gives; one streaming pass gives the vocabulary and labels the in-memory reader gave;
lists, globs and .gz files read like one plain file; word models segment once into a cache."""

from __future__ import annotations

import collections
import gzip
import random

import pytest

from data_helpers.config import load_config
from data_helpers.dataset import prepare_data
from data_helpers.pipeline import parse_lines, read_lines
from data_helpers.reader import read_examples
from data_helpers.tokenizer import Tokenizer
from data_helpers.vocab import build_vocab
from tests.conftest import make_lines, quiet, tiny_config

EDGE_LINES = [
    "\ufeff好吃\tpos",  # a BOM at the start of the file
    "a<SEP>b\tc<SEP>neg",  # split at the last <SEP>, a tab inside the text
    "  spaced text \t  neg  ",
    "\u3000全角空格\u3000\tpos\u3000",
    "tab\tinside\ttext\tpos",  # split at the last tab
    "no separator here",
    "\tneg",  # empty text
    "text only\t",  # empty label
    "",
    "   ",
    "文本\t1",  # an id into class_names
    "文本\t7",  # an id out of range
    "负数\t-1",
    "emoji 😀\tneg",
    "中文 English mixed\tpos\r",  # CRLF
    "replacement char \ufffd stays\tpos",
    "pos 还是 <SEP> 标签\t<SEP>neg",
]


def _write_edge_file(path):
    data = "\n".join(EDGE_LINES).encode("utf-8")
    data += b"\n\xff\xfe broken utf-8\tpos\nok \xe4\xbd\xa0\tneg\n"
    path.write_bytes(data)
    return str(path)


def test_graph_parser_matches_the_python_reader(tmp_path):
    path = _write_edge_file(tmp_path / "edge.txt")
    names = ["neg", "pos"]
    want = read_examples(path, id_to_name=names, max_bad_fraction=1.0, log=quiet)
    labels = ["neg", "pos"]
    got = [(t.decode("utf-8"), labels[int(y)]) for t, y in parse_lines(read_lines([path]), labels, names).as_numpy_iterator()]
    assert got == list(zip(want.texts, want.labels))
    assert len(got) == 11 and ("a<SEP>b\tc", "neg") in got and ("文本", "pos") in got


def _big_file(path, n, seed=0):
    rng = random.Random(seed)
    lines = make_lines(n, seed)
    for i in range(0, n, 997):  # under 1% malformed
        lines[i] = "a line without a separator"
    for i in range(5, n, 1013):
        lines[i] = "\u3000" + lines[i].replace("\t", " \t ") + "\u3000"
    rng.shuffle(lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def test_one_streaming_pass_gives_the_vocabulary_of_the_in_memory_reader(tmp_path, corpus):
    train = tmp_path / "big.txt"
    _big_file(train, 200_000)
    cfg = load_config(tiny_config(tmp_path, corpus, train_data=str(train), min_count=3), log=quiet)
    data = prepare_data(cfg, log=quiet, save=False)
    data.cleanup()
    # What the in-memory reader gave before: every text held, counted, then the vocabulary.
    ex = read_examples(str(train), log=quiet)
    tok = Tokenizer.from_run_config(cfg)
    import tensorflow as tf

    counts = collections.Counter(t.decode("utf-8") for t in tok.split(tf.constant(ex.texts)).flat_values.numpy())
    assert data.artifacts.tokens == build_vocab(counts, cfg.min_count, cfg.vocab_size)
    assert data.artifacts.labels == sorted(set(ex.labels))
    assert data.scan.train_examples == len(ex.texts) and data.scan.train_label_counts == dict(collections.Counter(ex.labels))


def test_lists_globs_and_gzip_read_like_one_plain_file(tmp_path, corpus):
    lines = make_lines(3000, 5)
    one = tmp_path / "all.txt"
    one.write_text("\n".join(lines) + "\n", encoding="utf-8")
    parts = [lines[:1000], lines[1000:2000], lines[2000:]]
    for i, part in enumerate(parts):
        (tmp_path / f"train-{i}.txt").write_text("\n".join(part) + "\n", encoding="utf-8")
    with gzip.open(tmp_path / "train-1.txt.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(parts[1]) + "\n")

    def vocab(train_data):
        cfg = load_config(tiny_config(tmp_path / "cfg", corpus, train_data=train_data), log=quiet)
        data = prepare_data(cfg, log=quiet, save=False)
        got = sorted((t, int(y)) for t, y in parse_lines(read_lines(data.train_files), data.artifacts.labels, None).as_numpy_iterator())
        data.cleanup()
        return data.artifacts.tokens, data.artifacts.labels, data.scan.train_examples, got

    want = vocab(str(one))
    assert want[2] == 3000
    assert vocab(str(tmp_path / "train-*.txt")) == want
    assert vocab([str(tmp_path / "train-0.txt"), str(tmp_path / "train-1.txt.gz"), str(tmp_path / "train-2.txt")]) == want


def test_a_glob_that_matches_nothing_is_named(tmp_path, corpus):
    from data_helpers.config import ConfigError

    with pytest.raises(ConfigError, match=r"key 'train_data': no file matches .*nothing-\*\.txt"):
        load_config(tiny_config(tmp_path, corpus, train_data=str(tmp_path / "nothing-*.txt")), log=quiet)


def test_word_models_segment_once_into_a_cache(tmp_path, corpus):
    cfg = load_config(tiny_config(tmp_path, corpus, tokenizer="word"), log=quiet)
    logs = []
    first = prepare_data(cfg, log=logs.append)
    assert any("segmented text: cached in" in m for m in logs)
    cached = [line.rstrip("\n") for f in first.train_files for line in open(f, encoding="utf-8")]
    ex = read_examples(cfg.train_data, log=quiet)
    assert cached == [f"{s}\t{label}" for s, label in zip(Tokenizer.from_run_config(cfg).segment(ex.texts), ex.labels)]
    logs.clear()
    second = prepare_data(cfg, log=logs.append)
    assert any("segmented text: reusing" in m for m in logs)
    assert second.artifacts.fingerprint == first.artifacts.fingerprint
    assert second.train_files == first.train_files


def test_held_training_data_is_a_fresh_permutation_each_pass_and_resumes_mid_pass(tmp_path):
    import tensorflow as tf

    from data_helpers.pipeline import _shuffled_epochs

    n = 50
    held = (tf.reshape(tf.range(n * 3, dtype=tf.int32), [n, 3]), tf.range(n, dtype=tf.int32) % 7, tf.fill([n], 3))

    def example_ids(it, count):
        out = []
        for _ in range(count):
            ids, y, length = next(it)
            i = int(ids[0]) // 3  # each example's ids, label and length stay together
            assert list(ids.numpy()) == [3 * i, 3 * i + 1, 3 * i + 2] and int(y) == i % 7 and int(length) == 3
            out.append(i)
        return out

    it = iter(_shuffled_epochs(held, seed=5))
    first, second = example_ids(it, n), example_ids(it, n)
    assert sorted(first) == sorted(second) == list(range(n)) and first != second
    assert example_ids(iter(_shuffled_epochs(held, seed=6)), n) != first
    # The same seed gives the same order, and a checkpoint taken mid-pass resumes it exactly.
    it = iter(_shuffled_epochs(held, seed=5))
    assert example_ids(it, n + 7) == first + second[:7]
    path = tf.train.Checkpoint(data=it).write(str(tmp_path / "held"))
    rest = example_ids(it, 10)
    resumed = iter(_shuffled_epochs(held, seed=5))
    tf.train.Checkpoint(data=resumed).read(path).assert_consumed()
    assert example_ids(resumed, 10) == rest == second[7:17]
