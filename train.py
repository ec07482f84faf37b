"""Train, evaluate and export a text classifier from a JSON (or YAML) config.

    python train.py --config_path=config/textcnn_config.json [--set epochs=1 --set batch_size=64]

Bad input (config, data) is reported in one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config_path", required=True, help="JSON or YAML config (see config/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (value parsed as JSON)")
    parser.add_argument("--restart", action="store_true", help="start afresh, deleting checkpoints in ckpt_model_path, instead of resuming")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)

    from data_helpers.config import ConfigError, load_config
    from data_helpers.reader import DataError

    try:
        cfg = load_config(args.config_path, args.set)
        from data_helpers.dataset import load_examples

        # A streaming pass without TensorFlow (about 1-2 s per million lines, constant memory):
        # bad data is reported in one line before TensorFlow loads and prints its start-up lines.
        scan = load_examples(cfg, log=lambda *a: None)
        from data_helpers.class_weights import class_weights

        class_weights(cfg.class_weight, scan.labels, scan.train_label_counts, scan.train_examples, cfg.multi_label, cfg.source)
        from trainers.trainer import ClusterError, ResumeError, Trainer, TrainingInterrupted

        stop = threading.Event()
        received = []

        def on_signal(signum, frame):
            if stop.is_set():  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            received.append(signum)
            stop.set()
            print(f"\n{signal.Signals(signum).name}: stopping after this step and writing a checkpoint ...", file=sys.stderr)

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        try:
            Trainer(cfg, restart=args.restart, stop_event=stop).train()
        except TrainingInterrupted as e:
            again = " ".join(["python train.py"] + [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--restart"])
            print(f"interrupted: {e}: {again}", file=sys.stderr)
            return 128 + received[0]
        except ResumeError as e:
            raise ConfigError(str(e)) from None
        except ClusterError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.stderr.flush()
            # TensorFlow's collective threads may still wait on the lost worker: leave at once.
            os._exit(3)
    except (ConfigError, DataError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, unwritable folder, ...: files already saved stay as they were
        if args.debug:
            raise
        where = e.filename or "a file"
        print(f"error: cannot write {where}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
