"""Why a model decided: attention weights and integrated gradients over token embeddings.

:class:`Explainer` wraps a model built by :func:`models.build_model` (sharing its weights, adding
no variables) and gives, for token ids ``[batch, seq]`` (0 = padding):

- :meth:`Explainer.attention`: weights over the real tokens that sum to 1 (0 on padding), for
  the models built on attention:
  - ``bilstm_atten``: the additive attention weights the model pools with;
  - ``transformer``: attention rollout (Abnar and Zuidema, 2020). Each block's self-attention
    is averaged over heads, the residual connection is added as ``0.5 A + 0.5 I`` (rows
    renormalised), and the blocks are multiplied from the first to the last. The model
    classifies the mean of its last block's outputs over the real tokens, so the rollout rows
    of the real tokens are averaged: how much each input token flows into what the model pools.
    :meth:`Explainer.attention_maps` gives the raw per-block, per-head maps.
- :meth:`Explainer.integrated_gradients` (Sundararajan et al., 2017), for every model: the
  gradient of the explained label's probability, integrated along the straight line from the
  baseline (every token replaced by padding, id 0, embedded by the same layers, n-gram
  embeddings included; the padding mask kept) to the text's embeddings, times their
  difference, summed over the embedding. The scores add up to ``f(text) - f(baseline)`` up to
  the error of the midpoint rule over ``steps`` points, which is returned so callers can
  report it.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from models import split_at_embeddings

ADDITIVE, ROLLOUT = "additive", "rollout"


def _first(inputs):
    """A layer's main input (Keras lists tensor keyword arguments such as masks with it)."""
    return inputs[0] if isinstance(inputs, (list, tuple)) else inputs


