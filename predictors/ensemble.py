"""An in-graph ensemble: several exports of the same labels become one SavedModel that averages
their probabilities.

    python -m predictors.ensemble --out pb_model/ensemble pb_model/textcnn/1 pb_model/transformer/1 ...
    python -m predictors.ensemble --out pb_model/ensemble --select-on dev.txt [--class-names class.txt] EXPORTS...

With ``--select-on``, the members are chosen on a labelled file (a dev set, never the test set) by
greedy forward selection (Caruana et al., 2004, without replacement): start from the most accurate
export, then add the one that raises the mean's accuracy most, while it rises; at least two.

The result is an ordinary export, in TensorFlow Serving's layout (``--out/<version>``): its
``serving_default`` takes ``text`` (string [None]) and gives ``label`` and ``probabilities``
(float [None, n_labels], in the order of ``assets/labels.txt``), the mean of the members'
probabilities. Each member keeps its own tokenizer and vocabulary inside the graph, so members
may read different vocabularies and sequence lengths; they must take the same text (all
``char``, or all ``word`` with the same user dictionary, since a ``word`` model takes text
segmented by jieba) and have the same labels in the same order. The Predictor, ``serve.py`` and
stock TensorFlow Serving load it as they load one model's export.

An ensemble has no ``predict_ids`` signature (its members may read different ids). It has an
``explain`` signature when every member has one and they all read the same tokens (the same
tokenizer settings and ``sequence_length``; a config's ``ensemble_size`` members always do):
it explains the ensemble's label (or the one asked for) with the mean of the members' scores
for that label. For integrated gradients that mean is exactly the integrated gradients of the
ensemble's probability, along the path that scales every member's embeddings by the same alpha,
so the scores still add up to f(text) - f(baseline) and ``ig_gap`` is the mean of the members'
gaps; for attention it is the mean of the members' attention weights (``auto`` is attention only
when every member would pick it, else integrated gradients). Multi-label exports are
refused: each member decides with its own thresholds, which an average of probabilities would
not respect.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from data_helpers.io_utils import atomic_write_json, read_json
from data_helpers.vocab import FORMAT

__all__ = ["EnsembleError", "export_ensemble", "check_members", "explain_problem", "greedy_selection", "select_members"]


class EnsembleError(ValueError):
    """The members cannot be averaged: the message names the member and what differs."""


def _meta(export_dir: str) -> dict:
    path = os.path.join(export_dir, "assets", "vocab.json")
    if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")) or not os.path.isfile(path):
        raise EnsembleError(f"{export_dir}: not an export folder (expected pb_model_path/<version> with saved_model.pb "
                            "and assets/vocab.json)")
    meta = read_json(path)
    if meta.get("format") != FORMAT:
        raise EnsembleError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def _user_dict(export_dir: str) -> bytes | None:
    path = os.path.join(export_dir, "assets", "user_dict.txt")
    return open(path, "rb").read() if os.path.isfile(path) else None


def check_members(export_dirs: list[str]) -> list[dict]:
    """Each member's vocab.json, after checking the members can be averaged (EnsembleError if not)."""
    if len(export_dirs) < 2:
        raise EnsembleError(f"an ensemble needs at least two exports, got {len(export_dirs)}")
    if len(set(map(os.path.realpath, export_dirs))) != len(export_dirs):
        raise EnsembleError("the same export is named twice")
    metas = [_meta(d) for d in export_dirs]
    first, head = metas[0], export_dirs[0]
    for d, m in zip(export_dirs, metas):
        if m.get("multi_label"):
            raise EnsembleError(f"{d}: a multi-label export; an ensemble averages single-label models only")
        if m["labels"] != first["labels"]:
            raise EnsembleError(f"{d}: labels {m['labels']} differ from {head}'s {first['labels']} (same labels, same order)")
        if m["tokenizer"]["mode"] != first["tokenizer"]["mode"]:
            raise EnsembleError(f"{d}: tokenizer {m['tokenizer']['mode']!r}, {head}'s is {first['tokenizer']['mode']!r}: "
                                "the members must take the same text")
        if m["tokenizer"]["mode"] == "word" and _user_dict(d) != _user_dict(head):
            raise EnsembleError(f"{d}: another jieba user dictionary than {head}'s: the members must take the same text")
    return metas


