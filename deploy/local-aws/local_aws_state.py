"""Shared state of the sdop local AWS emulator: the config (durations and knobs from env vars or
POST /_sdop/config), faults, call counters and log, the lifecycle tracker and the lock that
guards them all. The lifecycles' end steps (FINISH) and progress steps (PROGRESS) are
registered by the service modules (local_aws_sagemaker, local_aws_runtime,
local_aws_cloudformation)."""
import os
import threading
import time
from collections import deque

import containers  # the all-in-one-ai images' contract (containers.py beside this file)

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
    # InvokeEndpointAsync: the endpoints whose text-to-image images are drawn all black (a
    # finetune gone wrong, for a failing evaluation): a list of endpoint names, or "*" for
    # every endpoint; the env var is comma-separated. Taken at call time.
    "blank_images": ("SDOP_EMU_BLANK_IMAGES", []),
    # GetResources (Resource Groups Tagging API) answers with the tags of sdop's types as they
    # were this many seconds ago (0: as they are now); local_aws_tagging.py. Taken at call time.
    "tagging_lag_seconds": ("SDOP_EMU_TAGGING_LAG_SECONDS", 0.0),
}
INVOCATION_OUTCOMES = ("container", "error", "silent")
LOCK = threading.RLock()
CONFIG, FAULTS, FAULT_COUNTERS, CALLS, TRACK = {}, {}, {}, {}, {}
BY_CALLER = {}  # access key id -> {"read", "mutate", "by_api": {api: CALLS-like entry}}
BODY_BYTES = {}  # api -> {"bytes": request body bytes declared, "faulted": of faulted calls}
CALL_LOG = deque(maxlen=20000)  # last counted calls: {"t", "api", "read", "caller", "faulted"}
# Rollouts as the traffic shifts, per endpoint (GET /_sdop/rollouts; local_aws_sagemaker).
ROLLOUTS = {}
# Tag sets of the types local_aws_tagging covers, per ARN, with the time each was first seen:
# {arn: {"account", "region", "type", "entries": deque of (t, tags dict, or None once gone)}}.
TAG_HISTORY = {}


def env_config():
    return check_config(
        {k: os.environ.get(env, d) for k, (env, d) in ENV_DEFAULTS.items()})


def config_value(key, value):
    """A config value in its key's type; a list key takes a list of strings or a
    comma-separated string."""
    default = ENV_DEFAULTS[key][1]
    if isinstance(default, list):
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{key} must be a list of strings or a comma-separated string")
        return list(value)
    return type(default)(value)


def check_config(values):
    values = {k: config_value(k, v) for k, v in values.items()}
    if values.get("invocation_outcome", "container") not in INVOCATION_OUTCOMES:
        raise ValueError(f"invocation_outcome must be one of {list(INVOCATION_OUTCOMES)}")
    if values.get("tagging_lag_seconds", 0.0) < 0:
        raise ValueError("tagging_lag_seconds must be >= 0")
    return values


def blank_images(endpoint_name):
    """Whether config blank_images names this endpoint (or is "*")."""
    names = CONFIG.get("blank_images") or []
    return "*" in names or endpoint_name in names


def clear_state():
    with LOCK:
        CONFIG.clear(); CONFIG.update(env_config())
        FAULTS.clear(); FAULT_COUNTERS.clear(); CALLS.clear(); TRACK.clear()
        BY_CALLER.clear(); CALL_LOG.clear(); ROLLOUTS.clear(); BODY_BYTES.clear()
        TAG_HISTORY.clear()
        containers.clear()


def dur(key):
    return float(CONFIG[key])


# ------------------------------------------------- lifecycles (lazy + ticker)
FINISH = {}    # kind -> fn(entry): the resource's transition is over
PROGRESS = {}  # kind -> fn(entry, now): called on every advance while it runs


def advance():
    """Move every tracked resource along its lifecycle according to the clock."""
    now = time.time()
    with LOCK:
        for key, e in list(TRACK.items()):
            if e["kind"] in PROGRESS:
                PROGRESS[e["kind"]](e, now)
            if now >= e["until"]:
                del TRACK[key]
                FINISH[e["kind"]](e)


def patch(cls, name):
    def deco(fn):
        orig = getattr(cls, name, None)

        def wrapper(self, *a, **kw):
            with LOCK:
                return fn(self, orig, *a, **kw)
        setattr(cls, name, wrapper)
        return wrapper
    return deco