class Explainer(tf.Module):
    """Attention and integrated gradients for one model.

    Args:
        model: a model from :func:`models.build_model`.
        binary: the model has one sigmoid output for two labels (P(label 1)).

    Example:
        >>> ex = Explainer(model)
        >>> weights = ex.attention(ids)                                # bilstm_atten, transformer
        >>> scores, f_text, f_base = ex.integrated_gradients(ids, target, steps=32)
    """

    def __init__(self, model: keras.Model, binary: bool = False):
        super().__init__(name="explainer")
        self.model = model
        self.binary = bool(binary)
        names = {layer.name for layer in model.layers}
        ids = model.input
        self._embed, self._from_embeddings = split_at_embeddings(model)
        self.kind = None
        # The attention layers are called again on their own inputs (read off the model by
        # sub-models) asking for their weights: no second symbolic node with other outputs,
        # which Keras's functional graph check cannot follow.
        if "attention" in names:
            self._pool = model.get_layer("attention")
            call = self._pool._inbound_nodes[0].arguments  # its values, and keys when it scores on others
            keys = call.kwargs.get("keys")
            inputs = {"inputs": call.args[0]} if keys is None else {"inputs": call.args[0], "keys": keys}
            self._hidden = keras.Model(ids, inputs, name="attention_inputs")
            self.kind = ADDITIVE
        elif "encoder_0" in names:
            self._blocks = []
            while f"encoder_{len(self._blocks)}" in names:
                self._blocks.append(model.get_layer(f"encoder_{len(self._blocks)}"))
            self._block_inputs = keras.Model(ids, [_first(b.input) for b in self._blocks], name="block_inputs")
            self.kind = ROLLOUT

    @property
    def has_attention(self) -> bool:
        return self.kind is not None

    def _probabilities(self, ids, embeddings=None):
        p = self.model(ids, training=False) if embeddings is None else self._from_embeddings([ids, embeddings], training=False)
        p = tf.cast(p, tf.float32)
        return tf.concat([1.0 - p, p], axis=-1) if self.binary else p

    def attention_maps(self, ids) -> tf.Tensor:
        """Transformer only: self-attention [batch, blocks, heads, seq, seq] (query by key)."""
        xs = self._block_inputs(ids, training=False)
        xs = xs if isinstance(xs, (list, tuple)) else [xs]
        real = tf.not_equal(ids, 0)
        maps = [b(x, padding_mask=real, training=False, return_attention_scores=True)[1] for b, x in zip(self._blocks, xs)]
        return tf.stack([tf.cast(m, tf.float32) for m in maps], axis=1)

    def attention(self, ids, target=None) -> tf.Tensor:
        """[batch, seq] weights over the real tokens, summing to 1 (0 on padding and for empty rows).

        A model with one attention per label (``bilstm_atten``'s ``per_label``) gives label
        ``target`` [batch]'s (default: the likeliest label's); the others ignore ``target``."""
        real = tf.cast(tf.not_equal(ids, 0), tf.float32)
        if self.kind == ADDITIVE:
            inputs = self._hidden(ids, training=False)
            w = tf.cast(self._pool(**inputs, mask=tf.not_equal(ids, 0), return_attention_scores=True)[1], tf.float32)
            if w.shape.rank == 3:  # [batch, labels, seq]: the target label's
                if w.shape[1] == 1:  # one sigmoid (binary): one attention for both answers
                    w = w[:, 0]
                else:
                    if target is None:
                        target = tf.argmax(self._probabilities(ids), axis=-1, output_type=tf.int32)
                    w = tf.gather(w, tf.cast(target, tf.int32), axis=1, batch_dims=1)
        elif self.kind == ROLLOUT:
            maps = self.attention_maps(ids)  # [b, L, h, s, s]
            eye = tf.eye(tf.shape(ids)[1], batch_shape=[tf.shape(ids)[0]])
            flow = eye
            for i in range(maps.shape[1]):
                a = 0.5 * tf.reduce_mean(maps[:, i], axis=1) + 0.5 * eye
                a = a / tf.maximum(tf.reduce_sum(a, axis=-1, keepdims=True), 1e-12)
                flow = tf.matmul(a, flow)
            # The mean over the real positions (what the model pools), read per input token.
            w = tf.reduce_sum(flow * real[:, :, None], axis=1) / tf.maximum(tf.reduce_sum(real, axis=1, keepdims=True), 1.0)
        else:
            raise ValueError(f"model {self.model.name} has no attention; use integrated gradients")
        w = w * real
        return w / tf.maximum(tf.reduce_sum(w, axis=1, keepdims=True), 1e-12)

    def integrated_gradients(self, ids, target, steps: int = 32):
        """Scores [batch, seq] for the label index ``target`` [batch] of each row, with
        f(text) [batch] and f(baseline) [batch]: the label's probabilities at both ends."""
        ids = tf.convert_to_tensor(ids, tf.int32)
        target = tf.cast(target, tf.int32)
        batch, width = tf.shape(ids)[0], tf.shape(ids)[1]
        x = tf.cast(self._embed(ids, training=False), tf.float32)
        base = tf.cast(self._embed(tf.zeros_like(ids), training=False), tf.float32)
        alphas = (tf.range(steps, dtype=tf.float32) + 0.5) / float(steps)  # midpoint rule
        path = base[None] + alphas[:, None, None, None] * (x - base)[None]  # [steps, b, s, d]
        path = tf.reshape(path, tf.concat([[steps * batch, width], tf.shape(x)[2:]], 0))
        tiled_ids = tf.tile(ids, [steps, 1])
        tiled_target = tf.tile(target, [steps])
        with tf.GradientTape() as tape:
            tape.watch(path)
            p = self._probabilities(tiled_ids, path)
            f = tf.gather(p, tiled_target, batch_dims=1)
        grads = tf.reshape(tape.gradient(f, path), tf.concat([[steps, batch, width], tf.shape(x)[2:]], 0))
        scores = tf.reduce_sum(tf.reduce_mean(grads, axis=0) * (x - base), axis=-1)
        f_text = tf.gather(self._probabilities(ids), target, batch_dims=1)
        f_base = tf.gather(self._probabilities(ids, base), target, batch_dims=1)
        return scores * tf.cast(tf.not_equal(ids, 0), tf.float32), f_text, f_base