def select_members(export_dirs: list[str], texts: list[str], labels: list[str], log=print) -> list[str]:
    """Greedy forward selection on labelled texts: the exports whose mean is chosen, in the order
    they were added (see the module doc). ``labels`` are class names, as the exports answer."""
    import numpy as np

    from predictors import Predictor

    check_members(export_dirs)
    if not texts or len(texts) != len(labels):
        raise EnsembleError(f"selection needs labelled texts, got {len(texts)} texts and {len(labels)} labels")
    classes = None
    probs = {}
    for d in export_dirs:
        p = Predictor.from_saved_model(d)
        classes = p.classes_
        probs[d] = p.predict_proba_array(texts)
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise EnsembleError(f"labels {unknown[:3]} are not the exports' labels {classes[:5]}... (integer ids need --class-names)")
    y = np.array([classes.index(label) for label in labels])
    chosen, accuracies = greedy_selection([probs[d] for d in export_dirs], y)
    for k, (i, acc) in enumerate(zip(chosen, accuracies), 1):
        log(f"selection: {k} member(s), accuracy {acc:.4f} (+ {export_dirs[i]})")
    return [export_dirs[i] for i in chosen]


def greedy_selection(probs: list, y) -> tuple[list[int], list[float]]:
    """Indices of ``probs`` (each [n, n_classes]) chosen by greedy forward selection for the
    accuracy of their mean against ``y`` [n]: the most accurate first, then whichever raises the
    mean's accuracy most (the earliest on ties), while it rises; at least two when there are two.
    With them, the accuracy of the mean of the first 1, 2, ... chosen."""
    import numpy as np

    y = np.asarray(y)
    total = [np.asarray(p, np.float64) for p in probs]

    def accuracy(members):
        return float(np.mean(np.sum([total[i] for i in members], axis=0).argmax(axis=1) == y))

    chosen, scores = [], []
    while len(chosen) < len(total):
        score, neg_i = max((accuracy(chosen + [i]), -i) for i in range(len(total)) if i not in chosen)
        if len(chosen) >= 2 and score <= max(scores):
            break
        chosen.append(-neg_i)
        scores.append(score)
    return chosen, scores


def explain_problem(export_dirs: list[str], metas: list[dict], signatures: list) -> str | None:
    """Why these members' ensemble cannot explain itself, or None when it can: every member has
    an ``explain`` signature and reads the same tokens (tokenizer settings and sequence_length)."""
    head, first = metas[0], export_dirs[0]
    for d, m, sig in zip(export_dirs, metas, signatures):
        if "explain" not in sig:
            return f"{d} has none"
        if m["tokenizer"] != head["tokenizer"] or m["sequence_length"] != head["sequence_length"]:
            return f"{d} reads other tokens than {first} (tokenizer settings or sequence_length differ)"
    return None


