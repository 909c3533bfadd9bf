"""What the sdop local AWS emulator's self-checks (test_*.py beside this file) share: the port
and URL of the server they start, its control API (/_sdop/...), the helpers that wait for and
expect an AWS error, and run(): start the server with `up`, run the tests one by one, stop it.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = free_port()
URL = f"http://127.0.0.1:{PORT}"


def ctl(method, path, body=None):
    req = urllib.request.Request(URL + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())


def error(fn, **kw):
    try:
        fn(**kw)
    except ClientError as err:
        return err.response["Error"]["Code"], err.response["Error"]["Message"]
    raise AssertionError(f"{fn.__name__} did not fail")


def wait_for(fn, want, timeout=10.0):
    deadline, got = time.time() + timeout, None
    while time.time() < deadline:
        got = fn()
        if got == want:
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {want!r}, last {got!r}")


def run(tests, setup=None, quiet=True, env=None):
    """Serves the emulator on PORT (`up --quiet` unless quiet=False, with env added to this
    process's environment), runs setup() and then each test, a line `ok`/`FAIL` each, stops the
    server, and exits 1 when a test failed, after the tail of the server's log."""
    log = tempfile.TemporaryFile(mode="w+")  # server request log, shown on failure
    cmd = [os.path.join(HERE, "up"), "--port", str(PORT)] + (["--quiet"] if quiet else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True,
                            env=None if env is None else {**os.environ, **env})
    failed = 0
    try:
        line = proc.stdout.readline().strip()
        assert line == f"sdop-local-aws listening on {URL}", line
        if setup is not None:
            setup()
        passed = 0
        for test in tests:
            try:
                test()
                passed += 1
                print(f"ok   {test.__name__}", flush=True)
            except Exception as err:  # noqa: BLE001
                failed += 1
                print(f"FAIL {test.__name__}: {type(err).__name__}: {err}", flush=True)
        print(f"{passed} passed, {failed} failed")
    finally:
        proc.terminate()
        rc = proc.wait(timeout=10)
    if failed or rc:
        log.seek(0)
        print("--- server log (tail) ---\n" + "".join(log.readlines()[-40:]))
    assert rc == 0, f"server exited with {rc} on SIGTERM"
    sys.exit(1 if failed else 0)
