"""``report.html``: the evaluation report as a page to look at, opened from disk with no server.

Pure: :func:`render` turns the ``report.json`` dict (and a few example texts) into one HTML file
whose pictures are inline SVG (no JavaScript, no network, no plotting library):

- single-label: the confusion matrix as a heat map (rows: true class, shaded by the share of the
  row, counts written in), per-class precision / recall / F1 bars, the eval metrics over the
  steps, and the most confused pairs with example texts from eval_data;
- multi-label: per-label precision / recall / F1 bars with each label's threshold, the metrics
  over the steps, and, for the labels with the lowest F1, texts where the label was missed or
  wrongly given.
"""

from __future__ import annotations

import html

BAR_COLORS = {"precision": "#6a9fd4", "recall": "#e0a040", "f1-score": "#3c9a5f"}
CURVE_COLORS = ["#c0392b", "#2471a3", "#27ae60", "#8e44ad", "#d68910"]
PAIRS_SHOWN = 8
LABELS_SHOWN = 5


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def confusion_svg(labels: list[str], matrix: list[list[int]]) -> str:
    """The confusion matrix as a heat map: cell (true i, predicted j) shaded by matrix[i][j] / row sum."""
    n = len(labels)
    cell = 34 if n <= 12 else 22
    left = 12 + 7 * max((len(x) for x in labels), default=1) + 8
    top = left
    w, h = left + n * cell + 10, top + n * cell + 30
    out = [f'<svg class="matrix" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
           f'aria-label="confusion matrix">']
    out.append(f'<text x="{left + n * cell / 2}" y="{h - 8}" text-anchor="middle" class="axis">predicted</text>')
    out.append(f'<text x="10" y="{top + n * cell / 2}" class="axis" transform="rotate(-90 10 {top + n * cell / 2})" '
               'text-anchor="middle">true</text>')
    for i, name in enumerate(labels):
        y = top + i * cell + cell / 2 + 4
        out.append(f'<text x="{left - 6}" y="{y}" text-anchor="end">{_e(name)}</text>')
        x = left + i * cell + cell / 2 + 4
        out.append(f'<text x="{x}" y="{top - 6}" transform="rotate(-60 {x} {top - 6})">{_e(name)}</text>')
    for i, row in enumerate(matrix):
        total = max(sum(row), 1)
        for j, count in enumerate(row):
            share = count / total
            color = f"rgba(30, 90, 170, {share:.3f})" if i == j else f"rgba(200, 60, 30, {min(1.0, 2 * share):.3f})"
            x, y = left + j * cell, top + i * cell
            out.append(f'<rect class="cell" x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{color}" stroke="#ddd" '
                       f'data-true="{_e(labels[i])}" data-predicted="{_e(labels[j])}" data-count="{count}">'
                       f'<title>true {_e(labels[i])}, predicted {_e(labels[j])}: {count} ({share:.1%} of the row)</title></rect>')
            if count:
                fill = "#fff" if share > 0.55 else "#222"
                out.append(f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle" class="count" '
                           f'fill="{fill}">{count}</text>')
    out.append("</svg>")
    return "".join(out)


