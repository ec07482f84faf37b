"""The export's ``explain`` signature (and ``attention_maps`` for Transformers): why the model decided.

``explain`` takes, per text, ``text`` (as ``serving_default`` takes it), ``method``
(``auto``, ``attention``, ``integrated_gradients``; empty = ``auto``) and ``label`` (the label
to explain; empty = the predicted one), and returns dense tensors, as TensorFlow Serving needs:

- ``label`` [N] string, ``probability`` [N] float: the explained label and its probability;
- ``method`` [N] string: the method used (``auto`` is attention where the model has it);
- ``tokens`` [N, W] string (``""`` past a text's end), ``starts``/``ends`` [N, W] int32 (the
  characters each token came from in ``text``; -1 past the end or where they cannot be told),
  ``scores`` [N, W] float (0 on padding): the tokens as the model saw them (at most
  ``sequence_length``), with their scores;
- ``ig_gap`` [N] float: for integrated gradients, f(text) - f(baseline) - sum(scores), the error
  of the 32-step midpoint rule (0 for attention rows).

The scores come from :class:`models.explain.Explainer`. Everything runs in the graph, so the
Predictor, ``serve.py`` and stock TensorFlow Serving give the same explanations.
"""

from __future__ import annotations

import tensorflow as tf

from models.explain import Explainer

IG_STEPS = 32  # the figure; a text whose gap stays above IG_TOLERANCE is done again with more (below)
# A text whose scores still miss f(text) - f(baseline) by more than IG_TOLERANCE is integrated
# again with each of IG_REFINE steps in turn (a demo BiLSTM: gaps of 0.91 at 64 steps, 0.05 at 256,
# 0.01 at 1024). Only those texts pay for it.
IG_TOLERANCE = 0.01
IG_REFINE = (256, 1024)
METHODS = ("auto", "attention", "integrated_gradients")


def raw_span(start: int, end: int, where) -> tuple[int, int]:
    """A token's span ``[start, end)`` in the text the graph saw -> its span in the caller's text.
    ``where[i]`` is the caller's index of the graph text's character i (-1 for a space jieba's
    segmentation put in, or the space that joins a long text's head and tail;
    ``Tokenizer.segment_with_offsets``). (-1, -1) where it cannot be told (a span cut by ``max_chars``)."""
    start, end = int(start), int(end)
    if 0 <= start < end <= len(where) and where[start] >= 0 and where[end - 1] >= 0:
        return int(where[start]), int(where[end - 1]) + 1
    return -1, -1


