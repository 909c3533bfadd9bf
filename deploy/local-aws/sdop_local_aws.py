"""sdop local AWS emulator: moto 5.2.5 server plus the SageMaker/CloudFormation
behaviour sdop depends on (status lifecycles, UpdateEndpoint, StopTrainingJob,
duplicate-name errors, tag upsert, DreamBooth checkpoints, InvokeEndpointAsync, Application
Auto Scaling tags and checks) and a control API under
/_sdop/ for durations, fault injection and call counting/logging, and atomic S3
conditional writes. See README.md."""
import argparse
import io
import json
import os
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections import deque
from fractions import Fraction
from urllib.parse import parse_qs, unquote, urlparse

import moto.cloudformation.responses as cfn_responses
from moto.cloudformation.models import CloudFormationBackend
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.werkzeug_app import (DomainDispatcherApplication,
                                           MotoRequestHandler, create_backend_app)
from moto.s3.models import s3_backends
from moto.sagemaker.exceptions import ResourceInUseException, ValidationError
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemaker.models import sagemaker_backends
from moto.sagemakerruntime.models import SageMakerRuntimeBackend
from moto.sagemakerruntime.responses import SageMakerRuntimeResponse
from moto.applicationautoscaling.exceptions import AWSValidationException
from moto.applicationautoscaling.models import (ApplicationAutoscalingBackend,
                                                _target_params_are_valid)
from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse
from moto.core.exceptions import JsonRESTError
from werkzeug.serving import make_server

import containers  # the all-in-one-ai images' contract (containers.py beside this file)
from moto.ecr.models import Image as _EcrImage, ecr_backends

# ---------------------------------------------------------------- state
ENV_DEFAULTS = {  # config key -> (env var, default)
    "endpoint_create_seconds": ("SDOP_EMU_ENDPOINT_CREATE_SECONDS", 2.0),
    "endpoint_update_seconds": ("SDOP_EMU_ENDPOINT_UPDATE_SECONDS", 2.0),
    "endpoint_delete_seconds": ("SDOP_EMU_ENDPOINT_DELETE_SECONDS", 1.0),
    "training_seconds": ("SDOP_EMU_TRAINING_SECONDS", 3.0),
    "training_stop_seconds": ("SDOP_EMU_TRAINING_STOP_SECONDS", 1.0),
    "stack_seconds": ("SDOP_EMU_STACK_SECONDS", 2.0),
    "checkpoint_bytes": ("SDOP_EMU_CHECKPOINT_BYTES", 1024),
    # The WebUI fork commit of inference images not pushed to this ECR (containers.py).
    "external_image_revision": ("SDOP_EMU_EXTERNAL_IMAGE_REVISION", "9f7dec70"),
    # InvokeEndpointAsync: seconds until the result is written, and what the container does:
    # "container" (its /invocations contract), "error" (500 whatever the payload) or "silent"
    # (accepted, no result ever written).
    "invocation_seconds": ("SDOP_EMU_INVOCATION_SECONDS", 1.0),
    "invocation_outcome": ("SDOP_EMU_INVOCATION_OUTCOME", "container"),
}
INVOCATION_OUTCOMES = ("container", "error", "silent")
LOCK = threading.RLock()
CONFIG, FAULTS, FAULT_COUNTERS, CALLS, TRACK = {}, {}, {}, {}, {}
BY_CALLER = {}  # access key id -> {"read", "mutate", "by_api": {api: CALLS-like entry}}
CALL_LOG = deque(maxlen=20000)  # last counted calls: {"t", "api", "read", "caller", "faulted"}
S3_WRITE_LOCK = threading.Lock()  # makes moto's conditional check + write atomic


def env_config():
    return check_config(
        {k: type(d)(os.environ.get(env, d)) for k, (env, d) in ENV_DEFAULTS.items()})


def check_config(values):
    if values.get("invocation_outcome", "container") not in INVOCATION_OUTCOMES:
        raise ValueError(f"invocation_outcome must be one of {list(INVOCATION_OUTCOMES)}")
    return values


def clear_state():
    with LOCK:
        CONFIG.clear(); CONFIG.update(env_config())
        FAULTS.clear(); FAULT_COUNTERS.clear(); CALLS.clear(); TRACK.clear()
        BY_CALLER.clear(); CALL_LOG.clear(); ROLLOUTS.clear()
        containers.clear()


def dur(key):
    return float(CONFIG[key])


# ------------------------------------------------- lifecycles (lazy + ticker)
def advance():
    """Move every tracked resource along its lifecycle according to the clock."""
    now = time.time()
    with LOCK:
        for key, e in list(TRACK.items()):
            if e["kind"] == "training" and e["phase"] == "train":
                secondary_progress(e, now)
            if now >= e["until"]:
                del TRACK[key]
                FINISH[e["kind"]](e)


def finish_endpoint(e):
    ep, be = e["obj"], e["backend"]
    if e["phase"] == "delete":
        if be.endpoints.get(ep.endpoint_name) is ep:
            del be.endpoints[ep.endpoint_name]
        deregister_endpoint_targets(be, ep.endpoint_name)  # registered while Deleting
        return
    fail = e.get("fail") or start_variants(ep, be, e.get("config") or ep.endpoint_config_name)
    if e["phase"] == "create" and fail:
        ep.endpoint_status, ep.failure_reason = "Failed", fail
        ep.last_modified_time = utcnow()
        return
    if e["phase"] == "update":
        alarm = None if fail else tripped_alarm(be, e.get("alarms") or [])
        if alarm:
            # The exact FailureReason text AWS writes is not pinned here; sdop reads only that
            # one is set while the endpoint is InService on the old config.
            fail = f"Rolled back: CloudWatch alarm {alarm} went into ALARM during the update"
        rollout = next((r for r in reversed(ROLLOUTS.get(ep.endpoint_name, []))
                        if r["config"] == e["config"]), None)
        if rollout is not None:
            rollout["outcome"] = f"rolled back: {fail}" if fail else "completed"
        if fail:
            ep.failure_reason = fail  # rollback: old config stays
        else:
            ep.endpoint_config_name = e["config"]
            ep.production_variants = ep._process_production_variants(e["variants"])
            ep.failure_reason = None
    ep.endpoint_status = "InService"
    ep.last_modified_time = utcnow()


