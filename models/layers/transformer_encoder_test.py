import numpy as np
import pytest
import keras
from keras import ops

from models.layers.masked_pooling import MaskedGlobalAveragePooling1D
from models.layers.transformer_encoder import TransformerEncoderBlock

RNG = np.random.default_rng(0)
INPUTS = RNG.normal(size=(3, 5, 8)).astype("float32")
MASK = np.array(
    [
        [True, True, True, False, False],
        [True, True, True, True, True],
        [False, False, False, False, False],
    ]
)


def make_block(**kwargs):
    keras.utils.set_random_seed(1)
    kwargs = {"num_heads": 2, "intermediate_dim": 16, **kwargs}
    block = TransformerEncoderBlock(**kwargs)
    block.build((None, None, 8))
    return block


def numpy_block(block, x, mask, eps=1e-6):
    """Reference forward pass of the post-LN block from its weights."""
    w = lambda v: ops.convert_to_numpy(v)  # noqa: E731
    mha = block._self_attention_layer
    q = np.einsum("bsd,dnh->bsnh", x, w(mha.query_dense.kernel)) + w(
        mha.query_dense.bias
    )
    k = np.einsum("bsd,dnh->bsnh", x, w(mha.key_dense.kernel)) + w(
        mha.key_dense.bias
    )
    v = np.einsum("bsd,dnh->bsnh", x, w(mha.value_dense.kernel)) + w(
        mha.value_dense.bias
    )
    scores = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1])
    scores = np.where(mask[:, None, None, :], scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = np.einsum("bnts,bsnh->btnh", probs, v)
    attended = np.einsum(
        "btnh,nhd->btd", context, w(mha.output_dense.kernel)
    ) + w(mha.output_dense.bias)

    def layer_norm(y, ln):
        mean = y.mean(-1, keepdims=True)
        var = y.var(-1, keepdims=True)
        return (y - mean) / np.sqrt(var + eps) * w(ln.gamma) + w(ln.beta)

    x = layer_norm(x + attended, block._self_attention_layer_norm)
    hidden = np.maximum(
        x @ w(block._feedforward_intermediate_dense.kernel)
        + w(block._feedforward_intermediate_dense.bias),
        0,
    )
    hidden = hidden @ w(block._feedforward_output_dense.kernel) + w(
        block._feedforward_output_dense.bias
    )
    return layer_norm(x + hidden, block._feedforward_layer_norm)


def test_weights_exist_after_build_and_shape():
    block = make_block()
    # 4 attention kernels + 4 biases, 2 x (gamma, beta), 2 x (kernel, bias).
    assert len(block.trainable_weights) == 16
    outputs = block(INPUTS, padding_mask=MASK)
    assert tuple(outputs.shape) == (3, 5, 8)
    assert tuple(block(INPUTS).shape) == (3, 5, 8)
    assert block.compute_output_shape((None, None, 8)) == (None, None, 8)


def test_matches_numpy_reference():
    block = make_block()
    real = MASK[:2]  # rows with at least one real token
    outputs = ops.convert_to_numpy(block(INPUTS[:2], padding_mask=real))
    expected = numpy_block(block, INPUTS[:2], real)
    np.testing.assert_allclose(outputs[real], expected[real], atol=1e-5)
    outputs = ops.convert_to_numpy(block(INPUTS))
    expected = numpy_block(block, INPUTS, np.ones((3, 5), bool))
    np.testing.assert_allclose(outputs, expected, atol=1e-5)


def test_padding_invariance_on_real_positions():
    block = make_block()
    short = ops.convert_to_numpy(block(INPUTS, padding_mask=MASK))
    padded_inputs = np.concatenate(
        [INPUTS, RNG.normal(size=(3, 4, 8)).astype("float32")], axis=1
    )
    padded_mask = np.concatenate([MASK, np.zeros((3, 4), bool)], axis=1)
    long = ops.convert_to_numpy(block(padded_inputs, padding_mask=padded_mask))
    np.testing.assert_allclose(long[:, :5][MASK], short[MASK], atol=1e-5)
    # Padded outputs are zeroed.
    np.testing.assert_array_equal(long[:, :5][~MASK], 0.0)
    np.testing.assert_array_equal(long[:, 5:], 0.0)


def test_padded_keys_get_no_attention():
    block = make_block()
    outputs = ops.convert_to_numpy(block(INPUTS, padding_mask=MASK))
    changed = INPUTS.copy()
    changed[~MASK] = 100.0 * RNG.normal(size=changed[~MASK].shape)
    changed_outputs = ops.convert_to_numpy(
        block(changed, padding_mask=MASK.astype("int32"))
    )
    np.testing.assert_allclose(changed_outputs[MASK], outputs[MASK], atol=1e-5)
    # Without the mask the padded embeddings do change the real outputs.
    unmasked = ops.convert_to_numpy(block(changed))
    assert not np.allclose(unmasked[MASK], outputs[MASK], atol=1e-3)


def test_attention_scores_are_returned_and_skip_padded_keys():
    block = make_block()
    outputs, scores = block(INPUTS, padding_mask=MASK, return_attention_scores=True)
    scores = ops.convert_to_numpy(scores)
    assert scores.shape == (3, block.num_heads, 5, 5)
    np.testing.assert_allclose(ops.convert_to_numpy(outputs), ops.convert_to_numpy(block(INPUTS, padding_mask=MASK)), atol=1e-6)
    for b in range(2):  # rows with real tokens
        np.testing.assert_allclose(scores[b].sum(-1), 1.0, atol=1e-5)
        assert np.all(scores[b][:, :, ~MASK[b]] == 0)
    ids = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(10, 8)(ids)
    out, att = TransformerEncoderBlock(num_heads=2, intermediate_dim=16)(x, padding_mask=ops.not_equal(ids, 0),
                                                                         return_attention_scores=True)
    assert tuple(att.shape) == (None, 2, None, None)


def test_all_masked_row_gives_zeros():
    block = make_block()
    outputs = ops.convert_to_numpy(
        block(INPUTS, padding_mask=np.zeros((3, 5), bool))
    )
    assert np.all(np.isfinite(outputs))
    np.testing.assert_array_equal(outputs, 0.0)


def test_dropout_only_in_training():
    block = make_block(dropout=0.5)
    first = ops.convert_to_numpy(block(INPUTS, padding_mask=MASK))
    second = ops.convert_to_numpy(block(INPUTS, padding_mask=MASK))
    np.testing.assert_array_equal(first, second)
    trained = ops.convert_to_numpy(
        block(INPUTS, padding_mask=MASK, training=True)
    )
    assert not np.allclose(trained[MASK], first[MASK])


def test_divisibility_error():
    block = TransformerEncoderBlock(num_heads=3, intermediate_dim=16)
    with pytest.raises(ValueError, match=r"num_heads=3.*8"):
        block.build((None, None, 8))


def test_get_config_round_trip():
    block = make_block(dropout=0.1, layer_norm_epsilon=1e-5, name="enc")
    config = block.get_config()
    for key, value in {
        "num_heads": 2,
        "intermediate_dim": 16,
        "dropout": 0.1,
        "layer_norm_epsilon": 1e-5,
    }.items():
        assert config[key] == value
    restored = TransformerEncoderBlock.from_config(config)
    assert restored.get_config() == config
    restored.build((None, None, 8))
    restored.set_weights(block.get_weights())
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored(INPUTS, padding_mask=MASK)),
        ops.convert_to_numpy(block(INPUTS, padding_mask=MASK)),
        atol=1e-6,
    )


def test_model_save_and_load(tmp_path):
    embeddings = keras.Input(shape=(None, 8))
    padding_mask = keras.Input(shape=(None,), dtype="bool")
    hidden = TransformerEncoderBlock(num_heads=2, intermediate_dim=16)(
        embeddings, padding_mask=padding_mask
    )
    pooled = MaskedGlobalAveragePooling1D()(hidden, mask=padding_mask)
    model = keras.Model([embeddings, padding_mask], pooled)
    expected = model.predict([INPUTS, MASK], verbose=0)
    path = str(tmp_path / "x.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        loaded.predict([INPUTS, MASK], verbose=0), expected, atol=1e-6
    )
    np.testing.assert_array_equal(expected[2], 0.0)
