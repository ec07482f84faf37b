"""The three tokenizers, stop words, lower-casing and long-text truncation."""

from __future__ import annotations

import pytest

from data_helpers.tokenizer import Tokenizer


def test_char_splits_cjk_keeps_latin_words_and_numbers_lowercased():
    tok = Tokenizer("char")
    assert tok.tokenize("iPhone12很好用，价格2999元!") == ["iphone12", "很", "好", "用", "，", "价", "格", "2999", "元", "!"]


def test_char_whitespace_of_every_kind_separates_but_is_no_token():
    tok = Tokenizer("char")
    assert tok.tokenize(" 好\u3000吃\t\n了 ok  ") == ["好", "吃", "了", "ok"]
    assert tok.tokenize("") == [] and tok.tokenize(" \u3000\t") == []


def test_char_emoji_and_invalid_surrogate_free_text():
    assert Tokenizer("char").tokenize("好😀吃") == ["好", "😀", "吃"]


def test_lowercase_off_keeps_case():
    assert Tokenizer("char", lowercase=False).tokenize("ABc好") == ["ABc", "好"]


def test_whitespace_mode_takes_given_segmentation():
    assert Tokenizer("whitespace").tokenize("这家 店 的菜  很好吃 OK") == ["这家", "店", "的菜", "很好吃", "ok"]


def test_word_mode_uses_jieba():
    tok = Tokenizer("word")
    words = tok.tokenize("我们今天去北京大学")
    assert "北京大学" in words and "今天" in words
    assert "".join(words) == "我们今天去北京大学"


def test_word_mode_user_dict(tmp_path):
    d = tmp_path / "user.txt"
    d.write_text("蓝莓芝士蛋糕 10 n\n", encoding="utf-8")
    plain = Tokenizer("word").tokenize("我爱吃蓝莓芝士蛋糕")
    custom = Tokenizer("word", user_dict=str(d)).tokenize("我爱吃蓝莓芝士蛋糕")
    assert "蓝莓芝士蛋糕" not in plain and "蓝莓芝士蛋糕" in custom
    assert Tokenizer("word", user_dict=str(d)).get_config()["user_dict_sha256"]


@pytest.mark.parametrize("mode", ["char", "word", "whitespace"])
def test_stop_words_dropped_after_lowercasing(mode):
    tok = Tokenizer(mode, stop_words=["的", "OK", "了"])
    tokens = tok.tokenize("这 是 我 的 书 了 ok")
    assert "的" not in tokens and "了" not in tokens and "ok" not in tokens
    assert "书" in tokens


def test_long_text_is_cut_to_max_chars():
    tok = Tokenizer("char", max_chars=10)
    assert len(tok.tokenize("好" * 1_000_000)) == 10


def test_config_round_trip():
    tok = Tokenizer("whitespace", lowercase=False, stop_words=["a", "b"], max_chars=99)
    again = Tokenizer.from_config(tok.get_config())
    assert again.get_config() == tok.get_config()
    assert again.tokenize("A a b c") == tok.tokenize("A a b c") == ["A", "c"]


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="tokenizer mode must be one of char, word, whitespace"):
        Tokenizer("bpe")
