"""The config's ``class_weight`` as one weight per label, from the training set's label counts.

Standard library and numpy only, so ``train.py`` checks the key before TensorFlow loads.
How the weights enter the loss: :mod:`trainers.losses`.
"""

from __future__ import annotations

import numpy as np

from data_helpers.config import ConfigError


def class_weights(spec, labels: list[str], counts: dict, n_examples: int, multi_label: bool, where: str = "config") -> np.ndarray | None:
    """The config's ``class_weight`` as a float32 vector in label order (None: no weighting).

    Args:
        spec: None, ``"balanced"`` or a ``{label: weight}`` map (labels not named weigh 1).
        labels: the label names, in id order.
        counts: training examples per label (multi-label: texts carrying the label).
        n_examples: training examples (texts).
        multi_label: weigh each label's positive term instead of each example.
        where: the config file, for the message when a map names an unknown label.

    ``balanced``: single-label, ``n_examples / (n_present_classes * count)``, which is
    scikit-learn's ``compute_class_weight("balanced")``; multi-label, ``negatives / positives``
    of each label, the ratio of the two weights ``compute_class_weight`` gives that label's
    binary column. A label without training examples weighs 1.

    Example:
        >>> class_weights("balanced", ["a", "b"], {"a": 3, "b": 1}, 4, False)
        array([0.6666667, 2.       ], dtype=float32)
    """
    if spec is None:
        return None
    out = np.ones(len(labels), np.float32)
    if spec == "balanced":
        c = np.array([counts.get(name, 0) for name in labels], np.float64)
        present = c > 0
        if multi_label:
            out[present] = (n_examples - c[present]) / c[present]
        else:
            out[present] = n_examples / (present.sum() * c[present])
        return out
    unknown = [k for k in spec if k not in labels]
    if unknown:
        raise ConfigError(
            f"{where}: key 'class_weight' names {unknown[0]!r}, which is not a label of train_data "
            f"(labels: {', '.join(labels[:10])}{', ...' if len(labels) > 10 else ''})"
        )
    for k, w in spec.items():
        out[labels.index(k)] = w
    return out
