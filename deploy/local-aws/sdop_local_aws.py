"""sdop local AWS emulator: moto 5.2.5 server plus the SageMaker/CloudFormation
behaviour sdop depends on (status lifecycles, UpdateEndpoint, StopTrainingJob,
duplicate-name errors, tag upsert, DreamBooth checkpoints, InvokeEndpointAsync with PNG
results, the Model Registry, Application Auto Scaling tags and checks, GetResources of the
Resource Groups Tagging API over every type sdop tags, with a lag knob), every request
validated against botocore's service models, and a control API under /_sdop/ for durations,
fault injection and call counting/logging, and atomic S3 conditional writes. See README.md.

The entry point `up` runs. The rules live beside it, by service:
  local_aws_state.py           config, faults, counters, lifecycle tracker, the lock
  local_aws_sagemaker.py       SageMaker lifecycles and API patches, Model Registry
  local_aws_runtime.py         sagemaker-runtime InvokeEndpointAsync
  local_aws_autoscaling.py     Application Auto Scaling
  local_aws_cloudformation.py  CloudFormation
  local_aws_ecr.py             ECR
  local_aws_s3.py              S3 API names, atomic conditional writes
  local_aws_tagging.py         Resource Groups Tagging API GetResources, tagging_lag_seconds
  local_aws_validation.py      requests checked against botocore's service-2.json
  local_aws_middleware.py      the WSGI middleware and the /_sdop/ control API
  containers.py                the all-in-one-ai images' contract"""
import argparse
import errno
import os
import signal
import socket
import sys
import threading

from moto.moto_server.werkzeug_app import (DomainDispatcherApplication,
                                           MotoRequestHandler, create_backend_app)
from werkzeug.serving import make_server

# Importing a service module applies its patches to moto.
import local_aws_autoscaling  # noqa: F401
import local_aws_cloudformation  # noqa: F401
import local_aws_ecr  # noqa: F401
import local_aws_runtime  # noqa: F401
import local_aws_sagemaker  # noqa: F401
import local_aws_tagging  # noqa: F401
from local_aws_middleware import SdopMiddleware, ticker
from local_aws_state import clear_state


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
    # The socket is bound here, not by werkzeug, which on a taken port prints the OS error and
    # then its own sentence about it: one line says what is wrong and what to do.
    listener = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((args.host, args.port))
        listener.listen(128)
    except OSError as e:
        listener.close()
        hint = (": another program (another emulator?) has it; stop it, or pass another --port"
                if e.errno == errno.EADDRINUSE else "")
        print(f"sdop-local-aws: cannot listen on {args.host}:{args.port}: "
              f"{e.strerror.lower()}{hint}", file=sys.stderr)
        sys.exit(1)
    server = make_server(args.host, args.port, app, threaded=True, request_handler=handler,
                         fd=listener.fileno())
    listener.close()  # the server serves a duplicate of it
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