def start_variants(ep, be, config_name):
    """Starts the inference image of every variant's model; the first FailureReason, if any."""
    cfg = be.endpoint_configs.get(config_name)
    s3 = s3_backends[be.account_id][be.partition]
    for variant in (cfg.production_variants if cfg else []):
        model = be._models.get(variant.get("ModelName"))
        if model is not None:
            reason = containers.start_inference(ep.endpoint_name, model, s3, ecr_backends,
                                                be.account_id,
                                                CONFIG["external_image_revision"])
            if reason:
                return reason
    return None


def finish_stack(e):
    stack = e["obj"]
    if stack.status == e["phase"] + "_IN_PROGRESS":  # not deleted meanwhile
        stack.status = e["phase"] + "_COMPLETE"
        stack._add_stack_event(stack.status)


SECONDARY = [(0.1, "Starting", "Preparing the instances for training"),
             (0.2, "Downloading", "Downloading input data"),
             (0.9, "Training", "Training image download completed. Training in progress."),
             (1.0, "Uploading", "Uploading generated training model")]


def set_secondary(job, status, message):
    if job.secondary_status == status:
        return
    now = utcnow()
    if job.secondary_status_transitions:
        job.secondary_status_transitions[-1]["EndTime"] = now
    job.secondary_status_transitions.append(
        {"Status": status, "StartTime": now, "StatusMessage": message})
    job.secondary_status = status
    job.last_modified_time = now


def secondary_progress(e, now):
    frac = (now - e["start"]) / max(e["until"] - e["start"], 1e-9)
    for limit, status, message in SECONDARY:
        if frac < limit:
            if status != "Starting" and e["obj"].training_start_time is None:
                e["obj"].training_start_time = utcnow()
            return set_secondary(e["obj"], status, message)


def finish_training(e):
    job = e["obj"]
    if e["phase"] == "stop":
        job.training_job_status = "Stopped"
        set_secondary(job, "Stopped", "The job was stopped")
    else:
        fails = FAULTS.get("fail_training_jobs") or {}
        reason = fails.get(job.training_job_name) or fails.get("*")
        if not reason:
            s3 = s3_backends[e["backend"].account_id][job.arn.split(":")[1]]
            outcome, reason = containers.run_training(
                job, s3, int(CONFIG["checkpoint_bytes"]), FAULTS)
        if reason:
            job.training_job_status, job.failure_reason = "Failed", reason
            set_secondary(job, "Failed", reason)
        else:
            job.training_job_status = "Completed"
            job.model_artifacts = e["artifacts"]
            set_secondary(job, "Completed", "Training job completed")
    job.training_start_time = job.training_start_time or utcnow()
    job.training_end_time = utcnow()
    job.secondary_status_transitions[-1]["EndTime"] = job.training_end_time


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
            be.account_id, e["external_revision"], seed_source=e["id"])
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


FINISH = {"endpoint": finish_endpoint, "training": finish_training, "stack": finish_stack,
          "invocation": finish_invocation}


# ECR: an image's digest is the sha256 of its manifest as pushed (moto hashes the layer
# digests, which gives every layer-less test manifest sha256 of "").
def _manifest_digest(self):
    import hashlib
    self._image_digest = "sha256:" + hashlib.sha256(self.image_manifest.encode()).hexdigest()


_EcrImage._create_digest = _manifest_digest

# ---------------------------------------------------- SageMaker backend patches
def patch(cls, name):
    def deco(fn):
        orig = getattr(cls, name, None)

        def wrapper(self, *a, **kw):
            with LOCK:
                return fn(self, orig, *a, **kw)
        setattr(cls, name, wrapper)
        return wrapper
    return deco


def arn(be, kind, name):
    return f"arn:{be.partition}:sagemaker:{be.region_name}:{be.account_id}:{kind}/{name}"


@patch(SageMakerModelBackend, "create_model")
def create_model(self, orig, model_name, **kw):
    if model_name in self._models:
        raise ValidationError(
            f'Cannot create already existing model "{arn(self, "model", model_name)}".')
    return orig(self, model_name=model_name, **kw)


@patch(SageMakerModelBackend, "create_endpoint_config")
def create_endpoint_config(self, orig, endpoint_config_name, **kw):
    if endpoint_config_name in self.endpoint_configs:
        a = arn(self, "endpoint-config", endpoint_config_name)
        raise ValidationError(f'Cannot create already existing endpoint configuration "{a}".')
    return orig(self, endpoint_config_name=endpoint_config_name, **kw)


@patch(SageMakerModelBackend, "create_endpoint")
def create_endpoint(self, orig, endpoint_name, endpoint_config_name, tags):
    if endpoint_name in self.endpoints:
        a = arn(self, "endpoint", endpoint_name)
        raise ValidationError(f'Cannot create already existing endpoint "{a}".')
    ep = orig(self, endpoint_name, endpoint_config_name, tags)
    ep.data_capture_config = ep.data_capture_config or None
    ep.endpoint_status = "Creating"
    TRACK[ep.arn] = {"kind": "endpoint", "phase": "create", "obj": ep, "backend": self,
                     "until": time.time() + dur("endpoint_create_seconds")}
    return ep


# Rollouts as the traffic shifts, per endpoint (GET /_sdop/rollouts).
ROLLOUTS = {}


