"""TensorFlow Serving's gRPC API on ``grpc.aio``, with the servicers generated in ``tensorflow-serving-api``.

- ``tensorflow.serving.PredictionService``: ``Predict`` (``model_spec`` by name and version or
  version label, any signature, ``output_filter``) and ``GetModelMetadata`` (``signature_def``:
  the export's own SignatureDefs, packed in an ``Any`` as TensorFlow Serving does).
  ``Classify`` and ``Regress`` answer INVALID_ARGUMENT: the exports' signatures are predict
  signatures, as TensorFlow Serving would say for them.
- ``tensorflow.serving.ModelService``: ``GetModelStatus`` and ``HandleReloadConfigRequest``
  (a new ModelServerConfig, applied as a changed ``--model_config_file`` is).

Requests are decoded by :mod:`serving.codec` and run by :class:`serving.inference.Inference`,
exactly like REST requests, so both APIs give the same answers.
"""

from __future__ import annotations

import logging
import time

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import codec
from serving.errors import ServingError, invalid, one_line
from serving.model_config import ConfigError, entries_from_proto

log = logging.getLogger("textcls.serve")


def _spec(model_spec) -> tuple[str, int | None, str | None]:
    which = model_spec.WhichOneof("version_choice")
    version = model_spec.version.value if which == "version" else None
    label = model_spec.version_label if which == "version_label" else None
    return model_spec.name, version, label


def _code_value(code: str) -> int:
    return grpc.StatusCode[code].value[0]


async def _abort(context, e: ServingError):
    await context.abort(grpc.StatusCode[e.code], e.message)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager, inference, metrics):
        self.manager, self.inference, self.metrics = manager, inference, metrics

    async def Predict(self, request, context):  # noqa: N802 - the generated servicer's name
        t0 = time.perf_counter()
        name, version, label = _spec(request.model_spec)
        sig, code, served = request.model_spec.signature_name or codec.DEFAULT_SIGNATURE, "UNKNOWN", None
        try:
            servable = self.manager.servable(name, version, label)
            served = servable.version
            if sig not in servable.signatures:
                raise invalid(f'Serving signature name: "{sig}" not found in signature def')
            specs = servable.inputs[sig]
            if set(request.inputs) != set(specs):
                raise invalid(f"inputs: expected the input(s) {sorted(specs)} of signature {sig}, got {sorted(request.inputs)}")
            arrays = {k: codec.array_from_proto(request.inputs[k], specs[k], f"inputs['{k}']") for k in specs}
            sizes = {a.shape[0] if a.ndim else 1 for a in arrays.values()}
            if len(sizes) > 1:
                raise invalid(f"inputs have different batch sizes {sorted(sizes)}")
            self.inference.check_size(sizes.pop(), "inputs")
            outputs = await self.inference.run(servable, sig, arrays)
            protos = codec.outputs_to_protos(outputs, request.output_filter)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = sig
            for k, p in protos.items():
                response.outputs[k].CopyFrom(p)
            code = "OK"
            return response
        except ServingError as e:
            code = e.code
            await _abort(context, e)
        except Exception as e:  # noqa: BLE001
            log.exception("internal error in gRPC Predict for model %s", name)
            code = "INTERNAL"
            await context.abort(grpc.StatusCode.INTERNAL, f"Internal error: {one_line(e)}")
        finally:
            self.metrics.request(name, served if served is not None else version, sig, "grpc", code, time.perf_counter() - t0)

    async def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            fields = list(request.metadata_field)
            if not fields:
                raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
            for f in fields:
                if f != "signature_def":
                    raise invalid(f"Metadata field {f} is not supported")
            servable = self.manager.servable(*_spec(request.model_spec))
            sig_map = get_model_metadata_pb2.SignatureDefMap()
            for k, v in servable.signature_defs.items():
                sig_map.signature_def[k].CopyFrom(v)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.metadata["signature_def"].Pack(sig_map)
            return response
        except ServingError as e:
            await _abort(context, e)

    async def Classify(self, request, context):  # noqa: N802
        await _abort(context, invalid("Expected classification signature method_name to be tensorflow/serving/classify. "
                                      "Was: tensorflow/serving/predict (use Predict)"))

    async def Regress(self, request, context):  # noqa: N802
        await _abort(context, invalid("Expected regression signature method_name to be tensorflow/serving/regress. "
                                      "Was: tensorflow/serving/predict (use Predict)"))


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager, loader):
        self.manager = manager
        self.loader = loader  # an executor: loading models blocks

    async def GetModelStatus(self, request, context):  # noqa: N802
        try:
            name, version, label = _spec(request.model_spec)
            if label is not None:
                version = self.manager.servable(name, None, label).version
            entries = self.manager.status(name, version)
        except ServingError as e:
            await _abort(context, e)
            return
        response = get_model_status_pb2.GetModelStatusResponse()
        for v, (state, err, msg) in entries:
            s = response.model_version_status.add()
            s.version = v
            s.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
            s.status.error_code = _code_value(err)
            s.status.error_message = msg
        return response

    async def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        import asyncio

        response = model_management_pb2.ReloadConfigResponse()
        try:
            entries = entries_from_proto(request.config, "ReloadConfigRequest.config")
            await asyncio.get_running_loop().run_in_executor(self.loader, self.manager.apply_config, entries)
        except ConfigError as e:
            log.error("reload config request refused: %s; the old config keeps serving", e)
            response.status.error_code = _code_value("INVALID_ARGUMENT")
            response.status.error_message = str(e)
            return response
        response.status.error_code = _code_value("OK")
        return response


def add_services(server, manager, inference, metrics, loader) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(manager, inference, metrics), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager, loader), server)


__all__ = ["PredictionService", "ModelService", "add_services"]
