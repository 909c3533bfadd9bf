"""sagemaker-runtime InvokeEndpointAsync in the sdop local AWS emulator: the request goes
through the endpoint to the all-in-one-ai container contract (containers.invoke_async) and the
answer is written to S3 after `invocation_seconds`."""
import json
import re
import time
import uuid
from urllib.parse import unquote

from moto.core.exceptions import JsonRESTError
from moto.ecr.models import ecr_backends
from moto.s3.models import s3_backends
from moto.sagemaker.models import sagemaker_backends
from moto.sagemakerruntime.models import SageMakerRuntimeBackend
from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

import containers  # the all-in-one-ai images' contract (containers.py beside this file)
from local_aws_state import CONFIG, FINISH, TRACK, blank_images, dur, patch


def finish_invocation(e):
    """An async inference request comes out of the endpoint's queue: the container answers and
    SageMaker writes the answer to S3 (sagemaker-runtime InvokeEndpointAsync below)."""
    be = e["backend"]
    s3 = s3_backends[be.account_id][be.partition]
    log = containers.LOGS[e["endpoint"]]
    if e["outcome"] == "error":
        status, out = containers.SERVER_ERROR
        log.append(f"invocation {e['id']}: 500 (injected: invocation_outcome=error)")
    else:
        status, out = containers.invoke_async(
            e["endpoint"], e["model"], e["body"], e["content_type"], s3, ecr_backends,
            be.account_id, e["external_revision"], blank=e["blank"])
    # A 2xx answer is the inference response (S3OutputPath, "The Amazon S3 location to upload
    # inference responses to"); any other is a failure response (S3FailurePath, "The Amazon S3
    # location to upload failure inference responses to"; API_AsyncInferenceOutputConfig).
    # Without an S3FailurePath a failure is written nowhere in S3 (failure responses reach S3
    # only since the 2023-04-04 API change that added S3FailurePath / FailureLocation: "now
    # allows customers to receive failure model responses in S3"); SageMaker reports it to the
    # ErrorTopic and CloudWatch.
    dest = e["output"] if 200 <= status < 300 else e["failure"]
    if dest is None:
        log.append(f"invocation {e['id']}: {status}, no S3FailurePath: nothing written")
        return
    bucket, _, key = dest[len("s3://"):].partition("/")
    try:
        s3.put_object(bucket, key, out)
        log.append(f"invocation {e['id']}: {status}, written to {dest}")
    except Exception as err:  # noqa: BLE001 - a missing bucket: SageMaker cannot upload
        log.append(f"invocation {e['id']}: {status}, could not write {dest}: {err!r}")


FINISH["invocation"] = finish_invocation


# ------------------------------------------- sagemaker-runtime InvokeEndpointAsync
# moto 5.2.5 (moto/sagemakerruntime/models.py invoke_endpoint_async) ignores the endpoint and
# writes a canned result into a fresh random bucket. Here the request goes through the endpoint:
# its serving endpoint config's AsyncInferenceConfig, the serving variant's model and the
# all-in-one-ai container's /invocations contract (containers.invoke_async), asynchronously.
class RuntimeValidationError(JsonRESTError):
    """sagemaker-runtime's ValidationError (HTTP 400; botocore sagemaker-runtime service-2
    shape ValidationError, the only client error InvokeEndpointAsync declares)."""
    code = 400

    def __init__(self, message):
        super().__init__("ValidationError", message)


def s3_uri(uri):
    """s3://bucket/key -> (bucket, key), else None."""
    m = re.match(r"s3://([^/]+)/?(.*)$", uri or "")
    return (m.group(1), m.group(2)) if m else None


# Endpoint statuses that take invocations: InService, and Updating, where "SageMaker shifts
# endpoint traffic to the new instances ... (there is no availability loss)" (API_UpdateEndpoint;
# the old config serves until the update completes).
SERVING = ("InService", "Updating")
# InvokeEndpointAsync Body: "The inline payload can be up to 128,000 bytes. Body and
# InputLocation are mutually exclusive. Provide exactly one of them." (botocore sagemaker-runtime
# service-2, InvokeEndpointAsyncInput.Body)
INLINE_BODY_MAX = 128000