def traffic_steps(deployment, variants):
    """The traffic-shifting steps of a blue/green update (SageMaker developer guide, "Use
    canary / linear / all at once traffic shifting"): a canary step then the rest; linear steps
    of LinearStepSize until all traffic moved; one step for all at once (also the default)."""
    routing = ((deployment or {}).get("BlueGreenUpdatePolicy") or {}).get(
        "TrafficRoutingConfiguration") or {"Type": "ALL_AT_ONCE"}
    count = sum(int(v.get("InitialInstanceCount") or 1) for v in variants) or 1

    def percent(size):
        if size["Type"] == "CAPACITY_PERCENT":
            return int(size["Value"])
        return min(100, int(size["Value"]) * 100 // count)
    kind = routing.get("Type")
    if kind == "CANARY":
        if not routing.get("CanarySize"):
            raise ValidationError("CanarySize is required for CANARY traffic routing.")
        return [f"{percent(routing['CanarySize'])}%", "100%"]
    if kind == "LINEAR":
        if not routing.get("LinearStepSize"):
            raise ValidationError("LinearStepSize is required for LINEAR traffic routing.")
        step, steps, done = percent(routing["LinearStepSize"]), [], 0
        while done < 100:
            done = min(100, done + max(step, 1))
            steps.append(f"{done}%")
        return steps
    if kind not in ("ALL_AT_ONCE", None):
        raise ValidationError(f"Value '{kind}' at 'trafficRoutingConfiguration.type' failed to "
                              "satisfy constraint: Member must satisfy enum value set: "
                              "[ALL_AT_ONCE, CANARY, LINEAR]")
    return ["100%"]


def update_endpoint(self, endpoint_name, endpoint_config_name, deployment_config=None):
    with LOCK:
        ep = self.endpoints.get(endpoint_name)
        if ep is None:
            raise ValidationError(
                f'Could not find endpoint "{arn(self, "endpoint", endpoint_name)}".')
        if ep.endpoint_status != "InService":
            raise ValidationError(f'Cannot update in-progress endpoint "{ep.arn}".')
        cfg = self.endpoint_configs.get(endpoint_config_name)
        if cfg is None:
            a = arn(self, "endpoint-config", endpoint_config_name)
            raise ValidationError(f'Could not find endpoint configuration "{a}".')
        changed = autoscaled_instance_type_changes(self, ep, cfg)
        if changed:
            # Rule and source in autoscaled_instance_type_changes; the wording is the emulator's.
            raise ValidationError(
                f"The variant(s) {changed} of endpoint \"{ep.arn}\" are registered as scalable "
                "targets with Application Auto Scaling and the update changes their instance "
                "type. Deregister them (DeregisterScalableTarget) before the update.")
        steps = traffic_steps(deployment_config, cfg.production_variants)
        fail = FAULTS.pop("fail_next_update_endpoint", None)
        ep.endpoint_status, ep.last_modified_time = "Updating", utcnow()
        if deployment_config:
            ep.last_deployment_config = deployment_config  # DescribeEndpoint's LastDeploymentConfig
        alarms = [a["AlarmName"] for a in
                  ((deployment_config or {}).get("AutoRollbackConfiguration") or {}).get("Alarms")
                  or []]
        ROLLOUTS.setdefault(endpoint_name, []).append(
            {"config": endpoint_config_name, "steps": steps, "alarms": alarms, "outcome": None})
        TRACK[ep.arn] = {"kind": "endpoint", "phase": "update", "obj": ep, "backend": self,
                         "config": endpoint_config_name, "fail": fail, "alarms": alarms,
                         "variants": list(cfg.production_variants),
                         "until": time.time() + dur("endpoint_update_seconds")}
        return ep.arn


def tripped_alarm(be, alarms):
    """The first auto-rollback alarm in ALARM (moto's CloudWatch), if any: "If any of the
    pre-specified alarms trip during any baking period, then all endpoint traffic rolls back to
    the blue fleet" (developer guide, "Blue/Green Deployments")."""
    from moto.cloudwatch.models import cloudwatch_backends
    cw = cloudwatch_backends[be.account_id][be.region_name]
    for name in alarms:
        alarm = cw.alarms.get(name)
        if alarm is not None and alarm.state_value == "ALARM":
            return name
    return None


SageMakerModelBackend.update_endpoint = update_endpoint


@patch(SageMakerModelBackend, "delete_endpoint")
def delete_endpoint(self, orig, endpoint_name):
    ep = self.endpoints.get(endpoint_name)
    if ep is None:
        return orig(self, endpoint_name)  # moto's not-found error
    deregister_endpoint_targets(self, endpoint_name)
    if ep.endpoint_status != "Deleting":
        ep.endpoint_status, ep.last_modified_time = "Deleting", utcnow()
        TRACK[ep.arn] = {"kind": "endpoint", "phase": "delete", "obj": ep, "backend": self,
                         "until": time.time() + dur("endpoint_delete_seconds")}


@patch(SageMakerModelBackend, "create_training_job")
def create_training_job(self, orig, training_job_name, **kw):
    if training_job_name in self.training_jobs:
        raise ResourceInUseException(
            "Training job names must be unique within an AWS account and region, and a "
            "training job with this name already exists "
            f"({arn(self, 'training-job', training_job_name)})")
    job = orig(self, training_job_name=training_job_name, **kw)
    artifacts, job.model_artifacts = job.model_artifacts, None
    job.training_job_status, job.secondary_status = "InProgress", None
    job.training_start_time = job.training_end_time = None
    job.secondary_status_transitions, job.final_metric_data_list = [], None
    set_secondary(job, *SECONDARY[0][1:])
    now = time.time()
    TRACK[job.arn] = {"kind": "training", "phase": "train", "obj": job, "backend": self,
                      "start": now, "until": now + dur("training_seconds"),
                      "artifacts": artifacts}
    return job


def stop_training_job(self, training_job_name):
    with LOCK:
        job = self.training_jobs.get(training_job_name)
        if job is None:
            a = arn(self, "training-job", training_job_name)
            raise ValidationError(f"Could not find training job '{a}'.")
        if job.training_job_status != "InProgress":
            raise ValidationError("The request was rejected because the training job is "
                                  f"in status {job.training_job_status}.")
        job.training_job_status = "Stopping"
        set_secondary(job, "Stopping", "Stopping the training job")
        TRACK[job.arn] = {"kind": "training", "phase": "stop", "obj": job, "backend": self,
                          "until": time.time() + dur("training_stop_seconds")}


SageMakerModelBackend.stop_training_job = stop_training_job


def tagged(self, resource_arn):
    res = self._get_resource_from_arn(resource_arn)
    if res is None:
        raise ValidationError(f"Could not find resource {resource_arn}")
    return res


@patch(SageMakerModelBackend, "add_tags")
def add_tags(self, orig, resource_arn, tags):
    res, new = tagged(self, resource_arn), {t["Key"]: t for t in tags or []}
    res.tags = [new.pop(t["Key"], t) for t in res.tags] + list(new.values())
    return res.tags


@patch(SageMakerModelBackend, "list_tags")
def list_tags(self, orig, **kw):
    tagged(self, kw["arn"])
    return orig(self, **kw)


@patch(SageMakerModelBackend, "delete_tags")
def delete_tags(self, orig, resource_arn, tag_keys):
    res = tagged(self, resource_arn)
    res.tags = [t for t in res.tags if t["Key"] not in (tag_keys or [])]


def _update_endpoint_response(self):
    return ActionResult({"EndpointArn": self.sagemaker_backend.update_endpoint(
        self._get_param("EndpointName"), self._get_param("EndpointConfigName"),
        self._get_param("DeploymentConfig"))})


def _stop_training_job_response(self):
    self.sagemaker_backend.stop_training_job(self._get_param("TrainingJobName"))
    return EmptyResult()


SageMakerResponse.update_endpoint = _update_endpoint_response
SageMakerResponse.stop_training_job = _stop_training_job_response


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


# ------------------------------------------------------- Application Auto Scaling
class ObjectNotFound(JsonRESTError):
    """ObjectNotFoundException: "For any operation that depends on the existence of a scalable
    target, this exception is thrown if the scalable target with the specified service
    namespace, resource ID, and scalable dimension does not exist. For any operation that
    deletes or deregisters a resource, this exception is thrown if the resource cannot be
    found." (Application Auto Scaling API reference, Errors)"""
    code = 400

    def __init__(self, message):
        super().__init__("ObjectNotFoundException", message)


class ResourceNotFound(JsonRESTError):
    """ResourceNotFoundException {Message, ResourceName} of the tagging APIs ("The specified
    resource doesn't exist.", botocore application-autoscaling service-2)."""
    code = 400

    def __init__(self, resource_arn):
        # The wording is the emulator's.
        super().__init__("ResourceNotFoundException",
                         f"No scalable target with ARN {resource_arn} exists.")
        self.description = json.dumps({"__type": self.error_type, "message": self.message,
                                       "ResourceName": resource_arn})


def aas_backend(account_id, region_name):
    from moto.applicationautoscaling.models import applicationautoscaling_backends
    return applicationautoscaling_backends[account_id][region_name]


def all_targets(aas):
    return [t for by_id in aas.targets.values() for t in by_id.values()]


def sagemaker_variant(resource_id):
    """endpoint/NAME/variant/VARIANT -> (NAME, VARIANT), else None (RegisterScalableTarget
    ResourceId for SageMaker endpoint variants)."""
    parts = resource_id.split("/")
    if len(parts) == 4 and parts[0] == "endpoint" and parts[2] == "variant":
        return parts[1], parts[3]
    return None


@patch(ApplicationAutoscalingBackend, "register_scalable_target")
def register_scalable_target(self, orig, namespace, r_id, dimension, min_capacity,
                             max_capacity, role_arn, suspended_state, tags=None):
    _target_params_are_valid(namespace, r_id, dimension)  # moto's shape check first
    named = sagemaker_variant(r_id) if namespace == "sagemaker" else None
    if named:
        # The endpoint variant must exist. Its status does not matter: "If the specified
        # resource is not active in the target service, this operation does not change the
        # resource's current capacity" (API_RegisterScalableTarget), so registering a Creating
        # or Updating endpoint's variant is accepted. Wording is the emulator's.
        ep = sagemaker_backends[self.account_id][self.region_name].endpoints.get(named[0])
        if ep is None or named[1] not in [v.get("VariantName") for v in ep.production_variants]:
            raise AWSValidationException(
                f"The endpoint variant {r_id} does not exist: no SageMaker endpoint "
                f"{named[0]!r} with a production variant {named[1]!r}.")
    existing = self._scalable_target_exists(r_id, dimension)
    if existing and tags:
        # RegisterScalableTarget Tags: "Use this parameter to tag the scalable target when it is
        # created. To tag an existing scalable target, use the TagResource operation." (API
        # reference); AWS's error text as reported in hashicorp/terraform-provider-aws#31839.
        raise AWSValidationException(
            "The scalable target that you tried to tag already exists. To update tags on an "
            "existing scalable target, use the TagResource API.")
    # An existing target is updated in place (same ScalableTargetARN): "To update a scalable
    # target, specify the parameters that you want to change ... Any parameters that you don't
    # specify are not changed by this update request." (API_RegisterScalableTarget)
    target = orig(self, namespace, r_id, dimension, min_capacity, max_capacity, role_arn,
                  suspended_state)
    if not existing:
        target.tags = dict(tags or {})
    return target


def no_target(namespace, resource_id, dimension):
    # AWS's text (ansible/ansible#40237, PutScalingPolicy): "No scalable target registered for
    # service namespace: dynamodb, resource ID: tablename, scalable dimension: ..."
    return ObjectNotFound(f"No scalable target registered for service namespace: {namespace}, "
                          f"resource ID: {resource_id}, scalable dimension: {dimension}")


def registered(aas, namespace, resource_id, dimension):
    target = (aas.targets.get(dimension) or {}).get(resource_id)
    return target if target is not None and target.service_namespace == namespace else None


@patch(ApplicationAutoscalingBackend, "put_scaling_policy")
def put_scaling_policy(self, orig, policy_name, service_namespace, resource_id,
                       scalable_dimension, policy_body, policy_type):
    # "You cannot create a scaling policy until you have registered the resource as a scalable
    # target." (API_PutScalingPolicy)
    if registered(self, service_namespace, resource_id, scalable_dimension) is None:
        raise no_target(service_namespace, resource_id, scalable_dimension)
    return orig(self, policy_name=policy_name, service_namespace=service_namespace,
                resource_id=resource_id, scalable_dimension=scalable_dimension,
                policy_body=policy_body, policy_type=policy_type)


@patch(ApplicationAutoscalingBackend, "deregister_scalable_target")
def deregister_scalable_target(self, orig, namespace, r_id, dimension):
    if registered(self, namespace, r_id, dimension) is None:
        raise ObjectNotFound(f"No scalable target found for service namespace: {namespace}, "
                             f"resource ID: {r_id}, scalable dimension: {dimension}")
    orig(self, namespace, r_id, dimension)
    # "Deregistering a scalable target deletes the scaling policies and the scheduled actions
    # that are associated with it." (API_DeregisterScalableTarget), with the CloudWatch alarms
    # Application Auto Scaling created for its target tracking policies.
    for key, policy in list(self.policies.items()):
        if (policy.service_namespace, policy.resource_id, policy.scalable_dimension) == \
                (namespace, r_id, dimension):
            policy.delete_alarms(self.account_id, self.region_name)
            del self.policies[key]
    self.scheduled_actions = [
        a for a in self.scheduled_actions
        if (a.service_namespace, a.resource_id, a.scalable_dimension) != (namespace, r_id, dimension)]


@patch(ApplicationAutoscalingBackend, "delete_scaling_policy")
def delete_scaling_policy(self, orig, policy_name, service_namespace, resource_id,
                          scalable_dimension):
    from moto.applicationautoscaling.models import FakeApplicationAutoscalingPolicy as Policy
    if Policy.formulate_key(service_namespace, resource_id, scalable_dimension,
                            policy_name) not in self.policies:
        # ObjectNotFoundException for a delete of a missing resource (see ObjectNotFound).
        raise ObjectNotFound(
            f"No scaling policy found for service namespace: {service_namespace}, resource ID: "
            f"{resource_id}, scalable dimension: {scalable_dimension}, policy name: {policy_name}")
    return orig(self, policy_name=policy_name, service_namespace=service_namespace,
                resource_id=resource_id, scalable_dimension=scalable_dimension)


@patch(ApplicationAutoscalingBackend, "describe_scaling_policies")
def describe_scaling_policies(self, orig, service_namespace, resource_id, scalable_dimension,
                              max_results, next_token, policy_names=None):
    # Exact ResourceId / ScalableDimension / PolicyNames filters (DescribeScalingPolicies
    # request parameters); moto matched ResourceId as a substring of the filter and ignored
    # PolicyNames.
    policies = [p for p in self.policies.values()
                if p.service_namespace == service_namespace
                and (not resource_id or p.resource_id == resource_id)
                and (not scalable_dimension or p.scalable_dimension == scalable_dimension)
                and (not policy_names or p.policy_name in policy_names)]
    start = int(next_token) if next_token else 0
    end = start + (max_results or 100)
    return (str(end) if end < len(policies) else None), policies[start:end]


def _describe_scaling_policies_response(self):
    from moto.applicationautoscaling.responses import _build_policy
    next_token, page = self.applicationautoscaling_backend.describe_scaling_policies(
        service_namespace=self._get_param("ServiceNamespace"),
        resource_id=self._get_param("ResourceId"),
        scalable_dimension=self._get_param("ScalableDimension"),
        max_results=self._get_int_param("MaxResults"),
        next_token=self._get_param("NextToken"),
        policy_names=self._get_param("PolicyNames"))
    return json.dumps({"ScalingPolicies": [_build_policy(p) for p in page],
                       "NextToken": next_token})


def _register_scalable_target_response(self):
    self._validate_params()
    target = self.applicationautoscaling_backend.register_scalable_target(
        self._get_param("ServiceNamespace"), self._get_param("ResourceId"),
        self._get_param("ScalableDimension"),
        min_capacity=self._get_int_param("MinCapacity"),
        max_capacity=self._get_int_param("MaxCapacity"),
        role_arn=self._get_param("RoleARN"),
        suspended_state=self._get_param("SuspendedState"),
        tags=self._get_param("Tags"))
    return json.dumps({"ScalableTargetARN": target.arn})


# TagResource / UntagResource / ListTagsForResource on a ScalableTargetARN ("you can use this
# operation to tag an Application Auto Scaling scalable target, but you cannot tag a scaling
# policy or scheduled action", API_TagResource); moto 5.2.5 raises NotImplementedError.
def tagged_target(self):
    with LOCK:
        resource_arn = self._get_param("ResourceARN")
        for target in all_targets(self.applicationautoscaling_backend):
            if target.arn == resource_arn:
                if not hasattr(target, "tags"):
                    target.tags = {}
                return target
        raise ResourceNotFound(resource_arn)


def _tag_resource_response(self):
    # "If you specify an existing tag key with a different tag value, Application Auto Scaling
    # replaces the current tag value with the specified one." (TagResource Tags)
    tagged_target(self).tags.update(self._get_param("Tags") or {})
    return json.dumps({})


def _untag_resource_response(self):
    target = tagged_target(self)
    for key in self._get_param("TagKeys") or []:
        target.tags.pop(key, None)
    return json.dumps({})


def _list_tags_for_resource_response(self):
    return json.dumps({"Tags": dict(tagged_target(self).tags)})


ApplicationAutoScalingResponse.register_scalable_target = _register_scalable_target_response
ApplicationAutoScalingResponse.describe_scaling_policies = _describe_scaling_policies_response
ApplicationAutoScalingResponse.tag_resource = _tag_resource_response
ApplicationAutoScalingResponse.untag_resource = _untag_resource_response
ApplicationAutoScalingResponse.list_tags_for_resource = _list_tags_for_resource_response


def deregister_endpoint_targets(be, endpoint_name):
    """DeleteEndpoint: "If you delete an endpoint, Application Auto Scaling checks to see whether
    any of the models on that endpoint are targets for auto scaling. If any are and you have
    permission to deregister the model, Application Auto Scaling deregisters those models as
    scalable targets without notifying you." (developer guide, endpoint-delete-with-scaling)"""
    aas = aas_backend(be.account_id, be.region_name)
    for target in all_targets(aas):
        named = sagemaker_variant(target.resource_id)
        if target.service_namespace == "sagemaker" and named and named[0] == endpoint_name:
            aas.deregister_scalable_target(target.service_namespace, target.resource_id,
                                           target.scalable_dimension)


def autoscaled_instance_type_changes(be, ep, cfg):
    """Variants of `ep` registered as scalable targets whose InstanceType `cfg` changes:
    "If the update would change the instance type for any model that is a target for auto
    scaling, the update fails." (developer guide, endpoint-scaling-update)"""
    old = be.endpoint_configs.get(ep.endpoint_config_name)
    if old is None:
        return []
    old_types = {v.get("VariantName"): v.get("InstanceType") for v in old.production_variants}
    new_types = {v.get("VariantName"): v.get("InstanceType") for v in cfg.production_variants}
    changed = []
    for target in all_targets(aas_backend(be.account_id, be.region_name)):
        named = sagemaker_variant(target.resource_id)
        if target.service_namespace != "sagemaker" or not named or named[0] != ep.endpoint_name:
            continue
        variant = named[1]
        # A variant the new config drops is not checked: the guide only says deregistering is
        # "required" for it, not that UpdateEndpoint fails.
        if variant in new_types and old_types.get(variant) != new_types[variant]:
            changed.append(variant)
    return sorted(set(changed))


# ------------------------------------------------------ CloudFormation patches
def track_stack(stack, phase):
    if stack.status == phase + "_COMPLETE" and dur("stack_seconds") > 0:
        if stack.events and stack.events[-1].resource_status == stack.status:
            stack.events.pop()
        stack.status = phase + "_IN_PROGRESS"
        TRACK[stack.stack_id] = {"kind": "stack", "phase": phase, "obj": stack,
                                 "until": time.time() + dur("stack_seconds")}
    return stack


CREATING = threading.local()


class _NoOutputs(dict):
    exports = []


@patch(CloudFormationBackend, "create_stack")
def create_stack(self, orig, *a, **kw):
    # AWS reports a resource that fails to create in the stack (CREATE_FAILED, then
    # ROLLBACK_COMPLETE for a first create), not as an error of CreateStack; moto raises out of
    # CreateStack. A nested stack's failure fails its parent, so it is raised up to the top.
    depth = getattr(CREATING, "depth", 0)
    CREATING.depth = depth + 1
    try:
        return track_stack(orig(self, *a, **kw), "CREATE")
    except Exception as err:  # noqa: BLE001 - any resource's failure
        name = kw.get("name", a[0] if a else None)
        stack = next((st for st in self.stacks.values() if st.name == name), None)
        if stack is None:
            raise
        reason = getattr(err, "message", None) or " ".join(map(str, err.args)) or repr(err)
        stack._add_stack_event("CREATE_FAILED", resource_status_reason=reason)
        stack.status = "CREATE_FAILED"
        # A failed stack has no outputs (moto would evaluate them, creating the failed
        # resource again on every DescribeStacks).
        stack.output_map = _NoOutputs()
        if depth:
            raise
        stack.status = "ROLLBACK_COMPLETE"
        stack._add_stack_event("ROLLBACK_COMPLETE")
        return stack
    finally:
        CREATING.depth = depth


# AWS fails a Lambda function or layer whose code is not at Code.S3Bucket/S3Key ("Error
# occurred while GetObject. S3 Error Code: NoSuchKey"): the all-in-one-ai LAMBDA stack fails
# when a codes/<name>.zip is missing. moto's S3 get_object returns None instead of raising
# MissingKey, so moto created the function with empty code.
import moto.awslambda.models as lambda_models  # noqa: E402

_orig_validate_code = lambda_models._validate_s3_bucket_and_key


def _validate_code(account_id, partition, data):
    key = _orig_validate_code(account_id, partition, data)
    if key is None and lambda_models.do_validate_s3():
        raise lambda_models.InvalidParameterValueException(
            "Error occurred while GetObject. S3 Error Code: NoSuchKey. S3 Error Message: "
            f"The specified key does not exist. (s3://{data.get('S3Bucket')}/{data.get('S3Key')})")
    return key


lambda_models._validate_s3_bucket_and_key = _validate_code


@patch(CloudFormationBackend, "update_stack")
def update_stack(self, orig, name, *a, **kw):
    stack = self.get_stack(name)
    if stack.status.endswith("_IN_PROGRESS"):
        raise cfn_responses.ValidationError(
            name, f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated.")
    return track_stack(orig(self, name, *a, **kw), "UPDATE")


# AWS reports List<...> parameters comma-joined (moto: a Python list repr) and keeps the
# stack's Capabilities (moto: drops them). sdop compares both with its manifests.
from moto.cloudformation.models import Stack as _Stack  # noqa: E402

_orig_parameter_list = _Stack.parameter_list.fget
_Stack.parameter_list = property(lambda self: [
    dict(p, ParameterValue=",".join(map(str, p["ParameterValue"])))
    if isinstance(p.get("ParameterValue"), list) else p
    for p in _orig_parameter_list(self)])


def _keep_capabilities(method):
    orig = getattr(cfn_responses.CloudFormationResponse, method)

    def wrapper(self):
        result = orig(self)
        stack = self.cloudformation_backend.get_stack(self._get_param("StackName"))
        stack.capabilities = sorted(self._get_param("Capabilities", []) or [])
        return result
    setattr(cfn_responses.CloudFormationResponse, method, wrapper)


_keep_capabilities("create_stack")
_keep_capabilities("update_stack")

# `!GetAtt NESTED.Outputs.NAME` (and `${NESTED.Outputs.NAME}` in !Sub): AWS returns a nested
# stack's output (AWS::CloudFormation::Stack return values, "Outputs.NestedStackOutputName");
# moto passes only "Outputs" to the nested stack and gets nothing. The all-in-one-ai main
# template (deployment/templates/all-in-one-ai-webui-main.yaml) wires its nested stacks so.
import moto.cloudformation.parsing as cfn_parsing  # noqa: E402

_orig_clean_json = cfn_parsing.clean_json


def _clean_json(resource_json, resources_map):
    if isinstance(resource_json, dict) and "Fn::GetAtt" in resource_json:
        att = resource_json["Fn::GetAtt"]
        parts = [att[0], *str(att[1]).split("."), *att[2:]] if len(att) >= 2 else att
        if len(parts) == 3 and parts[1] == "Outputs":
            try:
                nested = resources_map[parts[0]]
            except Exception:  # noqa: BLE001 - moto's own GetAtt reports the bad reference
                nested = None
            if isinstance(nested, _Stack):
                outputs = {o["OutputKey"]: o["OutputValue"] for o in nested.outputs or []}
                if parts[2] not in outputs:
                    raise cfn_responses.ValidationError(
                        nested.name, f"nested stack {parts[0]} has no output {parts[2]}")
                return outputs[parts[2]]
    return _orig_clean_json(resource_json, resources_map)


cfn_parsing.clean_json = _clean_json

_orig_s3_url = cfn_responses.get_stack_from_s3_url
cfn_responses.get_stack_from_s3_url = lambda url, **kw: _orig_s3_url(
    url.replace("//127.0.0.1", "//localhost"), **kw)  # moto only path-parses "localhost"


# ------------------------------------------------------------ WSGI middleware
CRED = re.compile(r"Credential=([^/,]*)/[^/]*/[^/]*/([^/]*)/")
# sagemaker-runtime's REST paths (botocore sagemaker-runtime service-2 requestUri; signing name
# "sagemaker"): named by their operation, not the HTTP method.
RUNTIME_PATH = re.compile(r"^/endpoints/[^/]+/(async-)?invocations$")
S3_BUCKET_SUB = {"tagging": "BucketTagging", "versioning": "BucketVersioning",
                 "policy": "BucketPolicy", "acl": "BucketAcl", "cors": "BucketCors",
                 "lifecycle": "BucketLifecycleConfiguration", "encryption": "BucketEncryption",
                 "location": "BucketLocation", "notification": "BucketNotificationConfiguration",
                 # S3 API reference names: PutPublicAccessBlock, PutBucketOwnershipControls.
                 "publicAccessBlock": "PublicAccessBlock", "ownershipControls": "BucketOwnershipControls"}


def s3_api(method, path, host, qs, headers):
    host, path = host.split(":")[0], path.lstrip("/")
    if host.endswith(".localhost") or (".s3." in host and not host.startswith("s3.")):
        bucket, key = host.split(".")[0], path  # virtual-host style
    else:
        bucket, _, key = path.partition("/")
    if not bucket:
        return "ListBuckets"
    if key:
        if "uploadId" in qs:
            return {"PUT": "UploadPart", "POST": "CompleteMultipartUpload",
                    "DELETE": "AbortMultipartUpload"}.get(method, "ListParts")
        if "uploads" in qs:
            return "CreateMultipartUpload"
        if "tagging" in qs:
            return {"GET": "GetObjectTagging", "PUT": "PutObjectTagging"}.get(method, "DeleteObjectTagging")
        if method == "PUT" and "HTTP_X_AMZ_COPY_SOURCE" in headers:
            return "CopyObject"
        return {"GET": "GetObject", "HEAD": "HeadObject", "PUT": "PutObject",
                "DELETE": "DeleteObject"}.get(method, "PostObject")
    for sub, name in S3_BUCKET_SUB.items():
        if sub in qs:
            return {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method, method) + name
    if method == "GET":
        return "ListMultipartUploads" if "uploads" in qs else (
            "ListObjectsV2" if qs.get("list-type") == ["2"] else "ListObjects")
    if method == "POST" and "delete" in qs:
        return "DeleteObjects"
    return {"HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method, method)


def credential(auth, qs):
    """-> (caller access key id, service) from SigV4 (header or presigned) or SigV2."""
    m = CRED.search(auth or "Credential=" + (qs.get("X-Amz-Credential") or [""])[0])
    if m:
        return m.group(1) or "unknown", m.group(2)
    if auth.startswith("AWS ") or "AWSAccessKeyId" in qs:  # SigV2 ("AWS AKID:sig") is S3-only
        akid = auth[4:].split(":")[0] if auth.startswith("AWS ") else qs["AWSAccessKeyId"][0]
        return akid or "unknown", "s3"
    return "unknown", "unknown"


def classify(environ):
    """-> (api name like 'sagemaker:DescribeEndpoint', protocol, is_read, caller)."""
    method = environ["REQUEST_METHOD"]
    qs = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    caller, service = credential(environ.get("HTTP_AUTHORIZATION", ""), qs)
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        action, proto = target.rsplit(".", 1)[-1], "json"
    elif service == "sagemaker" and RUNTIME_PATH.match(environ.get("PATH_INFO", "")):
        async_ = RUNTIME_PATH.match(environ["PATH_INFO"]).group(1)
        action, proto = ("InvokeEndpointAsync" if async_ else "InvokeEndpoint"), "json"
    elif service == "s3":
        action = s3_api(method, environ.get("PATH_INFO", "/"), environ.get("HTTP_HOST", ""), qs, environ)
        return f"s3:{action}", "s3", method in ("GET", "HEAD"), caller
    else:
        form = {}
        if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
            form = parse_qs(body.decode("utf-8", "replace"))
        action, proto = (form.get("Action") or qs.get("Action") or [method])[0], "query"
    # DynamoDB's Scan and Query read too (the DynamoDB API reference's read operations).
    is_read = action.startswith(("Describe", "List", "Get", "Head", "BatchGet", "Scan", "Query"))
    return f"{service}:{action}", proto, is_read, caller


def pick_fault(kind, api, method):
    rules = FAULTS.get(kind) or {}
    svc = api.split(":")[0]
    for pattern in (api, f"{svc}:{method}", f"{svc}:*", "*"):
        if pattern in rules:
            frac = Fraction(str(rules[pattern])).limit_denominator(10**6)
            n = FAULT_COUNTERS[(kind, api)] = FAULT_COUNTERS.get((kind, api), 0) + 1
            return int(n * frac) > int((n - 1) * frac)  # exactly every 1/frac-th call
    return False


def error_response(kind, proto, start_response):
    rid = str(uuid.uuid4())
    if proto == "json":
        code, status, msg = (("ThrottlingException", "400 Bad Request", "Rate exceeded")
                             if kind == "throttle" else
                             ("InternalFailure", "500 Internal Server Error", "injected"))
        body = json.dumps({"__type": code, "message": msg})
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)]
    elif proto == "s3":
        code, status, msg = (("SlowDown", "503 Slow Down", "Please reduce your request rate.")
                             if kind == "throttle" else
                             ("InternalError", "500 Internal Server Error", "injected"))
        body = f"<Error><Code>{code}</Code><Message>{msg}</Message><RequestId>{rid}</RequestId></Error>"
        headers = [("Content-Type", "application/xml")]
    else:
        typ, code, status, msg = (("Sender", "Throttling", "400 Bad Request", "Rate exceeded")
                                  if kind == "throttle" else
                                  ("Receiver", "InternalFailure", "500 Internal Server Error", "injected"))
        body = (f"<ErrorResponse><Error><Type>{typ}</Type><Code>{code}</Code><Message>{msg}"
                f"</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>")
        headers = [("Content-Type", "text/xml")]
    data = body.encode()
    start_response(status, headers + [("x-amzn-RequestId", rid), ("x-amz-request-id", rid),
                                      ("Content-Length", str(len(data)))])
    return [data]


def bump(table, api, is_read, faulted):
    entry = table.setdefault(api, {"read": 0, "mutate": 0, "count": 0, "faulted": 0})
    entry["read" if is_read else "mutate"] += 1
    entry["count"] += 1
    entry["faulted"] += faulted


def count(api, is_read, faulted, caller, t):
    bump(CALLS, api, is_read, faulted)
    who = BY_CALLER.setdefault(caller, {"read": 0, "mutate": 0, "by_api": {}})
    who["read" if is_read else "mutate"] += 1
    bump(who["by_api"], api, is_read, faulted)
    CALL_LOG.append({"t": t, "api": api, "read": is_read, "caller": caller,
                     "faulted": bool(faulted)})


def calls_report():
    total = {"read": sum(e["read"] for e in CALLS.values()),
             "mutate": sum(e["mutate"] for e in CALLS.values())}
    return {"total": total, "by_api": CALLS, "by_caller": BY_CALLER}


def calls_log(environ):
    since = (parse_qs(environ.get("QUERY_STRING", "")).get("since") or [None])[0]
    if since is None:
        return {"calls": list(CALL_LOG)}
    since = float(since)  # ValueError -> 400
    return {"calls": [c for c in CALL_LOG if c["t"] > since]}


def control(environ, start_response):
    method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
    try:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(size) or b"{}") if size else {}
        with LOCK:
            if path == "/_sdop/config" and method == "POST":
                unknown = set(body) - set(ENV_DEFAULTS)
                if unknown:
                    raise ValueError(f"unknown config keys: {sorted(unknown)}")
                CONFIG.update(check_config(
                    {k: type(ENV_DEFAULTS[k][1])(v) for k, v in body.items()}))
            elif path == "/_sdop/faults" and method == "POST":
                for k, v in body.items():
                    if isinstance(v, dict) and isinstance(FAULTS.get(k), dict):
                        FAULTS[k].update(v)
                    elif v is None:
                        FAULTS.pop(k, None)
                    else:
                        FAULTS[k] = v
                FAULT_COUNTERS.clear()
            elif path == "/_sdop/faults" and method == "DELETE":
                FAULTS.clear(); FAULT_COUNTERS.clear()
            elif path == "/_sdop/calls" and method == "DELETE":
                CALLS.clear(); BY_CALLER.clear(); CALL_LOG.clear()
            elif path == "/_sdop/reset" and method == "POST":
                moto_api_backend.reset()
                clear_state()
            elif not (method == "GET" and path in ("/_sdop/config", "/_sdop/faults", "/_sdop/calls",
                                                    "/_sdop/calls/log", "/_sdop/health",
                                                    "/_sdop/containers", "/_sdop/rollouts")):
                raise LookupError(f"no route {method} {path}")
            out = (calls_log(environ) if path == "/_sdop/calls/log" else
                   {"/_sdop/config": CONFIG, "/_sdop/faults": FAULTS,
                    "/_sdop/calls": calls_report(),
                    "/_sdop/containers": containers.report(),
                    "/_sdop/rollouts": ROLLOUTS}.get(path, {"status": "ok"}))
            data, status = json.dumps(out).encode(), "200 OK"
    except LookupError as err:
        data, status = json.dumps({"error": str(err)}).encode(), "404 Not Found"
    except Exception as err:  # noqa: BLE001 - bad input from the test
        data, status = json.dumps({"error": str(err)}).encode(), "400 Bad Request"
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data)))])
    return [data]


