"""Tests for data_helpers.reader."""


import pytest

from data_helpers.reader import DataError, Examples, read_class_names, read_examples


def write(tmp_path, content, name="data.txt"):
    """Write ``content`` (str as UTF-8, or bytes as is) and return the path as str."""
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return str(path)


class Log:
    """Collects logged lines."""

    def __init__(self):
        self.lines = []

    def __call__(self, line):
        self.lines.append(line)


def good_lines(n, label="pos"):
    return [f"第{i}句话很好\t{label}" for i in range(n)]


# --- formats -----------------------------------------------------------------


def test_tab_and_sep_formats_mixed(tmp_path):
    path = write(tmp_path, "这部电影很好看\tpos\n太难看了<SEP>neg\n  前后有空格  \t  pos  \n")
    log = Log()
    ex = read_examples(path, log=log)
    assert isinstance(ex, Examples)
    assert ex.texts == ["这部电影很好看", "太难看了", "前后有空格"]
    assert ex.labels == ["pos", "neg", "pos"]
    assert ex.path == path
    assert ex.skipped == 0
    assert log.lines == []


def test_sep_is_preferred_over_tab_and_text_keeps_tabs(tmp_path):
    path = write(tmp_path, "列一\t列二<SEP>pos\n甲\t乙\t丙\tneg\n")
    ex = read_examples(path)
    assert ex.texts == ["列一\t列二", "甲\t乙\t丙"]
    assert ex.labels == ["pos", "neg"]


def test_splits_on_last_sep(tmp_path):
    path = write(tmp_path, "a<SEP>b<SEP>neg\n")
    ex = read_examples(path)
    assert ex.texts == ["a<SEP>b"]
    assert ex.labels == ["neg"]


def test_bom_crlf_cr_and_blank_lines(tmp_path):
    content = b"\xef\xbb\xbf" + "第一\tpos\r\n\r\n   \r\n第二\tneg\r第三\tpos\n\t\n".encode("utf-8")
    log = Log()
    ex = read_examples(write(tmp_path, content), log=log)
    assert ex.texts == ["第一", "第二", "第三"]  # no BOM glued to the first text
    assert ex.labels == ["pos", "neg", "pos"]  # no \r left on labels
    assert ex.skipped == 0  # blank lines are not malformed
    assert log.lines == []


def test_no_trailing_newline(tmp_path):
    ex = read_examples(write(tmp_path, "好\tpos\n坏\tneg"))
    assert ex.labels == ["pos", "neg"]


# --- malformed lines ---------------------------------------------------------


@pytest.mark.parametrize(
    "bad_line, problem",
    [
        (b"no separator here", "no separator"),
        (b"   \tpos", "empty text"),
        ("只有文本\t  ".encode("utf-8"), "empty label"),
        (b"<SEP>neg", "empty text"),
        ("文本<SEP>".encode("utf-8"), "empty label"),
        (b"bad \xff\xfe bytes\tpos", "not valid UTF-8"),
    ],
)
def test_malformed_line_reported_with_path_and_line(tmp_path, bad_line, problem):
    lines = [s.encode("utf-8") for s in good_lines(150)]
    lines.insert(1, b"")  # a blank line still counts for line numbers
    lines.insert(41, bad_line)  # file line 42
    path = write(tmp_path, b"\n".join(lines) + b"\n")
    log = Log()
    ex = read_examples(path, log=log)
    assert ex.skipped == 1
    assert len(ex.texts) == 150
    assert len(log.lines) == 1
    summary = log.lines[0]
    assert summary.startswith(f"{path}: skipped 1 malformed line of 151 (first: {path}:42: {problem}")
    assert "\n" not in summary


def test_skipped_summary_is_one_line_for_several_bad_lines(tmp_path):
    lines = good_lines(300)
    lines[16] = "oops"  # line 17
    lines[100] = "\tpos"
    log = Log()
    ex = read_examples(write(tmp_path, "\n".join(lines)), log=log)
    assert ex.skipped == 2
    assert len(ex.texts) == 298
    assert len(log.lines) == 1
    assert "skipped 2 malformed lines of 300" in log.lines[0]
    assert ":17: no separator (expected text<TAB>label or text<SEP>label)" in log.lines[0]