def bars_svg(per_class: dict, labels: list[str], thresholds: dict | None = None) -> str:
    """Per-class precision, recall and F1 as horizontal bars (0 to 1), support (and threshold) written beside."""
    name_w = 12 + 7 * max((len(x) for x in labels), default=1)
    bar_w, row_h = 300, 36
    w, h = name_w + bar_w + 170, 30 + row_h * len(labels)
    out = [f'<svg class="bars" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
           'aria-label="per-class precision, recall and F1">']
    for k, (metric, color) in enumerate(BAR_COLORS.items()):
        out.append(f'<rect x="{name_w + 90 * k}" y="4" width="10" height="10" fill="{color}"/>'
                   f'<text x="{name_w + 90 * k + 14}" y="13">{metric.replace("-score", "")}</text>')
    for i, name in enumerate(labels):
        row = per_class.get(name, {})
        y = 24 + i * row_h
        out.append(f'<text x="{name_w - 6}" y="{y + 20}" text-anchor="end">{_e(name)}</text>')
        for k, (metric, color) in enumerate(BAR_COLORS.items()):
            v = float(row.get(metric, 0.0))
            out.append(f'<rect x="{name_w}" y="{y + 3 + 10 * k}" width="{bar_w * v:.1f}" height="9" fill="{color}">'
                       f'<title>{_e(name)} {metric}: {v:.4f}</title></rect>')
        note = f'F1 {float(row.get("f1-score", 0)):.3f}, support {int(row.get("support", 0))}'
        if thresholds and name in thresholds:
            note += f", threshold {thresholds[name]:.2f}"
        out.append(f'<text x="{name_w + bar_w + 8}" y="{y + 20}" class="note">{_e(note)}</text>')
    out.append("</svg>")
    return "".join(out)


