"""Configuration: one JSON (or YAML) file per model, validated before any work starts.

Every key, its type, default and meaning lives in :data:`SCHEMA`; the README's table is
checked against it by the tests. Errors are :class:`ConfigError` with a one-line message
that names the file and the key (or the line and column of a syntax error).
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from typing import Any, Callable

MODEL_NAMES = ("textcnn", "bilstm", "bilstm_atten", "transformer", "fasttext")
TOKENIZERS = ("char", "word", "whitespace")
OPTIMIZERS = ("adam", "adamw", "lazy_adam", "lazy_adamw", "sgd", "rmsprop")


class ConfigError(ValueError):
    """A bad config: the message is one line naming the file and the key."""


@dataclass(frozen=True)
class Key:
    kind: str  # int, float, bool, str, path, paths, int_list
    default: Any
    doc: str
    check: Callable[[Any], bool] | None = None
    rule: str = ""  # what `check` demands, for the error message
    nullable: bool = False
    choices: tuple = ()


def _pos(v):
    return v > 0


def _nonneg(v):
    return v >= 0


SCHEMA: dict[str, Key] = {
    # --- what to train
    "model_name": Key("str", None, "Model to train.", choices=MODEL_NAMES),
    "train_data": Key("paths", None, "Training data, lines `text<TAB>label` or `text<SEP>label` (multi_label: `text<TAB>label1,label2`): a file, a list of files or a glob (`data/train-*.txt`), plain or `.gz`; streamed from disk, or tokenized once and held when its token ids fit in in_memory_mb."),
    "eval_data": Key("paths", None, "Evaluation data, same format and forms; its labels must occur in train_data."),
    "class_names": Key("path", None, "Optional file of class names, line i names label id i (turns integer labels into names).", nullable=True),
    "num_classes": Key("int", None, "Number of classes; 1 = binary with a sigmoid output, N > 1 = softmax. null: infer from the data (softmax).", _pos, "must be >= 1", nullable=True),
    "multi_label": Key("bool", False, "Multi-label: each line's label field lists any number of labels (none included) joined by label_sep; one sigmoid output per label, binary cross-entropy."),
    "label_sep": Key("str", ",", "Multi-label: what joins the labels of one line (no label name may contain it)."),
    "threshold": Key("float", 0.5, "Multi-label: a label is on when its probability is at least this (every label; see tune_thresholds).", lambda v: 0 < v < 1, "must be in (0, 1)"),
    "tune_thresholds": Key("bool", False, "Multi-label: choose one threshold per label on eval_data, the one that maximises that label's F1 (labels without a positive eval example keep `threshold`); the export applies them."),
    "at_least_one": Key("bool", False, "Multi-label: a text whose labels all fall below their thresholds gets its likeliest label."),
    "select_by": Key("str", None, "Eval metric that picks the best checkpoint: `macro_f1` or `accuracy` (single-label; default macro_f1), `micro_f1` or `macro_f1` (multi-label; default micro_f1).", nullable=True, choices=("macro_f1", "micro_f1", "accuracy")),
    "class_weight": Key("weights", None, "Rare classes: null (every example weighs 1), `balanced` (single-label: n / (n_classes x count), as scikit-learn's compute_class_weight; multi-label: each label's positive term weighs negatives / positives), or a {label: weight} map (labels not named weigh 1).", nullable=True),
    "loss": Key("str", "cross_entropy", "`cross_entropy`, or `focal` (Keras's categorical / binary focal cross-entropy, alpha 1) which weighs down examples the model already gets right.", choices=("cross_entropy", "focal")),
    "focal_gamma": Key("float", 2.0, "Focusing parameter gamma of loss `focal`.", _nonneg, "must be >= 0"),
    # --- tokenization and vocabulary
    "tokenizer": Key("str", "char", "`char` (one token per CJK character, Latin words and numbers whole), `word` (jieba), `whitespace` (pre-segmented text).", choices=TOKENIZERS),
    "lowercase": Key("bool", True, "Lower-case text before tokenizing."),
    "stop_word": Key("path", None, "Optional stop-word file, one word per line; those tokens are dropped.", nullable=True),
    "user_dict": Key("path", None, "Optional jieba user dictionary (tokenizer `word`).", nullable=True),
    "sequence_length": Key("int", 128, "Tokens per text: longer texts are cut (see long_text), shorter ones padded.", _pos, "must be >= 1"),
    "long_text": Key("str", "truncate", "What a text longer than sequence_length tokens keeps: `truncate` (its first sequence_length tokens), `head_tail` (its first head_share of them and the rest from its end) or `chunks` (windows of sequence_length tokens every chunk_stride tokens, at most max_chunks of them; the model reads each window and pools their logits, chunk_pooling). Training, evaluation, the export and so the Predictor and TensorFlow Serving all read the same tokens.", choices=("truncate", "head_tail", "chunks")),
    "chunk_stride": Key("int", None, "long_text `chunks`: tokens from the start of one window to the start of the next (at most sequence_length; less makes windows overlap). null: sequence_length.", _pos, "must be >= 1", nullable=True),
    "max_chunks": Key("int", 8, "long_text `chunks`: windows read per text at most, so a text costs at most sequence_length + (max_chunks - 1) x chunk_stride tokens whatever its length.", _pos, "must be >= 1"),
    "chunk_pooling": Key("str", "mean", "long_text `chunks`: how the windows' logits become the text's: `mean` or `max` (per label).", choices=("mean", "max")),
    "head_share": Key("float", 0.25, "long_text `head_tail`: the share of sequence_length taken from the beginning of a long text (0.25: the first quarter, the last three quarters).", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    "vocab_size": Key("int", 20000, "Largest vocabulary, `<PAD>` and `<UNK>` included.", lambda v: v >= 3, "must be >= 3"),
    "min_count": Key("int", 1, "Drop tokens seen fewer times in train_data.", _pos, "must be >= 1"),
    "word_vectors_path": Key("path", None, "Optional word2vec text-format vectors that initialise the embedding rows of in-vocabulary tokens.", nullable=True),
    # --- model
    "embedding_size": Key("int", 128, "Embedding width.", _pos, "must be >= 1"),
    "ngram_buckets": Key("int", 0, "Rows of a hashed table of token n-gram embeddings (n = 2..ngram_max, starting at each token) added to the token embedding, fastText-style; 0 = off.", lambda v: 0 <= v < 2**31, "must be in [0, 2**31)"),
    "ngram_max": Key("int", 2, "Longest n-gram when ngram_buckets > 0: 2 = bigrams, 3 = bigrams and trigrams.", lambda v: v >= 2, "must be >= 2"),
    "num_filters": Key("int", 128, "TextCNN: filters per width.", _pos, "must be >= 1"),
    "filter_sizes": Key("int_list", [2, 3, 4], "TextCNN: convolution widths.", lambda v: len(v) > 0 and all(x > 0 for x in v), "must be a non-empty list of positive integers"),
    "hidden_sizes": Key("int_list", [128], "BiLSTM / BiLSTM-attention: units per direction of each stacked layer. fastText: widths of the ReLU layers after the mean.", lambda v: len(v) > 0 and all(x > 0 for x in v), "must be a non-empty list of positive integers"),
    "pooling": Key("str", None, "BiLSTM and fastText: how the vectors of a text's positions become one. `max` (over the positions), `mean`, `max_mean` (both, concatenated: SWEM-concat, Shen et al. 2018) or, BiLSTM only, `last` (the final states of both directions). null: the model's own, `max` for the BiLSTM and `mean` for fastText.", nullable=True, choices=("max", "mean", "max_mean", "last")),
    "attention": Key("str", "per_label", "BiLSTM-attention: `per_label` (one attention per label, scored on the token embeddings, each label's logit read from its own weighted mean of the BiLSTM outputs: the weights show which tokens the model read for that label) or `shared` (Zhou et al. 2016: one attention scored on the BiLSTM outputs, which carry a keyword to every position, so the weights need not point at it).", choices=("per_label", "shared")),
    "filters": Key("int", 256, "Transformer: feed-forward width.", _pos, "must be >= 1"),
    "num_heads": Key("int", 4, "Transformer: attention heads; must divide embedding_size.", _pos, "must be >= 1"),
    "num_blocks": Key("int", 1, "Transformer: encoder blocks.", _pos, "must be >= 1"),
    "ln_epsilon": Key("float", 1e-6, "Transformer: LayerNorm epsilon.", _pos, "must be > 0"),
    "keep_prob": Key("float", 0.5, "Dropout keep probability (dropout rate = 1 - keep_prob).", lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "l2_reg_lambda": Key("float", 0.0, "L2 penalty on the output layer's weights.", _nonneg, "must be >= 0"),
    # --- training
    "epochs": Key("int", 5, "Passes over train_data.", _pos, "must be >= 1"),
    "batch_size": Key("int", 64, "Examples per step: the global batch, split over every replica of every worker.", _pos, "must be >= 1"),
    "max_steps": Key("int", None, "Stop after this many steps (the learning-rate schedule ends there too); null: epochs x steps per epoch.", _pos, "must be >= 1", nullable=True),
    "learning_rate": Key("float", 1e-3, "Optimizer learning rate.", _pos, "must be > 0"),
    "weight_decay": Key("float", 0.004, "Decoupled weight decay of `adamw` / `lazy_adamw` (Keras's default); ignored by the other optimizers.", _nonneg, "must be >= 0"),
    "optimization": Key("str", "adam", "Optimizer. `lazy_adam` / `lazy_adamw` update only the embedding rows a batch used: much faster with a large vocabulary or ngram_buckets.", choices=OPTIMIZERS),
    "lr_schedule": Key("str", "constant", "Learning-rate schedule: `constant`, or `cosine` decay to 0 over all training steps (after warmup_steps of linear warmup).", choices=("constant", "cosine")),
    "warmup_steps": Key("int", 0, "Linear warmup steps for lr_schedule `cosine`.", _nonneg, "must be >= 0"),
    "ema_momentum": Key("float", None, "Keep an exponential moving average of the weights (Keras's optimizer `use_ema`), evaluate and export it instead of the last weights: average = ema_momentum x average + (1 - ema_momentum) x weights after every step (0.99: about the last 100 steps). null: off.", lambda v: 0 < v < 1, "must be in (0, 1)", nullable=True),
    "ema_every": Key("int", 1, "With ema_momentum: update the average every this many steps only, with momentum ema_momentum ** ema_every (the same window of steps, sampled). Keras updates every weight's average at every step; with a large ngram_buckets table that costs more than the training step, and 10-20 makes it cheap.", _pos, "must be >= 1"),
    "max_grad_norm": Key("float", 5.0, "Clip gradients to this global norm; null: no clipping.", _pos, "must be > 0", nullable=True),
    "rdrop_alpha": Key("float", 0.0, "R-Drop (Liang et al. 2021): every training batch runs through the model twice with different dropout (one batch of twice the size), and the loss adds rdrop_alpha x the symmetric KL divergence between the two predictions, so the model learns to answer the same whatever dropout removes. About twice the training compute; evaluation, the export and serving are unchanged. 0: off.", _nonneg, "must be >= 0"),
    "adversarial_epsilon": Key("float", 0.0, "Adversarial training on the embeddings (FGM, Miyato et al. 2017): each training batch's loss adds the loss of the same batch with every text's embeddings moved a distance adversarial_epsilon (L2 over its real tokens) along the gradient of its loss, the direction that hurts most to first order, so the model learns to answer the same for nearby inputs. About twice the training compute; evaluation, the export and serving are unchanged. Not with rdrop_alpha or long_text chunks. 0: off.", _nonneg, "must be >= 0"),
    "label_smoothing": Key("float", 0.0, "Label smoothing of the training loss.", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "eval_every": Key("int", 100, "Evaluate on eval_data every this many steps (and at each epoch end).", _pos, "must be >= 1"),
    "checkpoint_every": Key("int", 100, "Save a checkpoint every this many steps.", _pos, "must be >= 1"),
    "max_checkpoints": Key("int", 3, "Checkpoints kept in ckpt_model_path (the best one is kept apart).", _pos, "must be >= 1"),
    "shuffle_buffer": Key("int", 100000, "Training examples held in the shuffle buffer when the training set is streamed (see in_memory_mb): the data is shuffled within windows of this many; memory is about shuffle_buffer x sequence_length x 4 bytes.", _pos, "must be >= 1"),
    "in_memory_mb": Key("int", 256, "Training and eval sets whose token ids take at most this many MB (examples x sequence_length x 4 bytes) are tokenized once and held in memory, the training set shuffled whole each epoch; larger ones are streamed from their files every epoch through the shuffle buffer. 0: always stream.", _nonneg, "must be >= 0"),
    "seed": Key("int", 42, "Random seed (weights, shuffling, dropout)."),
    "ensemble_size": Key("int", 1, "Train the model this many times, member k with seed + k - 1 (its own initial weights, data order and dropout), and export one SavedModel that averages the members' probabilities, with an `explain` signature that averages their scores (see README, Ensembles). ensemble_size times the training and the serving compute. Single-label only. 1: one model.", _pos, "must be >= 1"),
    # --- where things go
    "output_path": Key("path", "outputs/{model_name}", "Vocab, label map, report, TensorBoard logs."),
    "ckpt_model_path": Key("path", "ckpt_model/{model_name}", "Checkpoints."),
    "pb_model_path": Key("path", "pb_model/{model_name}", "SavedModel exports, one integer-versioned folder each (TensorFlow Serving layout)."),
    "keep_exports": Key("int", 3, "Export versions kept in pb_model_path.", _pos, "must be >= 1"),
    "export_explain": Key("bool", True, "Exports carry the `explain` signature (attention or integrated gradients per token; `attention_maps` too for transformer), so the Predictor, serve.py and TensorFlow Serving can say why. false: a smaller export that traces faster."),
}

# Keys whose file must exist when training starts.
INPUT_FILES = ("train_data", "eval_data", "class_names", "stop_word", "user_dict", "word_vectors_path")
OUTPUT_DIRS = ("output_path", "ckpt_model_path", "pb_model_path")


class Config:
    """A validated config: keys as attributes, plus `source` (the file it came from)."""

    def __init__(self, values: dict, source: str = "<dict>"):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "source", source)

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        raise AttributeError("Config is read-only; use replace()")

    def to_dict(self) -> dict:
        return dict(self._values)

    def replace(self, **changes) -> "Config":
        return validate({**self._values, **changes}, self.source)

    def __repr__(self):
        return f"Config({self.source!r}, {self._values!r})"


def _type_ok(kind: str, v) -> bool:
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "bool":
        return isinstance(v, bool)
    if kind in ("str", "path"):
        return isinstance(v, str) and v != ""
    if kind == "paths":
        return _type_ok("path", v) or (isinstance(v, list) and len(v) > 0 and all(_type_ok("path", x) for x in v))
    if kind == "int_list":
        return isinstance(v, list) and all(_type_ok("int", x) for x in v)
    if kind == "weights":
        return v == "balanced" or (isinstance(v, dict) and len(v) > 0 and all(
            isinstance(k, str) and _type_ok("float", x) and x > 0 for k, x in v.items()))
    raise AssertionError(kind)


_KIND_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "path": "a file path (string)",
    "paths": "a file path, a glob or a non-empty list of them",
    "int_list": "a list of integers",
    "weights": '"balanced" or a non-empty {label: weight > 0} map',
}


def _unknown_key(key: str) -> str:
    close = difflib.get_close_matches(key, SCHEMA, n=1, cutoff=0.5)
    return f"unknown key '{key}'" + (f" (did you mean '{close[0]}'?)" if close else "")


def validate(raw: dict, source: str = "<dict>") -> Config:
    """Check types, ranges and cross-key rules; fill defaults. Does not touch the disk."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be an object of key: value pairs")
    for key in raw:
        if key not in SCHEMA:
            raise ConfigError(f"{source}: {_unknown_key(key)}")
    values = {}
    for name, spec in SCHEMA.items():
        v = raw.get(name, spec.default)
        if v is None:
            if spec.nullable:
                values[name] = None
                continue
            raise ConfigError(f"{source}: key '{name}' is required ({spec.doc})")
        if not _type_ok(spec.kind, v):
            raise ConfigError(f"{source}: key '{name}' must be {_KIND_WORDS[spec.kind]}, got {json.dumps(v, ensure_ascii=False)}")
        if spec.kind == "float":
            v = float(v)
        if spec.choices and v not in spec.choices:
            raise ConfigError(f"{source}: key '{name}' must be one of {', '.join(spec.choices)}; got '{v}'")
        if spec.check is not None and not spec.check(v):
            raise ConfigError(f"{source}: key '{name}' {spec.rule}; got {json.dumps(v)}")
        values[name] = v
    for name in OUTPUT_DIRS:
        values[name] = values[name].replace("{model_name}", values["model_name"])
    if values["model_name"] == "transformer" and values["embedding_size"] % values["num_heads"]:
        raise ConfigError(
            f"{source}: key 'num_heads' ({values['num_heads']}) must divide embedding_size ({values['embedding_size']})"
        )
    if values["model_name"] == "fasttext" and values["pooling"] == "last":
        raise ConfigError(f"{source}: key 'pooling' last is for the BiLSTM (fastText has no final state): use mean, max or max_mean")
    if values["select_by"] == "micro_f1" and not values["multi_label"]:
        raise ConfigError(f"{source}: key 'select_by' micro_f1 is for multi_label runs (single-label micro-F1 equals accuracy: use accuracy)")
    if values["select_by"] == "accuracy" and values["multi_label"]:
        raise ConfigError(f"{source}: key 'select_by' accuracy is for single-label runs; multi-label runs select by micro_f1 or macro_f1")
    if values["multi_label"] and values["num_classes"] == 1:
        raise ConfigError(f"{source}: key 'num_classes' 1 (binary) cannot be multi_label; set num_classes to null or the number of labels")
    if values["chunk_stride"] is not None and values["chunk_stride"] > values["sequence_length"]:
        raise ConfigError(
            f"{source}: key 'chunk_stride' ({values['chunk_stride']}) must be at most sequence_length ({values['sequence_length']}): "
            "a larger stride would skip tokens between windows"
        )
    if values["adversarial_epsilon"] > 0 and values["rdrop_alpha"] > 0:
        raise ConfigError(f"{source}: key 'adversarial_epsilon' cannot be combined with rdrop_alpha > 0: set one of them to 0")
    if values["adversarial_epsilon"] > 0 and values["long_text"] == "chunks":
        raise ConfigError(f"{source}: key 'adversarial_epsilon' is not supported with long_text chunks: use truncate or head_tail, or set it to 0")
    if values["ensemble_size"] > 1 and values["multi_label"]:
        raise ConfigError(f"{source}: key 'ensemble_size' > 1 is for single-label runs (the members' per-label thresholds "
                          "cannot be averaged): set it to 1 for multi_label")
    if values["select_by"] is None:
        values["select_by"] = "micro_f1" if values["multi_label"] else "macro_f1"
    return Config(values, source)