@patch(SageMakerRuntimeBackend, "invoke_endpoint_async")
def invoke_endpoint_async(self, orig, endpoint_name, input_location=None, body=None,
                          inference_id=None, content_type=None):
    sm = sagemaker_backends[self.account_id][self.region_name]
    ep = sm.endpoints.get(endpoint_name)
    if ep is None:
        # AWS's text, e.g. aws/amazon-sagemaker-examples#293: "Endpoint NAME of account ACCOUNT
        # not found."
        raise RuntimeValidationError(
            f"Endpoint {endpoint_name} of account {self.account_id} not found.")
    if ep.endpoint_status not in SERVING:
        # The wording is the emulator's (AWS's is not pinned).
        raise RuntimeValidationError(
            f"Endpoint {endpoint_name} of account {self.account_id} is not in service "
            f"(status {ep.endpoint_status}).")
    cfg = sm.endpoint_configs.get(ep.endpoint_config_name)
    async_config = (getattr(cfg, "async_inference_config", None) or {}) if cfg else {}
    if not async_config:
        # An asynchronous endpoint is one whose endpoint config has AsyncInferenceConfig
        # (developer guide async-inference-create-endpoint). Wording is the emulator's.
        raise RuntimeValidationError(
            f"Endpoint {endpoint_name} of account {self.account_id} is not an asynchronous "
            "endpoint: its endpoint configuration has no AsyncInferenceConfig.")
    if (input_location is None) == (body is None):
        raise RuntimeValidationError("Provide exactly one of InputLocation and Body.")
    if body is not None and len(body) > INLINE_BODY_MAX:
        raise RuntimeValidationError(
            f"Body is {len(body)} bytes; the inline payload can be up to {INLINE_BODY_MAX} bytes.")
    if input_location is not None:
        # Checked when the call is made (the brief's rule; AWS does not document whether a
        # missing input fails the call or the inference). Wording is the emulator's.
        where, data = s3_uri(input_location), None
        if where:
            s3 = s3_backends[self.account_id][self.partition]
            try:
                obj = s3.get_object(*where)
            except Exception:  # noqa: BLE001 - moto's MissingBucket
                obj = None
            data = getattr(obj, "value", None)
        if data is None:
            raise RuntimeValidationError(
                f"Could not read the input from InputLocation {input_location}: no such S3 object.")
        body = data
    output_config = async_config.get("OutputConfig") or {}
    inference_id = inference_id or str(uuid.uuid4())
    # The response object is named after the inference id: "If not specified, Amazon SageMaker
    # AI generates a filename based on the inference ID" (InvokeEndpointAsync Filename, botocore
    # sagemaker-runtime service-2) with the ".out" extension of the developer guide's result
    # notifications (async-inference-check-predictions, "outputLocation": ".../prediction.out").
    # Failure objects get "<id>-error.out": that name is not in AWS's docs (the brief's rule;
    # public client code that polls real endpoints looks for it, not verified here).
    out_path, fail_path = output_config.get("S3OutputPath"), output_config.get("S3FailurePath")
    output = f"{out_path.rstrip('/')}/{inference_id}.out" if out_path else None
    failure = f"{fail_path.rstrip('/')}/{inference_id}-error.out" if fail_path else None
    # The serving variant's model. With several variants AWS splits traffic by weight; the
    # emulator sends every request to the first variant.
    variant = (cfg.production_variants or [{}])[0]
    model = sm._models.get(variant.get("ModelName"))
    outcome = CONFIG["invocation_outcome"]
    if model is None:
        # Deleting a model does not stop an endpoint on AWS; the emulator no longer has it.
        containers.LOGS[endpoint_name].append(
            f"invocation {inference_id}: model {variant.get('ModelName')!r} was deleted; the "
            "emulator cannot run it (no result is written)")
    elif outcome != "silent":
        TRACK[f"invocation/{uuid.uuid4()}"] = {
            "kind": "invocation", "id": inference_id, "backend": sm, "endpoint": endpoint_name,
            "model": model, "body": bytes(body), "content_type": content_type,
            "output": output, "failure": failure, "outcome": outcome,
            "external_revision": CONFIG["external_image_revision"],
            # Both taken at call time, like the outcome: each invocation's result is written
            # invocation_seconds after its own call (no queue: concurrent invocations do not
            # wait for each other).
            "blank": blank_images(endpoint_name),
            "until": time.time() + dur("invocation_seconds")}
    return inference_id, output, failure


def _invoke_endpoint_async_response(self):
    """POST /endpoints/NAME/async-invocations -> 202, body {"InferenceId"}, the locations in the
    X-Amzn-SageMaker-OutputLocation / -FailureLocation headers (botocore sagemaker-runtime
    service-2: InvokeEndpointAsync responseCode 202; InvokeEndpointAsyncOutput)."""
    endpoint_name = unquote(self.path.split("?")[0].split("/")[2])
    h = self.headers
    inference_id, output, failure = self.sagemakerruntime_backend.invoke_endpoint_async(
        endpoint_name, input_location=h.get("X-Amzn-SageMaker-InputLocation"),
        body=self.raw_body or None, inference_id=h.get("X-Amzn-SageMaker-Inference-Id"),
        content_type=h.get("X-Amzn-SageMaker-Content-Type"))
    # moto takes the status from headers["status"] (core/responses.py _transform_response), not
    # from the tuple.
    headers = {"Content-Type": "application/json", "status": 202}
    if output:
        headers["X-Amzn-SageMaker-OutputLocation"] = output
    if failure:
        headers["X-Amzn-SageMaker-FailureLocation"] = failure
    return 202, headers, json.dumps({"InferenceId": inference_id})


SageMakerRuntimeResponse.invoke_endpoint_async = _invoke_endpoint_async_response