def curves_svg(history: list[dict], metrics: list[str]) -> str:
    """Eval metrics over the training steps: one panel per metric (its own y range)."""
    panels = []
    steps = [h["step"] for h in history]
    for k, metric in enumerate(m for m in metrics if any(m in h for h in history)):
        pts = [(h["step"], float(h[metric])) for h in history if metric in h]
        w, h, pad = 320, 170, 40
        lo, hi = min(v for _, v in pts), max(v for _, v in pts)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        s0, s1 = min(steps), max(steps)
        span = max(s1 - s0, 1)

        def xy(step, v):
            return pad + (w - pad - 10) * (step - s0) / span, 20 + (h - 50) * (1 - (v - lo) / (hi - lo))

        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(s, v) for s, v in pts))
        color = CURVE_COLORS[k % len(CURVE_COLORS)]
        dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"><title>step {s}: {v:.4f}</title></circle>'
                       for (s, v), (x, y) in zip(pts, (xy(s, v) for s, v in pts)))
        panels.append(
            f'<svg class="curve" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
            f'aria-label="eval {_e(metric)} over steps">'
            f'<text x="{pad}" y="13" class="title">eval {_e(metric)}</text>'
            f'<line x1="{pad}" y1="{h - 30}" x2="{w - 10}" y2="{h - 30}" stroke="#999"/>'
            f'<line x1="{pad}" y1="20" x2="{pad}" y2="{h - 30}" stroke="#999"/>'
            f'<text x="{pad - 4}" y="24" text-anchor="end" class="note">{hi:.3g}</text>'
            f'<text x="{pad - 4}" y="{h - 30}" text-anchor="end" class="note">{lo:.3g}</text>'
            f'<text x="{pad}" y="{h - 14}" class="note">step {s0}</text>'
            f'<text x="{w - 10}" y="{h - 14}" text-anchor="end" class="note">step {s1}</text>'
            f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2"/>{dots}</svg>')
    return "".join(panels) or "<p>No evaluations recorded.</p>"


def worst_pairs(labels: list[str], matrix: list[list[int]], k: int = PAIRS_SHOWN) -> list[tuple[str, str, int]]:
    """The k largest off-diagonal cells: (true, predicted, count), largest first, zeros left out."""
    cells = [(matrix[i][j], i, j) for i in range(len(labels)) for j in range(len(labels)) if i != j and matrix[i][j]]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [(labels[i], labels[j], count) for count, i, j in cells[:k]]


def _examples_list(texts) -> str:
    if not texts:
        return '<p class="note">no example among the texts read for this report</p>'
    return "<ul>" + "".join(f"<li>{_e(t[:300])}{'…' if len(t) > 300 else ''}</li>" for t in texts) + "</ul>"


STYLE = """
body { font-family: system-ui, "Noto Sans CJK SC", sans-serif; margin: 1.5em; color: #222; max-width: 70em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table.summary td { padding: .1em 1em .1em 0; } svg { font-size: 12px; margin: .3em 1em .3em 0; }
svg text.count { font-size: 11px; } svg text.axis, svg text.title { font-weight: bold; } svg .note { fill: #555; }
.pair { margin: .8em 0; } .pair b { color: #a33; } li { margin: .2em 0; } .note { color: #666; font-size: .9em; }
"""


def render(report: dict, examples: dict | None = None) -> str:
    """The page for ``report`` (the dict written to report.json).

    ``examples``: single-label, ``{(true, predicted): [texts]}``; multi-label,
    ``{label: {"missed": [texts], "added": [texts]}}`` (see
    :func:`trainers.evaluation.report_examples`).
    """
    examples = examples or {}
    multi = bool(report.get("multi_label"))
    per_class = report.get("per_class", {})
    labels = list(per_class)
    shown = (("micro_f1", "macro_f1", "weighted_f1", "subset_accuracy", "hamming_loss") if multi
             else ("accuracy", "macro_f1", "loss"))
    summary = "".join(f"<tr><td>{_e(k)}</td><td>{float(report[k]):.4f}</td></tr>" for k in shown if k in report)
    facts = [("model", report.get("model_name")), ("eval data", report.get("eval_data")), ("examples", report.get("examples")),
             ("best step", report.get("best_step")), ("selected by", report.get("select_by")), ("export", report.get("export")),
             ("train seconds", report.get("train_seconds"))]
    summary += "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in facts if v is not None)
    parts = [f"<!doctype html><html lang='zh'><head><meta charset='utf-8'><title>{_e(report.get('model_name', 'model'))}: "
             f"evaluation report</title><style>{STYLE}</style></head><body>",
             f"<h1>{_e(report.get('model_name', 'model'))}: evaluation report</h1>",
             f"<table class='summary'>{summary}</table>"]
    if not multi and "confusion_matrix" in report:
        cm = report["confusion_matrix"]
        parts += ["<h2 id='confusion'>Confusion matrix</h2>",
                  "<p class='note'>Rows: the true class; columns: the predicted one. Blue: right (shaded by the row's share); "
                  "red: wrong. Hover a cell for its count.</p>", confusion_svg(cm["labels"], cm["rows_true_cols_predicted"])]
    parts += ["<h2 id='per-class'>Per " + ("label" if multi else "class") + " precision, recall and F1</h2>",
              bars_svg(per_class, labels, report.get("thresholds") if multi else None)]
    curves = ["loss", "micro_f1", "macro_f1"] if multi else ["loss", "accuracy", "macro_f1"]
    parts += ["<h2 id='curves'>Evaluation over the steps</h2>", "<div>" + curves_svg(report.get("history", []), curves) + "</div>"]
    if multi:
        worst = sorted(labels, key=lambda x: (per_class[x].get("f1-score", 0), x))[:LABELS_SHOWN]
        parts.append("<h2 id='worst'>Labels with the lowest F1</h2>")
        for name in worst:
            ex = examples.get(name, {})
            parts.append(f"<div class='pair'><b>{_e(name)}</b> (F1 {per_class[name].get('f1-score', 0):.3f}): missed in"
                         f"{_examples_list(ex.get('missed'))}wrongly given to{_examples_list(ex.get('added'))}</div>")
    elif "confusion_matrix" in report:
        cm = report["confusion_matrix"]
        pairs = worst_pairs(cm["labels"], cm["rows_true_cols_predicted"])
        parts.append("<h2 id='worst'>Most confused pairs</h2>")
        if not pairs:
            parts.append("<p>No eval text was misclassified.</p>")
        for true, pred, count in pairs:
            parts.append(f"<div class='pair'><b>{_e(true)}</b> taken for <b>{_e(pred)}</b>: {count} texts"
                         f"{_examples_list(examples.get((true, pred)))}</div>")
    parts.append("</body></html>\n")
    return "".join(parts)