# S3 writes whose outcome depends on (or changes) an object's current state. Moto checks
# If-Match / If-None-Match and then writes in separate steps, so two racing conditional
# PUTs could both pass the check; these run one at a time (any key, any bucket).
S3_OBJECT_WRITES = {"s3:PutObject", "s3:CopyObject", "s3:DeleteObject", "s3:DeleteObjects",
                    "s3:CompleteMultipartUpload"}


def buffer_body(environ):
    """Read the request body up front so a slow uploader never holds S3_WRITE_LOCK."""
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):  # chunked transfer: read to the end
        body = stream.read()
    else:
        body = stream.read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.input"] = io.BytesIO(body)


class SdopMiddleware:
    def __init__(self, app):
        self.app = app

    @staticmethod
    def is_kill_point(api):
        with LOCK:
            if not KILL_POINT.get("armed") or KILL_POINT.get("reached") or KILL_POINT["api"] != api:
                return False
            KILL_POINT["seen"] += 1
            return KILL_POINT["seen"] == KILL_POINT["nth"]

    def __call__(self, environ, start_response):
        arrived = time.time()  # call log time: when the request reached the emulator
        path = environ.get("PATH_INFO", "")
        if path == "/_sdop/kill-point":
            return kill_point_control(environ, start_response)
        if path.startswith("/_sdop/"):
            return control(environ, start_response)
        if path.startswith("/moto-api"):
            return self.app(environ, start_response)
        api, proto, is_read, caller = classify(environ)
        with LOCK:
            advance()
            fault = next((k for k in ("throttle", "error500")
                          if pick_fault(k, api, environ["REQUEST_METHOD"])), None)
            count(api, is_read, fault is not None, caller, arrived)
            delay = (FAULTS.get("delay") or {}).get(api, 0)
        if fault:
            return error_response(fault, proto, start_response)
        if delay:
            # A slow network or a slow AWS: the request reaches moto this much later (tests
            # use it to make two callers' creates race).
            time.sleep(float(delay))
        if not self.is_kill_point(api):
            return self.forward(api, environ, start_response)
        # The call takes effect in AWS; its answer is held until the test has killed the
        # caller (kill -9 between "AWS did it" and "the caller knows"), then released.
        result = list(self.forward(api, environ, start_response))
        KILL_POINT["reached"] = True
        deadline = time.time() + 60
        while KILL_POINT.get("armed") and time.time() < deadline:
            time.sleep(0.02)
        return result

    def forward(self, api, environ, start_response):
        if api in S3_OBJECT_WRITES:
            buffer_body(environ)
            with S3_WRITE_LOCK:  # moto builds the whole response inside this call
                return self.app(environ, start_response)
        return self.app(environ, start_response)