def test_one_bad_in_200_is_skipped(tmp_path):
    lines = good_lines(200)
    lines[50] = "missing separator"
    log = Log()
    ex = read_examples(write(tmp_path, "\n".join(lines)), log=log)
    assert ex.skipped == 1 and len(ex.texts) == 199
    assert len(log.lines) == 1


def test_exactly_one_percent_is_allowed(tmp_path):
    lines = good_lines(100)
    lines[3] = "missing separator"
    ex = read_examples(write(tmp_path, "\n".join(lines)), log=Log())
    assert ex.skipped == 1


def test_five_bad_in_100_raises(tmp_path):
    lines = good_lines(100)
    for i in (9, 20, 30, 40, 50):
        lines[i] = "missing separator"
    path = write(tmp_path, "\n".join(lines))
    log = Log()
    with pytest.raises(DataError) as err:
        read_examples(path, log=log)
    msg = str(err.value)
    assert "\n" not in msg
    assert "5 of 100" in msg
    assert "5.0%" in msg
    assert f"{path}:10: no separator" in msg
    # A looser threshold accepts the same file.
    ex = read_examples(path, max_bad_fraction=0.05, log=log)
    assert ex.skipped == 5 and len(ex.texts) == 95


def test_zero_threshold_rejects_any_bad_line(tmp_path):
    lines = good_lines(1000)
    lines[999] = "x"
    with pytest.raises(DataError, match=":1000: no separator"):
        read_examples(write(tmp_path, "\n".join(lines)), max_bad_fraction=0.0)


def test_invalid_max_bad_fraction(tmp_path):
    with pytest.raises(ValueError):
        read_examples(write(tmp_path, "a\tb\n"), max_bad_fraction=1.5)


def test_all_lines_bad_with_full_tolerance_is_no_examples(tmp_path):
    with pytest.raises(DataError, match="no examples"):
        read_examples(write(tmp_path, "a\nb\n"), max_bad_fraction=1.0, log=Log())


# --- encodings ---------------------------------------------------------------


