"""Classify texts from the command line with a trained model.

    python predict.py --config_path=config/textcnn_config.json "这家店的菜很好吃" "质量太差了"
    cat texts.txt | python predict.py --config_path=config/textcnn_config.json --top_k 2

One JSON line per text: {"text": ..., "label": ..., "probabilities": {label: p}} (or "top_k");
a multi-label model prints "labels", the list of labels that are on, instead of "label".
Bad input (config, missing export, unreadable stdin) gets one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config_path", help="the training config (loads the newest export of its pb_model_path)")
    parser.add_argument("--export_dir", help="one export folder instead of a config (pb_model_path/<version>)")
    parser.add_argument("--top_k", type=int, default=0, help="print the k likeliest labels instead of all probabilities")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("texts", nargs="*", help="texts to classify (default: one per line from stdin)")
    args = parser.parse_args(argv)
    if bool(args.config_path) == bool(args.export_dir):
        parser.error("give exactly one of --config_path and --export_dir")
    if args.top_k < 0:
        parser.error("--top_k must be >= 0")

    from data_helpers.config import ConfigError

    try:
        texts = args.texts
        if not texts:
            try:
                texts = [line.rstrip("\r\n") for line in sys.stdin]
            except UnicodeDecodeError as e:
                raise ValueError(f"stdin: not UTF-8 text ({e.reason} at byte {e.start})") from None
        from predictors import Predictor, StaleVocabError

        try:
            p = Predictor(args.config_path) if args.config_path else Predictor.from_saved_model(args.export_dir)
        except StaleVocabError as e:
            raise ValueError(str(e)) from None
        if args.top_k:
            for text, top in zip(texts, p.top_k(texts, k=args.top_k)):
                print(json.dumps({"text": text, "top_k": top}, ensure_ascii=False))
        else:
            for text, out in zip(texts, p.classify(texts)):
                print(json.dumps({"text": text, **out}, ensure_ascii=False))
    except (ConfigError, FileNotFoundError, ValueError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