# The kill point: {"api": "sagemaker:CreateModel", "nth": 2} arms it at the 2nd such call.
KILL_POINT = {}


def kill_point_control(environ, start_response):
    if environ["REQUEST_METHOD"] == "POST":
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        wanted = json.loads(body or b"{}")
        with LOCK:
            KILL_POINT.clear()
            if wanted:
                KILL_POINT.update({"api": wanted["api"], "nth": int(wanted.get("nth", 1)),
                                   "seen": 0, "armed": True, "reached": False})
    elif environ["REQUEST_METHOD"] == "DELETE":
        KILL_POINT["armed"] = False  # releases a held answer
    data = json.dumps({k: v for k, v in KILL_POINT.items()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


def ticker():
    while True:
        time.sleep(0.1)
        try:
            advance()
        except Exception as err:  # noqa: BLE001 - keep ticking
            print(f"sdop-local-aws: ticker error: {err!r}", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--quiet", action="store_true", help="no per-request log on stderr")
    args = ap.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    clear_state()
    app = SdopMiddleware(DomainDispatcherApplication(create_backend_app))
    handler = type("Handler", (MotoRequestHandler,), {"log_request": lambda *a, **k: None}
                   ) if args.quiet else MotoRequestHandler
    server = make_server(args.host, args.port, app, threaded=True, request_handler=handler)
    threading.Thread(target=ticker, daemon=True).start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    print(f"sdop-local-aws listening on http://{args.host}:{server.port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
