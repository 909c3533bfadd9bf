"""The WSGI middleware of the sdop local AWS emulator in front of moto: names every AWS request
(service:Action), counts and logs it, injects faults, validates it against botocore's model
(local_aws_validation), holds kill points, and serves the control API under /_sdop/."""
import io
import json
import re
import sys
import time
import uuid
from fractions import Fraction
from urllib.parse import parse_qs

from moto.moto_api._internal.models import moto_api_backend

import containers  # the all-in-one-ai images' contract (containers.py beside this file)
import local_aws_tagging
import local_aws_validation
from local_aws_s3 import S3_OBJECT_WRITES, S3_WRITE_LOCK, buffer_body, s3_api
from local_aws_state import (BODY_BYTES, BY_CALLER, CALL_LOG, CALLS, CONFIG, ENV_DEFAULTS,
                             FAULT_COUNTERS, FAULTS, LOCK, ROLLOUTS, advance, check_config,
                             clear_state)

CRED = re.compile(r"Credential=([^/,]*)/[^/]*/[^/]*/([^/]*)/")
# sagemaker-runtime's REST paths (botocore sagemaker-runtime service-2 requestUri; signing name
# "sagemaker"): named by their operation, not the HTTP method.
RUNTIME_PATH = re.compile(r"^/endpoints/[^/]+/(async-)?invocations$")
# Calls are named by the credential scope's service, except where IAM's service prefix differs
# and is used instead: the Resource Groups Tagging API signs as "tagging" (botocore
# resourcegroupstaggingapi metadata endpointPrefix; aws-sdk-resourcegroupstagging
# signing_name) but its IAM actions are "tag:GetResources" and so on ("Amazon Resource Group
# Tagging API (service prefix: tag)", https://docs.aws.amazon.com/service-authorization/latest/
# reference/list_amazonresourcegrouptaggingapi.html). CloudWatch keeps its scope "monitoring"
# (sdop maps it to IAM's "cloudwatch" itself).
CALL_PREFIX = {"tagging": "tag"}


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
    return f"{CALL_PREFIX.get(service, service)}:{action}", proto, is_read, caller


FAULT_KINDS = ("throttle", "error500", "no_such_upload", "access_denied")  # in this order
# access_denied: what IAM answers for an action the caller's policies do not allow, in each
# protocol's error shape ("User: ... is not authorized to perform: ACTION ... because no
# identity-based policy allows the ACTION action",
# https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html; S3's
# "AccessDenied", 403, https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html).


def pick_fault(kind, api, method):
    rules = FAULTS.get(kind) or {}
    svc = api.split(":")[0]
    for pattern in (api, f"{svc}:{method}", f"{svc}:*", "*"):
        if pattern in rules:
            rule = rules[pattern]
            # A fraction, or {"fraction": f, "times": n}: the same calls, at most n of them.
            fraction, times = ((rule.get("fraction", 1.0), rule.get("times"))
                               if isinstance(rule, dict) else (rule, None))
            frac = Fraction(str(fraction)).limit_denominator(10**6)
            n = FAULT_COUNTERS[(kind, api)] = FAULT_COUNTERS.get((kind, api), 0) + 1
            hit = int(n * frac) > int((n - 1) * frac)  # exactly every 1/frac-th call
            if hit and times is not None:
                done = FAULT_COUNTERS.get((kind, api, "hits"), 0)
                hit = done < int(times)
                FAULT_COUNTERS[(kind, api, "hits")] = done + hit
            return hit
    return False


def denied(api):
    return (f"User: arn:aws:sts::123456789012:assumed-role/sdop/local is not authorized to "
            f"perform: {api} because no identity-based policy allows the {api} action")


def error_response(kind, proto, start_response, api=""):
    rid = str(uuid.uuid4())
    if kind == "access_denied":
        if proto == "json":
            code = "AccessDeniedException"
            body = json.dumps({"__type": code, "message": denied(api)})
            headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)]
        elif proto == "s3":
            body = (f"<Error><Code>AccessDenied</Code><Message>Access Denied</Message>"
                    f"<RequestId>{rid}</RequestId></Error>")
            headers = [("Content-Type", "application/xml")]
        else:
            body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                    f"<Message>{denied(api)}</Message></Error><RequestId>{rid}</RequestId>"
                    f"</ErrorResponse>")
            headers = [("Content-Type", "text/xml")]
        data = body.encode()
        start_response("403 Forbidden" if proto == "s3" else "400 Bad Request",
                       headers + [("x-amzn-RequestId", rid), ("x-amz-request-id", rid),
                                  ("Content-Length", str(len(data)))])
        return [data]
    if proto == "json":
        code, status, msg = (("ThrottlingException", "400 Bad Request", "Rate exceeded")
                             if kind == "throttle" else
                             ("InternalFailure", "500 Internal Server Error", "injected"))
        body = json.dumps({"__type": code, "message": msg})
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)]
    elif proto == "s3":
        code, status, msg = {
            "throttle": ("SlowDown", "503 Slow Down", "Please reduce your request rate."),
            # What S3 answers for a part of an upload that was aborted (or completed) meanwhile.
            "no_such_upload": ("NoSuchUpload", "404 Not Found",
                               "The specified upload does not exist. The upload ID may be invalid, "
                               "or the upload may have been aborted or completed."),
        }.get(kind, ("InternalError", "500 Internal Server Error", "injected"))
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