def test_gbk_file_gets_conversion_hint(tmp_path):
    content = "这部电影很好看\tpos\n太难看了，浪费时间\tneg\n还行吧\tpos\n".encode("gbk")
    path = write(tmp_path, content)
    with pytest.raises(DataError) as err:
        read_examples(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"{path} looks GBK-encoded" in msg
    assert f"iconv -f GBK -t UTF-8 {path}" in msg


def test_gb18030_only_characters_are_detected_too(tmp_path):
    # U+20000 is not in GBK but is in GB18030.
    content = "\U00020000很好\tpos\n很差\tneg\n".encode("gb18030")
    with pytest.raises(DataError, match="looks GBK-encoded"):
        read_examples(write(tmp_path, content))


def test_one_latin1_line_is_not_called_gbk(tmp_path):
    lines = [s.encode("utf-8") for s in good_lines(199)] + ["café\tpos".encode("latin-1")]
    log = Log()
    ex = read_examples(write(tmp_path, b"\n".join(lines)), log=log)
    assert ex.skipped == 1
    assert ":200: not valid UTF-8" in log.lines[0]


def test_a_few_gbk_lines_in_a_utf8_file_are_just_malformed(tmp_path):
    # The line decodes as GBK, but most of the file is UTF-8: skip it, no GBK error.
    lines = [s.encode("utf-8") for s in good_lines(199)] + ["很好\tpos".encode("gbk")]
    log = Log()
    ex = read_examples(write(tmp_path, b"\n".join(lines)), log=log)
    assert ex.skipped == 1 and len(ex.texts) == 199
    assert ":200: not valid UTF-8" in log.lines[0]


def test_utf16_file_is_rejected_clearly(tmp_path):
    with pytest.raises(DataError, match="UTF-16"):
        read_examples(write(tmp_path, "好\tpos\n".encode("utf-16")))


# --- empty / missing ---------------------------------------------------------


def test_empty_file(tmp_path):
    path = write(tmp_path, b"")
    with pytest.raises(DataError, match=r"no examples \(empty file or only blank lines\)") as err:
        read_examples(path)
    assert str(err.value).startswith(path)


def test_only_blank_lines(tmp_path):
    path = write(tmp_path, "\n  \n\t\r\n\u3000\n")
    with pytest.raises(DataError, match="no examples"):
        read_examples(path)


def test_only_bom(tmp_path):
    with pytest.raises(DataError, match="no examples"):
        read_examples(write(tmp_path, b"\xef\xbb\xbf\n"))


def test_missing_path(tmp_path):
    path = str(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="no such file") as err:
        read_examples(path)
    assert path in str(err.value)


def test_directory(tmp_path):
    with pytest.raises(DataError, match="directory") as err:
        read_examples(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_accepts_pathlib_path(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("好\tpos\n", encoding="utf-8")
    ex = read_examples(path)
    assert ex.path == str(path) and ex.labels == ["pos"]


# --- class names -------------------------------------------------------------


def test_integer_labels_mapped_through_class_names(tmp_path):
    names = read_class_names(write(tmp_path, "neg\npos\nneutral\n", "classes.txt"))
    assert names == ["neg", "pos", "neutral"]
    lines = good_lines(120, label="1")
    lines[0] = "好\t0"
    lines[1] = "一般\t2"
    lines[2] = "名字标签\tneg"  # non-integer labels are kept as they are
    ex = read_examples(write(tmp_path, "\n".join(lines)), id_to_name=names)
    assert ex.labels[:4] == ["neg", "neutral", "neg", "pos"]
    assert set(ex.labels) == {"neg", "pos", "neutral"}


def test_integer_labels_kept_without_class_names(tmp_path):
    ex = read_examples(write(tmp_path, "好\t0\n坏\t7\n"))
    assert ex.labels == ["0", "7"]


@pytest.mark.parametrize("label", ["3", "99", "-1"])
def test_label_id_out_of_range_is_malformed(tmp_path, label):
    lines = good_lines(150, label="0")
    lines[7] = f"越界\t{label}"
    log = Log()
    ex = read_examples(write(tmp_path, "\n".join(lines)), id_to_name=["neg", "pos", "neutral"], log=log)
    assert ex.skipped == 1
    assert f":8: label id {label} out of range" in log.lines[0]
    assert set(ex.labels) == {"neg"}


def test_read_class_names_strips_and_allows_trailing_blank_lines(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbf neg \r\npos\r\n\r\n\n", "classes.txt")
    assert read_class_names(path) == ["neg", "pos"]


def test_read_class_names_blank_line_in_the_middle(tmp_path):
    path = write(tmp_path, "neg\n\npos\n", "classes.txt")
    with pytest.raises(DataError, match="blank line") as err:
        read_class_names(path)
    assert str(err.value).startswith(f"{path}:2:")


def test_read_class_names_duplicate(tmp_path):
    path = write(tmp_path, "neg\npos\nneutral\npos\n", "classes.txt")
    with pytest.raises(DataError, match="duplicate class name 'pos' \\(first on line 2\\)") as err:
        read_class_names(path)
    assert str(err.value).startswith(f"{path}:4:")


def test_read_class_names_bad_utf8(tmp_path):
    path = write(tmp_path, b"neg\n\xc4\xe3\xba\xc3\n", "classes.txt")
    with pytest.raises(DataError, match="not valid UTF-8") as err:
        read_class_names(path)
    assert str(err.value).startswith(f"{path}:2:")


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_read_class_names_empty(tmp_path, content):
    with pytest.raises(DataError, match="no class names"):
        read_class_names(write(tmp_path, content, "classes.txt"))


def test_read_class_names_missing(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_class_names(tmp_path / "classes.txt")


# --- size --------------------------------------------------------------------


def test_one_megabyte_line(tmp_path):
    long_text = "长" * (1024 * 1024 // 3 + 1)  # > 1 MB in UTF-8
    path = write(tmp_path, f"短\tneg\n{long_text}\tpos\n")
    ex = read_examples(path)
    assert ex.texts[1] == long_text
    assert ex.labels == ["neg", "pos"]


def test_45000_lines(tmp_path):
    lines = [f"这是第{i}条评论，\t内容还算可以<SEP>{'pos' if i % 2 else 'neg'}" for i in range(45_000)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    ex = read_examples(path)
    assert len(ex.texts) == 45_000 and ex.skipped == 0
    assert ex.texts[1] == "这是第1条评论，\t内容还算可以"
    assert ex.labels[:2] == ["neg", "pos"] and ex.texts[-1].startswith("这是第44999条")