def export_ensemble(export_dirs: list[str], base_dir: str, keep: int = 3, log=print) -> str:
    """Write the ensemble of ``export_dirs`` as the next version under ``base_dir``; its path."""
    import tensorflow as tf

    from predictors.export import write_version

    metas = check_members(export_dirs)
    labels = list(metas[0]["labels"])
    text_spec = tf.TensorSpec([None], tf.string, name="text")

    class Ensemble(tf.Module):
        def __init__(self):
            super().__init__(name="ensemble")
            self.members = [tf.saved_model.load(d) for d in export_dirs]
            self.labels = tf.constant(labels)

        def probabilities(self, text):
            p = tf.add_n([m.signatures["serving_default"](text=text)["probabilities"] for m in self.members])
            return p / float(len(self.members))

        @tf.function(input_signature=[text_spec])
        def serve(self, text):
            p = self.probabilities(text)
            return {"label": tf.gather(self.labels, tf.argmax(p, axis=-1)), "probabilities": p}

        auto = "auto"  # what `auto` asks of the members: integrated_gradients where they would pick differently

        def explain(self, text, method, label):  # a tf.function only when the members can (see write)
            method = tf.where(tf.equal(method, "") | tf.equal(method, "auto"), self.auto, method)
            p = self.probabilities(text)
            # the ensemble's label, not each member's: every member explains the same one
            label = tf.where(tf.equal(label, ""), tf.gather(self.labels, tf.argmax(p, axis=-1)), label)
            outs = [m.signatures["explain"](text=text, method=method, label=label) for m in self.members]
            index = tf.argmax(tf.cast(tf.equal(label[:, None], self.labels[None, :]), tf.int32), axis=-1)
            mean = lambda key: tf.add_n([o[key] for o in outs]) / float(len(outs))  # noqa: E731
            first = outs[0]  # the tokens, spans and method, alike in every member (see explain_problem)
            return {**{k: first[k] for k in ("label", "classes", "method", "tokens", "starts", "ends")},
                    "probability": tf.gather(p, index, batch_dims=1), "probabilities": p,
                    "scores": mean("scores"), "ig_gap": mean("ig_gap")}

    def write(model_dir: str, staging: str) -> None:
        module = Ensemble()
        signatures = {"serving_default": module.serve}
        why_not = explain_problem(export_dirs, metas, [m.signatures for m in module.members])
        if why_not is None:
            # With members that would pick different methods for `auto` (attention in one, integrated
            # gradients in another), `auto` asks all of them for integrated gradients, which every model has.
            probe = {"text": tf.constant(["a"]), "method": tf.constant(["auto"]), "label": tf.constant([""])}
            picks = {m.signatures["explain"](**probe)["method"].numpy()[0] for m in module.members}
            module.auto = "auto" if len(picks) == 1 else "integrated_gradients"
            # set on the module only here: saving traces every tf.function a module holds
            module.explain_fn = tf.function(module.explain, input_signature=[
                text_spec, tf.TensorSpec([None], tf.string, name="method"), tf.TensorSpec([None], tf.string, name="label")])
            signatures["explain"] = module.explain_fn
        else:
            log(f"ensemble: no explain signature ({why_not})")
        tf.saved_model.save(module, model_dir, signatures=signatures)
        assets = os.path.join(model_dir, "assets")
        os.makedirs(assets, exist_ok=True)
        head = metas[0]
        with open(os.path.join(assets, "labels.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(labels) + "\n")
        if _user_dict(export_dirs[0]) is not None:
            shutil.copyfile(os.path.join(export_dirs[0], "assets", "user_dict.txt"), os.path.join(assets, "user_dict.txt"))
        atomic_write_json(os.path.join(assets, "vocab.json"), {
            "format": FORMAT,
            "tokenizer": head["tokenizer"],  # how callers prepare text (jieba for word models); every member's is alike
            "sequence_length": max(m["sequence_length"] for m in metas),
            "binary": head["binary"],
            "multi_label": False,
            "label_sep": head.get("label_sep"),
            # the members' own when they agree (a config's ensemble_size members do), so the
            # Predictor's stale-vocab check against that config holds
            "settings": head["settings"] if all(m.get("settings") == head.get("settings") for m in metas) else {},
            "fingerprint": head.get("fingerprint") if all(m.get("fingerprint") == head.get("fingerprint") for m in metas) else None,
            "labels": labels,
            "ensemble": [{"export": os.path.abspath(d), "fingerprint": m.get("fingerprint"),
                          "sequence_length": m["sequence_length"]} for d, m in zip(export_dirs, metas)],
        })

    return write_version(base_dir, write, keep, log)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m predictors.ensemble",
                                 description="Average several exports' probabilities in one SavedModel.")
    ap.add_argument("exports", nargs="+", help="export folders (pb_model_path/<version>), two or more")
    ap.add_argument("--out", required=True, help="base folder; the ensemble becomes its next version")
    ap.add_argument("--keep", type=int, default=3, help="versions kept in --out")
    ap.add_argument("--select-on", help="choose the members on this labelled file (text<TAB>label lines; a dev set)")
    ap.add_argument("--class-names", help="with --select-on: class names by label id, for files with integer labels")
    args = ap.parse_args(argv)
    try:
        members = args.exports
        if args.select_on:
            from data_helpers.reader import read_class_names, read_examples

            names = read_class_names(args.class_names) if args.class_names else None
            data = read_examples(args.select_on, id_to_name=names, log=lambda *a: None)
            members = select_members(args.exports, data.texts, data.labels, log=lambda m: print(m, file=sys.stderr))
        path = export_ensemble(members, args.out, args.keep, log=lambda *a: None)
    except (EnsembleError, OSError, ValueError) as e:
        print(f"error: {e}".replace("\n", " "), file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
