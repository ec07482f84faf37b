import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="textcls")
class FusedBidirectionalLSTM(keras.layers.Layer):
    """A bidirectional LSTM over right-padded sequences, on TensorFlow's fused LSTM kernel.

    The same function as `keras.layers.Bidirectional(keras.layers.LSTM(units))` called with
    a padding mask (same weights, same outputs to float precision), but each direction runs
    as one `BlockLSTM` op over the whole sequence instead of a `while_loop` of small ops:
    several times faster on a CPU, for training and serving. `BlockLSTM` is a core
    TensorFlow op, so SavedModels that use it load in stock TensorFlow Serving. This layer
    therefore needs the TensorFlow backend.

    Padding must come after each text (right padding), as the toolkit's encoder makes it.
    The backward direction reads each text from its own last token: it reverses every
    sequence by its length, runs forward, and reverses back. Outputs at padded positions
    are zeros; a fully padded row gives zeros.

    Args:
        units: LSTM units per direction (the output has `2 * units` channels).
        return_sequences: return `[batch, seq, 2 * units]` (every position) instead of
            `[batch, 2 * units]` (the forward and backward final states).
        **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Example:

    ```python
    x = keras.random.normal((2, 5, 8))
    mask = ops.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], "bool")
    FusedBidirectionalLSTM(16)(x, mask=mask)  # [2, 32]
    ```
    """

    def __init__(self, units, return_sequences=False, **kwargs):
        super().__init__(**kwargs)
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError("FusedBidirectionalLSTM needs the TensorFlow backend")
        self.units = int(units)
        self.return_sequences = bool(return_sequences)
        self.supports_masking = True

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None:
            raise ValueError(f"FusedBidirectionalLSTM needs a known last dimension. Received: input_shape={input_shape}")
        u = self.units
        for side in ("forward", "backward"):
            # Keras LSTM's weights and initialisers: gates in the order i, f, c, o,
            # forget-gate bias starting at 1.
            kernel = self.add_weight(name=f"{side}_kernel", shape=(dim, 4 * u), initializer="glorot_uniform")
            recurrent = self.add_weight(name=f"{side}_recurrent_kernel", shape=(u, 4 * u), initializer="orthogonal")
            bias = self.add_weight(
                name=f"{side}_bias",
                shape=(4 * u,),
                initializer=lambda shape, dtype=None: ops.concatenate(
                    [ops.zeros((u,)), ops.ones((u,)), ops.zeros((2 * u,))]
                ),
            )
            setattr(self, f"_{side}", (kernel, recurrent, bias))

    @staticmethod
    def _block_gate_order(m):
        """Keras keeps the gates as i, f, c, o; BlockLSTM wants i, c, f, o."""
        i, f, c, o = tf.split(m, 4, axis=-1)
        return tf.concat([i, c, f, o], axis=-1)

    def _run(self, x_time_major, weights):
        # BlockLSTM, not BlockLSTMV2: in TensorFlow 2.21 V2's registered gradient does not
        # match its forward pass (tested against Keras' LSTM in bidirectional_lstm_test.py).
        kernel, recurrent, bias = weights
        batch = tf.shape(x_time_major)[1]
        zeros = tf.zeros(tf.stack([batch, self.units]), x_time_major.dtype)
        no_peephole = tf.zeros([self.units], x_time_major.dtype)
        return tf.raw_ops.BlockLSTM(
            seq_len_max=tf.cast(tf.shape(x_time_major)[0], tf.int64),
            x=x_time_major,
            cs_prev=zeros,
            h_prev=zeros,
            w=self._block_gate_order(tf.concat([kernel, recurrent], axis=0)),
            wci=no_peephole,
            wcf=no_peephole,
            wco=no_peephole,
            b=self._block_gate_order(bias),
            forget_bias=0.0,  # Keras learns the forget bias (it starts at 1) instead
            cell_clip=-1.0,  # no clipping, as in Keras
            use_peephole=False,
        )[6]  # h at every step: [seq, batch, units]

    def call(self, inputs, mask=None):
        x = tf.convert_to_tensor(inputs)
        if mask is None:
            mask = tf.ones(tf.shape(x)[:2], tf.bool)
        mask = tf.cast(mask, tf.bool)
        lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
        xt = tf.transpose(x, [1, 0, 2])
        fwd = self._run(xt, self._forward)
        rev = tf.reverse_sequence(xt, lengths, seq_axis=0, batch_axis=1)
        bwd = self._run(rev, self._backward)
        if self.return_sequences:
            bwd = tf.reverse_sequence(bwd, lengths, seq_axis=0, batch_axis=1)
            out = tf.transpose(tf.concat([fwd, bwd], axis=-1), [1, 0, 2])
            return out * tf.cast(mask, out.dtype)[:, :, None]
        last = tf.maximum(lengths - 1, 0)
        idx = tf.stack([last, tf.range(tf.shape(x)[0])], axis=1)
        final = tf.concat([tf.gather_nd(fwd, idx), tf.gather_nd(bwd, idx)], axis=-1)
        return final * tf.cast(lengths > 0, final.dtype)[:, None]

    def compute_mask(self, inputs, mask=None):
        return mask if self.return_sequences else None

    def compute_output_shape(self, input_shape):
        if self.return_sequences:
            return (input_shape[0], input_shape[1], 2 * self.units)
        return (input_shape[0], 2 * self.units)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "return_sequences": self.return_sequences})
        return config
