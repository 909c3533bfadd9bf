#!/usr/bin/env python3
"""Writes a stand-in all-in-one-ai checkout to DEST, for the local AWS only.

    python3 scripts/stand-in-checkout.py manifests/all-in-one-ai

manifests/20-webui-stack.yaml deploys the real templates and Lambda code zips from a checkout
of github.com/xieyongliang/all-in-one-ai at manifests/all-in-one-ai. scripts/demo, the benches
and the tests run the same manifests against the local AWS with this stand-in instead: the
tiny templates of deploy/local-aws/stand-in-checkout/ (deployment/templates/, the 9 files the
real stack uses) and backend/build/codes/*.zip, the code zips the stand-in LAMBDA stack loads
(upstream's backend/build.sh builds the real ones there; deployment/build_and_deploy.sh
copies them to ${s3uri}/codes).

DEST gets a marker file, .sdop-stand-in. A DEST without it (a real checkout, or anything else)
is never written: the script refuses and exits 1. A DEST with it is refreshed in place: each
changed file is replaced atomically, unchanged files keep their bytes and times, so runs in
parallel (tests) see a complete checkout at every moment. Standard library only.
"""

import io
import os
import shutil
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "deploy", "local-aws", "stand-in-checkout")
MARKER = ".sdop-stand-in"
MARKER_TEXT = (
    "A stand-in all-in-one-ai checkout for the local AWS, written by"
    " scripts/stand-in-checkout.py. Not a real checkout; safe to delete.\n"
)
# Fixed zip entry times: the same bytes on every run, so sdop's fingerprints never change.
ZIP_TIME = (2023, 1, 1, 0, 0, 0)

# name -> {path in zip: content}. all-in-one-ai-lambda.yaml (upstream and stand-in) loads the
# function from codes/all_in_one_ai_endpoint.zip and the layer from
# codes/all_in_one_ai_helper.zip; a Lambda layer's Python code lives under python/.
ZIPS = {
    "all_in_one_ai_endpoint.zip": {
        "lambda_function.py": (
            "# Stand-in for the all-in-one-ai endpoint Lambda (backend/src/all_in_one_ai_endpoint),\n"
            "# local AWS only: written by scripts/stand-in-checkout.py.\n"
            "def lambda_handler(event, context):\n"
            "    return {'statusCode': 200, 'body': '[]'}\n"
        ),
    },
    "all_in_one_ai_helper.zip": {
        "python/helper.py": (
            "# Stand-in for the all-in-one-ai helper layer, local AWS only: written by\n"
            "# scripts/stand-in-checkout.py.\n"
        ),
    },
}


def zip_bytes(files):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name])
    return out.getvalue()


def wanted():
    """{relative path: bytes} of the whole stand-in checkout."""
    files = {}
    for directory, _, names in os.walk(SOURCE):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, SOURCE)] = f.read()
    for name, content in ZIPS.items():
        files[os.path.join("backend", "build", "codes", name)] = zip_bytes(content)
    files[MARKER] = MARKER_TEXT.encode()
    return files


def write_atomically(path, data):
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def refresh(dest, files):
    """Brings a stand-in checkout in line with `files`, one atomic replace per changed file."""
    for rel, data in sorted(files.items()):
        path = os.path.join(dest, rel)
        try:
            with open(path, "rb") as f:
                if f.read() == data:
                    continue
        except FileNotFoundError:
            pass
        write_atomically(path, data)
    for directory, _, names in os.walk(dest):
        for name in names:
            rel = os.path.relpath(os.path.join(directory, name), dest)
            # Another run's temp file (hidden) is left to that run.
            if rel not in files and not name.startswith("."):
                try:
                    os.unlink(os.path.join(dest, rel))
                except FileNotFoundError:
                    pass


def is_stand_in(dest):
    return os.path.isfile(os.path.join(dest, MARKER))


def refuse(dest):
    print(
        f"stand-in-checkout: {dest} exists and is not a stand-in checkout (no {MARKER}):"
        " refusing to write into it (a real all-in-one-ai checkout is never overwritten)",
        file=sys.stderr,
    )
    sys.exit(1)


def main(argv):
    if len(argv) != 2 or argv[1].startswith("-"):
        print(f"usage: {argv[0]} DEST", file=sys.stderr)
        return 2
    dest = os.path.normpath(argv[1])
    files = wanted()
    if os.path.lexists(dest):
        if not is_stand_in(dest):
            refuse(dest)
        refresh(dest, files)
        return 0
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    # Built beside DEST under a hidden name (sdop skips hidden entries), then renamed.
    tmp = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(dest) + ".")
    try:
        refresh(tmp, files)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, dest)
        except OSError:
            # A concurrent run created DEST first: keep it if it is a stand-in.
            if not is_stand_in(dest):
                refuse(dest)
            refresh(dest, files)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
