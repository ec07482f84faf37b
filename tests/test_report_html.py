"""report.html's rendering (pure: a report dict in, HTML out) and the span mapping the Predictor
and the server share; the browser test of the rendered page is in test_page.py."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from predictors.explanation import raw_span
from trainers.report_html import render, worst_pairs


def single_report(labels, matrix, history=None):
    per = {n: {"precision": 0.5, "recall": 0.25, "f1-score": 1 / 3, "support": sum(matrix[i])} for i, n in enumerate(labels)}
    return {"model_name": "textcnn", "eval_data": "eval.txt", "accuracy": 0.5, "macro_f1": 0.4, "loss": 0.9,
            "per_class": per, "confusion_matrix": {"labels": labels, "rows_true_cols_predicted": matrix},
            "history": history if history is not None else [{"step": 10, "loss": 1.0, "accuracy": 0.4, "macro_f1": 0.3},
                                   {"step": 20, "loss": 0.8, "accuracy": 0.5, "macro_f1": 0.4}]}


def test_worst_pairs_are_the_largest_off_diagonal_cells():
    labels = ["a", "b", "c"]
    matrix = [[9, 3, 0], [5, 7, 1], [0, 3, 2]]
    assert worst_pairs(labels, matrix) == [("b", "a", 5), ("a", "b", 3), ("c", "b", 3), ("b", "c", 1)]
    assert worst_pairs(labels, [[4, 0, 0], [0, 4, 0], [0, 0, 4]]) == []
    assert worst_pairs(labels, matrix, k=1) == [("b", "a", 5)]


def test_single_label_page_has_the_matrix_bars_curves_and_examples():
    labels = ["体育", "财经", "<b>科技</b>"]
    matrix = [[9, 3, 0], [5, 7, 1], [0, 3, 2]]
    page = render(single_report(labels, matrix), {("财经", "体育"): ["股市 <script>alert(1)</script> 大涨"]})
    assert page.count('class="cell"') == 9
    counts = [int(c) for c in re.findall(r'data-count="(\d+)"', page)]
    assert counts == [c for row in matrix for c in row]
    assert "<script>" not in page and "&lt;script&gt;" in page  # texts and names are escaped
    assert "&lt;b&gt;科技&lt;/b&gt;" in page and "<b>科技</b>" not in page
    assert page.count("<polyline") == 3  # loss, accuracy, macro_f1 over the steps
    worst = page[page.index("id='worst'"):]
    assert worst.index("财经") < worst.index("taken for")  # true class first, the largest pair first
    assert "股市" in worst and "no example among the texts" in worst  # examples where given, said where not


def test_a_perfect_run_and_no_history_still_render():
    page = render(single_report(["a", "b"], [[3, 0], [0, 2]], history=[]), {})
    assert "No eval text was misclassified" in page and "No evaluations recorded" in page


def test_multi_label_page_has_thresholds_and_the_worst_labels_instead_of_a_matrix():
    per = {"价格": {"precision": 0.9, "recall": 0.8, "f1-score": 0.85, "support": 40},
           "油耗": {"precision": 0.2, "recall": 0.1, "f1-score": 0.13, "support": 5}}
    report = {"model_name": "textcnn", "multi_label": True, "micro_f1": 0.8, "macro_f1": 0.5, "per_class": per,
              "thresholds": {"价格": 0.4, "油耗": 0.65},
              "history": [{"step": 5, "loss": 0.3, "micro_f1": 0.7, "macro_f1": 0.4}]}
    page = render(report, {"油耗": {"missed": ["百公里八个油"], "added": []}})
    assert 'class="matrix"' not in page and "threshold 0.65" in page
    worst = page[page.index("id='worst'"):]
    assert worst.index("油耗") < worst.index("价格")  # lowest F1 first
    assert "百公里八个油" in worst


@given(st.lists(st.text(alphabet="ab 中文", min_size=1, max_size=4), min_size=1, max_size=8), st.data())
def test_raw_span_maps_segmented_spans_back_to_the_raw_text(words, data):
    """As Tokenizer.segment_with_offsets builds ``where``: words joined by spaces it put in."""
    raw = "".join(words)
    segmented, where, pos = "", [], 0
    for i, w in enumerate(words):
        if i:
            segmented += " "
            where.append(-1)
        segmented += w
        where.extend(range(pos, pos + len(w)))
        pos += len(w)
    start = data.draw(st.integers(0, len(segmented)))
    end = data.draw(st.integers(start, len(segmented) + 2))
    a, b = raw_span(start, end, where)
    inside = 0 <= start < end <= len(segmented)
    if inside and where[start] >= 0 and where[end - 1] >= 0:
        assert raw[a:b].replace(" ", "") == segmented[start:end].replace(" ", "")
    else:
        assert (a, b) == (-1, -1)