def explain_functions(model, encoder, labels: list[str], binary: bool, check_text=None) -> dict:
    """({signature name: (function, input signature)}, the object the archive must track) for
    the export. ``check_text(text)`` gives the ops that must pass before a text is used (word models)."""
    explainer = Explainer(model, binary)
    tokenizer, seq_len = encoder.tokenizer, encoder.sequence_length
    n_labels = len(labels)
    label_names = tf.constant(labels)
    label_index = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(labels), tf.range(n_labels, dtype=tf.int64)), default_value=-1)
    explainer.label_index = label_index  # tracked with the explainer, so the export keeps the table
    has_attention = explainer.has_attention

    def tokens_and_ids(text):
        checks = check_text(text) if check_text else []
        with tf.control_dependencies(checks):
            tokens, starts, ends = tokenizer.split_with_spans(tf.identity(text))
        tokens, starts, ends = tokenizer.clip(tokens, seq_len, starts, ends)
        ids = encoder.ids_from_tokens(tokens, full_width=False)
        width = tf.shape(ids)[1]
        dense = {
            "tokens": tokens.to_tensor(default_value="", shape=tf.stack([tf.shape(ids)[0], width])),
            "starts": tf.cast(starts.to_tensor(default_value=-1, shape=tf.stack([tf.shape(ids)[0], width])), tf.int32),
            "ends": tf.cast(ends.to_tensor(default_value=-1, shape=tf.stack([tf.shape(ids)[0], width])), tf.int32),
        }
        return ids, dense

    def explain(text, method, label):
        method = tf.where(tf.equal(method, ""), "auto", method)
        known = tf.reduce_any(tf.equal(method[:, None], tf.constant(METHODS)[None, :]), axis=1)
        wanted = label_index.lookup(label)
        checks = [
            tf.debugging.Assert(tf.reduce_all(known), ["method: must be one of auto, attention, integrated_gradients; got",
                                                       tf.boolean_mask(method, ~known)[:1]]),
            tf.debugging.Assert(tf.reduce_all((wanted >= 0) | tf.equal(label, "")),
                                ["label: not one of the model's labels (assets/labels.txt):",
                                 tf.boolean_mask(label, (wanted < 0) & tf.not_equal(label, ""))[:1]]),
        ]
        if not has_attention:
            checks.append(tf.debugging.Assert(tf.reduce_all(tf.not_equal(method, "attention")), [
                f"method: this model ({model.name}) has no attention; use integrated_gradients or auto"]))
        with tf.control_dependencies(checks):
            ids, dense = tokens_and_ids(tf.identity(text))
        use_attention = tf.logical_and(has_attention, tf.not_equal(method, "integrated_gradients"))
        n, width = tf.shape(ids)[0], tf.shape(ids)[1]

        def run():
            p = explainer._probabilities(ids)
            target = tf.where(tf.equal(label, ""), tf.argmax(p, axis=-1, output_type=tf.int64), wanted)
            target = tf.cast(target, tf.int32)
            if has_attention:
                attention = explainer.attention(ids, target)
            else:
                attention = tf.zeros(tf.shape(ids), tf.float32)

            def integrated():
                scores, f_text, f_base = explainer.integrated_gradients(ids, target, IG_STEPS)
                gap = f_text - f_base - tf.reduce_sum(scores, axis=1)
                for steps in IG_REFINE:  # texts whose scores do not add up yet: again, with more steps
                    scores, gap = tf.cond(tf.reduce_any(tf.abs(gap) > IG_TOLERANCE),
                                          lambda s=scores, g=gap, n=steps: refine(s, g, n), lambda s=scores, g=gap: (s, g))
                return scores, gap

            def refine(scores, gap, steps):
                rows = tf.where(tf.abs(gap) > IG_TOLERANCE)[:, 0]

                def one(i):  # one text at a time: steps x width x embedding floats, whatever the batch
                    s, f_text, f_base = explainer.integrated_gradients(ids[i : i + 1], target[i : i + 1], steps)
                    return s[0], f_text[0] - f_base[0] - tf.reduce_sum(s[0])

                s, g = tf.map_fn(one, rows, fn_output_signature=(tf.TensorSpec([None], tf.float32), tf.float32))
                return (tf.tensor_scatter_nd_update(scores, rows[:, None], s),
                        tf.tensor_scatter_nd_update(gap, rows[:, None], g))

            ig, gap = tf.cond(tf.reduce_any(~use_attention), integrated,
                              lambda: (tf.zeros(tf.shape(ids), tf.float32), tf.zeros([n], tf.float32)))
            scores = tf.where(use_attention[:, None], attention, ig)
            return (p, target, scores, tf.where(use_attention, 0.0, gap))

        def empty():  # a zero-row batch never reaches the model (oneDNN cannot multiply zero rows)
            return tf.zeros([0, n_labels]), tf.zeros([0], tf.int32), tf.zeros([0, width]), tf.zeros([0])

        p, target, scores, gap = tf.cond(n > 0, run, empty)
        return {
            "label": tf.gather(label_names, target),
            "probability": tf.gather(p, target, batch_dims=1),
            # every label's probability, with the label names beside them (the order of
            # assets/labels.txt), so a client needs nothing but this answer to draw it
            "probabilities": p,
            "classes": tf.tile(label_names[None, :], [n, 1]),
            "method": tf.where(use_attention, "attention", "integrated_gradients"),
            "scores": scores,
            "ig_gap": gap,
            **dense,
        }

    text_spec = tf.TensorSpec([None], tf.string, name="text")
    functions = {
        "explain": (explain, [text_spec, tf.TensorSpec([None], tf.string, name="method"),
                              tf.TensorSpec([None], tf.string, name="label")]),
    }
    if explainer.kind == "rollout":
        def attention_maps(text):
            ids, dense = tokens_and_ids(text)
            n, width = tf.shape(ids)[0], tf.shape(ids)[1]
            blocks, heads = len(explainer._blocks), explainer._blocks[0].num_heads
            maps = tf.cond(n > 0, lambda: explainer.attention_maps(ids), lambda: tf.zeros([0, blocks, heads, width, width]))
            return {"maps": maps, **dense}

        functions["attention_maps"] = (attention_maps, [text_spec])
    return functions, explainer
