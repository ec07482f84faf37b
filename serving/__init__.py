"""A drop-in for TensorFlow Serving over this project's exports: its REST and gRPC APIs, flags and model config.

Read in this order; each module does one thing:

- :mod:`serving.errors`        status codes and messages, and TensorFlow Serving's code -> HTTP table
- :mod:`serving.codec`         JSON and TensorProto <-> arrays (pure functions)
- :mod:`serving.servable`      one loaded export version and the calls that run it
- :mod:`serving.model_config`  ``--model_config_file`` (ModelServerConfig text format)
- :mod:`serving.manager`       which versions of which models are loaded (version policies, labels)
- :mod:`serving.batcher`       concurrent text requests batched into one model run, bounded queue
- :mod:`serving.inference`     limits, jieba segmentation pool, batcher or model thread
- :mod:`serving.metrics`       Prometheus metrics
- :mod:`serving.rest`          the REST API (aiohttp)
- :mod:`serving.grpc_api`      the gRPC API (grpc.aio, tensorflow-serving-api's servicers)
- :mod:`serving.server`        both APIs on one event loop; ``run_server``, ``BackgroundServer``

``serve.py`` is the command line.
"""
