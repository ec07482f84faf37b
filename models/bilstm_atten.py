"""BiLSTM with attention: attention over the BiLSTM outputs (softmax over non-padding positions
only, weighted sum), then dense. ``attention``: ``per_label`` (default) gives each label its own
attention, scored on the token embeddings, and reads that label's logit from its own weighted sum
(label-wise attention, Mullenbach et al. 2018); ``shared`` is Zhou et al. (2016): one attention,
scored on the BiLSTM outputs."""

from __future__ import annotations

import keras

from models.bilstm import bilstm_stack
from models.common import classifier_head, embed, ids_input, label_wise_head, padding_mask
from models.layers import AdditiveAttentionPooling, LabelAttentionPooling


def build(cfg, vocab_size: int, num_outputs: int) -> keras.Model:
    """BiLSTM-attention from a config (keys embedding_size, hidden_sizes, attention, keep_prob,
    l2_reg_lambda)."""
    ids = ids_input()
    mask = padding_mask(ids)
    e = embed(ids, cfg, vocab_size)
    h = bilstm_stack(e, mask, cfg, last_returns_sequences=True)
    if cfg.attention == "per_label":
        x = LabelAttentionPooling(num_outputs, name="attention")(h, keys=e, mask=mask)
        return keras.Model(ids, label_wise_head(x, cfg, num_outputs), name="bilstm_atten")
    x = AdditiveAttentionPooling(name="attention")(h, mask=mask)
    return keras.Model(ids, classifier_head(x, cfg, num_outputs), name="bilstm_atten")
