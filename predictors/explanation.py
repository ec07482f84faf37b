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

IG_STEPS = 64  # 32 left gaps up to 0.13 in probability on a tiny BiLSTM-attention; 64: 0.002
METHODS = ("auto", "attention", "integrated_gradients")


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
        tokens, starts, ends = tokens[:, :seq_len], starts[:, :seq_len], ends[:, :seq_len]
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
                attention = explainer.attention(ids)
            else:
                attention = tf.zeros(tf.shape(ids), tf.float32)

            def integrated():
                scores, f_text, f_base = explainer.integrated_gradients(ids, target, IG_STEPS)
                return scores, f_text - f_base - tf.reduce_sum(scores, axis=1)

            ig, gap = tf.cond(tf.reduce_any(~use_attention), integrated,
                              lambda: (tf.zeros(tf.shape(ids), tf.float32), tf.zeros([n], tf.float32)))
            scores = tf.where(use_attention[:, None], attention, ig)
            return (tf.gather(p, target, batch_dims=1), target, scores, tf.where(use_attention, 0.0, gap))

        def empty():  # a zero-row batch never reaches the model (oneDNN cannot multiply zero rows)
            return tf.zeros([0]), tf.zeros([0], tf.int32), tf.zeros([0, width]), tf.zeros([0])

        probability, target, scores, gap = tf.cond(n > 0, run, empty)
        return {
            "label": tf.gather(label_names, target),
            "probability": probability,
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
