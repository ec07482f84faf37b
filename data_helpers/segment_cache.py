"""jieba once per text: ``word`` models' segmented text, cached under output_path.

The first pass over the data segments every text (in parallel over processes for large files)
and writes ``segmented text<TAB>label`` shards to ``output_path/cache/segmented-<fingerprint>/``;
``tf.data`` then reads them like pre-segmented text, with the same tokenizer graph the export
carries. The fingerprint covers the data files' contents, the class names and the tokenizer
settings (user dictionary included), so the cache is reused while they are unchanged and
rebuilt when any changes. A folder is complete only once renamed into place.

This module imports no TensorFlow: its worker processes load jieba alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile

from data_helpers.io_utils import atomic_write_json, file_digest
from data_helpers.long_text import cut_chars
from data_helpers.sources import expand_paths

SHARD_LINES = 200_000
_PARALLEL_FROM = 20_000  # texts in a batch before worker processes pay for their start
_SPACES = re.compile(r"\s+")
_jieba = None


def _init_worker(user_dict):
    global _jieba
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    tk = jieba.Tokenizer()
    if user_dict:
        tk.load_userdict(user_dict)
    tk.initialize()
    _jieba = tk


def _segment(args) -> list[str]:
    texts, chars = args  # chars: cut_chars's (max_chars, long_text, head_share)
    cut = _jieba.cut
    # Any whitespace jieba keeps becomes one space: the lines stay text<TAB>label.
    return [_SPACES.sub(" ", " ".join(cut(cut_chars(t, *chars)[0]))).strip() for t in texts]


class SegmentCache:
    def __init__(self, cfg, tokenizer, writable: bool = True, log=print):
        self.cfg, self.tokenizer, self.log = cfg, tokenizer, log
        conf = tokenizer.get_config()
        key = {
            "train": [file_digest(p) for p in expand_paths(cfg.train_data)],
            "eval": [file_digest(p) for p in expand_paths(cfg.eval_data)],
            "class_names": file_digest(cfg.class_names),
            "tokenizer": {k: conf[k] for k in ("mode", "user_dict_sha256", "max_chars", "long_text", "head_share") if k in conf},
            **({"label_sep": cfg.label_sep} if cfg.multi_label else {}),
        }
        self.fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        # A worker other than the chief keeps its own copy in a private folder, removed after the run.
        self.private = None if writable else tempfile.mkdtemp(prefix="textcls-segmented-")
        base = os.path.join(cfg.output_path, "cache")
        if not writable and not os.path.isfile(os.path.join(base, f"segmented-{self.fingerprint}", "meta.json")):
            base = self.private
        self.folder = os.path.join(base, f"segmented-{self.fingerprint}")
        self.writable = writable

    def complete(self) -> bool:
        return os.path.isfile(os.path.join(self.folder, "meta.json"))

    def _meta(self) -> dict:
        with open(os.path.join(self.folder, "meta.json"), encoding="utf-8") as f:
            return json.load(f)

    def train_files(self) -> list[str]:
        return [os.path.join(self.folder, n) for n in self._meta()["train"]]

    def eval_files(self) -> list[str]:
        return [os.path.join(self.folder, n) for n in self._meta()["eval"]]

    @contextlib.contextmanager
    def writing(self):
        """A segmenter for :func:`data_helpers.dataset.scan_data` that writes the shards as it goes."""
        os.makedirs(os.path.dirname(self.folder), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-segmented-", dir=os.path.dirname(self.folder))
        names = {"train": [], "eval": []}
        state = {"file": None, "kind": None, "lines": 0}
        pool = None
        chars = (self.tokenizer.max_chars, self.tokenizer.long_text, self.tokenizer.head_share)  # for cut_chars

        def segment(texts, labels, kind):
            nonlocal pool
            if len(texts) >= _PARALLEL_FROM or pool is not None:
                if pool is None:
                    import multiprocessing

                    procs = max(1, min(os.cpu_count() or 1, 8))
                    pool = multiprocessing.get_context("spawn").Pool(procs, _init_worker, (self.tokenizer.user_dict,))
                    self._procs = procs
                step = -(-len(texts) // self._procs)
                parts = pool.map(_segment, [(texts[i : i + step], chars) for i in range(0, len(texts), step)])
                out = [t for part in parts for t in part]
            else:
                if _jieba is None:
                    _init_worker(self.tokenizer.user_dict)
                out = _segment((texts, chars))
            for text, label in zip(out, labels):
                if state["file"] is None or state["kind"] != kind or state["lines"] >= SHARD_LINES:
                    if state["file"] is not None:
                        state["file"].close()
                    name = f"{kind}-{len(names[kind]):05d}.txt"
                    names[kind].append(name)
                    state.update(file=open(os.path.join(tmp, name), "w", encoding="utf-8", newline="\n"), kind=kind, lines=0)
                written = self.cfg.label_sep.join(label) if isinstance(label, tuple) else label
                state["file"].write(f"{text}\t{written}\n")
                state["lines"] += 1
            return out

        try:
            yield segment
            if state["file"] is not None:
                state["file"].close()
            atomic_write_json(os.path.join(tmp, "meta.json"), names)
            if os.path.exists(self.folder):
                shutil.rmtree(self.folder)
            os.rename(tmp, self.folder)
            self.log(f"segmented text: cached in {self.folder}")
            self._drop_old()
        finally:
            if state["file"] is not None and not state["file"].closed:
                state["file"].close()
            if pool is not None:
                pool.terminate()
            shutil.rmtree(tmp, ignore_errors=True)

    def _drop_old(self) -> None:
        """Older caches of this output_path (other data or settings) go."""
        base = os.path.dirname(self.folder)
        for name in os.listdir(base):
            path = os.path.join(base, name)
            if name.startswith("segmented-") and path != self.folder:
                shutil.rmtree(path, ignore_errors=True)