def _parse_text(text: str, path: str) -> dict:
    if path.endswith((".yaml", ".yml")):
        import yaml

        try:
            return yaml.safe_load(text) or {}
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
            raise ConfigError(f"{where}: invalid YAML: {e.problem or e.context}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None


def parse_override(item: str) -> tuple[str, Any]:
    """`key=value` from `--set`: the value is parsed as JSON, falling back to a plain string."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item}: expected key=value")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    return key, value


def load_config(path: str, overrides: list[str] | tuple = (), check_files: bool = True, log=print) -> Config:
    """Read, override (`--set key=value` items) and validate a config file.

    With check_files, the input files named by the config must exist (the demo corpus is
    prepared first when the config names it and it is missing) and the output folders
    must not be files.
    """
    path = str(path)
    if not os.path.exists(path):
        raise ConfigError(f"{path}: config file not found")
    if os.path.isdir(path):
        raise ConfigError(f"{path}: is a folder, expected a .json or .yaml config file")
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    raw = _parse_text(text, path)
    if isinstance(raw, dict):
        for item in overrides:
            key, value = parse_override(item)
            if key not in SCHEMA:
                raise ConfigError(f"--set {item}: {_unknown_key(key)}")
            raw[key] = value
    cfg = validate(raw, path)
    if check_files:
        check_paths(cfg, log=log)
    return cfg


def check_paths(cfg: Config, log=print) -> None:
    from data_helpers.demo_corpus import ensure_demo_files

    from data_helpers.sources import _GLOB_CHARS, expand_paths

    ensure_demo_files([p for key in ("train_data", "eval_data") for p in expand_paths(getattr(cfg, key))], log=log)
    for key in INPUT_FILES:
        spec = getattr(cfg, key)
        if spec is None:
            continue
        items = [spec] if isinstance(spec, str) else spec
        for item in items:
            if _GLOB_CHARS & set(item) and not expand_paths(item):
                raise ConfigError(f"{cfg.source}: key '{key}': no file matches {item}")
        for p in expand_paths(spec):
            _check_input(cfg, key, p)
    for key in OUTPUT_DIRS:
        p = getattr(cfg, key)
        if os.path.exists(p) and not os.path.isdir(p):
            raise ConfigError(f"{cfg.source}: key '{key}': {p} is a file, expected a folder")


def _check_input(cfg: Config, key: str, p: str) -> None:
    if not os.path.exists(p):
        raise ConfigError(f"{cfg.source}: key '{key}': file not found: {p}")
    if os.path.isdir(p):
        raise ConfigError(f"{cfg.source}: key '{key}': {p} is a folder, expected a file")
    if not os.access(p, os.R_OK):
        raise ConfigError(f"{cfg.source}: key '{key}': cannot read {p} (permission denied)")