def body_bytes(environ):
    """Bytes of the request's body as the client declared them: an aws-chunked body's decoded
    length (X-Amz-Decoded-Content-Length), else Content-Length; 0 when neither is set."""
    declared = (environ.get("HTTP_X_AMZ_DECODED_CONTENT_LENGTH")
                or environ.get("CONTENT_LENGTH") or "0")
    try:
        return max(int(declared), 0)
    except ValueError:
        return 0


def count(api, is_read, faulted, caller, t, sent=0):
    bump(CALLS, api, is_read, faulted)
    if sent:
        entry = BODY_BYTES.setdefault(api, {"bytes": 0, "faulted": 0})
        entry["bytes"] += sent
        entry["faulted"] += sent if faulted else 0
    who = BY_CALLER.setdefault(caller, {"read": 0, "mutate": 0, "by_api": {}})
    who["read" if is_read else "mutate"] += 1
    bump(who["by_api"], api, is_read, faulted)
    CALL_LOG.append({"t": t, "api": api, "read": is_read, "caller": caller,
                     "faulted": bool(faulted)})


def calls_report():
    total = {"read": sum(e["read"] for e in CALLS.values()),
             "mutate": sum(e["mutate"] for e in CALLS.values())}
    return {"total": total, "by_api": CALLS, "by_caller": BY_CALLER, "body_bytes": BODY_BYTES}


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
                CONFIG.update(check_config(body))
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
                CALLS.clear(); BY_CALLER.clear(); CALL_LOG.clear(); BODY_BYTES.clear()
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
            fault = next((k for k in FAULT_KINDS
                          if pick_fault(k, api, environ["REQUEST_METHOD"])), None)
            count(api, is_read, fault is not None, caller, arrived, body_bytes(environ))
            delay = (FAULTS.get("delay") or {}).get(api, 0)
        if fault:
            return error_response(fault, proto, start_response, api)
        if delay:
            # A slow network or a slow AWS: the request reaches moto this much later (tests
            # use it to make two callers' creates race).
            time.sleep(float(delay))
        # Validation against the operation's botocore model, where AWS does it: in the service,
        # before the operation runs. It comes after the steps above so that nothing they do
        # changes: a refused request is counted and logged like any other call (faulted=false),
        # it still moves the throttle/error500 counters (a fault fraction keeps picking the same
        # n-th calls whatever their content), an injected fault still answers instead of the
        # validation error (the request never got as far as the service's checks), and a delay
        # still holds it. A refused request never reaches moto, so it does not count towards a
        # kill point ("the nth such call reaches moto and takes effect").
        if proto != "s3":
            try:
                refused = local_aws_validation.validate(environ, api.split(":", 1)[0])
            except Exception as err:  # noqa: BLE001 - a validator bug must not eat the request
                print(f"sdop-local-aws: validation skipped for {api}: {err!r}", file=sys.stderr,
                      flush=True)
                refused = None
            if refused:
                _service, protocol, code, text = refused
                print(f"sdop-local-aws: refused {api}: {code}: {text[:2000]}", file=sys.stderr,
                      flush=True)
                return local_aws_validation.refusal(protocol, code, text, start_response)
        if not self.is_kill_point(api):
            return self.forward(api, is_read, environ, start_response)
        # The call takes effect in AWS; its answer is held until the test has killed the
        # caller (kill -9 between "AWS did it" and "the caller knows"), then released.
        result = list(self.forward(api, is_read, environ, start_response))
        KILL_POINT["reached"] = True
        deadline = time.time() + 60
        while KILL_POINT.get("armed") and time.time() < deadline:
            time.sleep(0.02)
        return result

    def forward(self, api, is_read, environ, start_response):
        if api in S3_OBJECT_WRITES:
            buffer_body(environ)
            with S3_WRITE_LOCK:  # moto builds the whole response inside this call
                return self.app(environ, start_response)
        result = self.app(environ, start_response)
        # The tag sets the call may have changed, with their time (tagging_lag_seconds).
        local_aws_tagging.after_call(api, is_read)
        return result


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

