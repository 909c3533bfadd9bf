#!/usr/bin/env python3
"""Writes stand-in Stable Diffusion checkpoints to DEST, for the local AWS only.

    python3 scripts/stand-in-checkpoints.py manifests/checkpoints

manifests/30-base-model.yaml packages the checkpoints the workshop's build EC2 has on its disk
(prepare.sh uploads them from there): v1-5-pruned.ckpt, v2-1_768-ema-pruned.ckpt with its
.yaml, and ControlNet/control_sd15_canny.pth, read from manifests/checkpoints/. scripts/demo,
the benches and the tests run the same manifests with small stand-ins written here instead.

DEST gets a marker file, .sdop-stand-in. A DEST that holds files but no marker (real
checkpoints) is never written: the script refuses and exits 1. Files whose bytes are already
right are left alone (their modification times too: sdop fingerprints large files by size and
time), so re-runs change nothing. Standard library only.
"""

import hashlib
import os
import sys
import tempfile

MARKER = ".sdop-stand-in"
SIZE = int(os.environ.get("SDOP_DEMO_CHECKPOINT_BYTES", 2 * 1024 * 1024))


def blob(name, size):
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


FILES = {
    "v1-5-pruned.ckpt": blob("v1-5-pruned.ckpt", SIZE),
    "v2-1_768-ema-pruned.ckpt": blob("v2-1_768-ema-pruned.ckpt", SIZE),
    # SD 2.x needs its config beside the checkpoint (the WebUI reads <name>.yaml).
    "v2-1_768-ema-pruned.yaml": b"model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n"
                                b"  params:\n    parameterization: v\n",
    "ControlNet/control_sd15_canny.pth": blob("canny", SIZE // 4),
    MARKER: b"Stand-in checkpoints for the local AWS, written by scripts/stand-in-checkpoints.py."
            b" Not real weights; safe to delete.\n",
}


def main(dest):
    present = [n for n in os.listdir(dest) if not n.startswith(".")] if os.path.isdir(dest) else []
    if present and not os.path.exists(os.path.join(dest, MARKER)):
        sys.exit(f"stand-in-checkpoints: {dest} holds files and no {MARKER}: not overwriting real checkpoints")
    for name, content in FILES.items():
        path = os.path.join(dest, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            with open(path, "rb") as existing:
                if existing.read() == content:
                    continue
        except FileNotFoundError:
            pass
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.replace(tmp, path)  # atomic: parallel runs see a whole file
    print(f"stand-in checkpoints in {dest}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: stand-in-checkpoints.py DEST")
    main(sys.argv[1])
