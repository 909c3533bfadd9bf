"""Does what the workshop's people do by hand around sdop, against the local AWS:
build_and_push.sh (images pushed to the ECR repositories sdop created) and the training
images on the build box (the checkpoints on its disk are scripts/stand-in-checkpoints.py's). Uses boto3 from the emulator's virtualenv; AWS_* env points at the emulator."""
import hashlib
import json
import pathlib
import os

import sys
import time

import boto3

BUCKET = "sdop-sd-webui-assets"
kw = dict(endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ.get("AWS_REGION", "us-east-1"))

if sys.argv[1:] == ["--webui-first-start"]:
    # The WebUI's first start on ECS (fork modules/shared.py: POST {api}/industrialmodel, which
    # stores its industrial model): once the stack's DYNAMODB tables exist, bounded to 5 min.
    ddb = boto3.client("dynamodb", **kw)
    for _ in range(1500):
        try:
            ddb.put_item(TableName="all_in_one_ai_industrial_model",
                         Item={"model_id": {"S": "5e2b7a46-webui"},
                               "model_algorithm": {"S": "stable-diffusion-webui"},
                               "model_name": {"S": "stable-diffusion-webui"}})
            print("the WebUI created its industrial model")
            sys.exit(0)
        except ddb.exceptions.ResourceNotFoundException:
            time.sleep(0.2)
    sys.exit("the stack's DYNAMODB tables never appeared")
s3 = boto3.client("s3", **kw)
ecr = boto3.client("ecr", **kw)

def blob(name, size):
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]

for repo in ["all-in-one-ai-stable-diffusion-webui-inference", "all-in-one-ai-stable-diffusion-webui",
             "all-in-one-ai-stable-diffusion-webui-training", "all-in-one-ai-web"]:
    config_digest = "sha256:" + hashlib.sha256(repo.encode()).hexdigest()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": config_digest},
                "layers": []}
    ecr.put_image(repositoryName=repo, imageTag="latest", imageManifest=json.dumps(manifest))
# The 20 training images on the build box (stand-ins); Dataset/jpstyle uploads them.
# SDOP_DEMO_MANIFESTS: a copy of manifests/ to seed instead (scripts/workshop-last-day).
manifests = pathlib.Path(os.environ.get("SDOP_DEMO_MANIFESTS") or pathlib.Path(__file__).resolve().parent.parent / "manifests")
dataset = manifests / "dataset" / "jpstyle"
for i in range(20):
    (dataset / f"image{i:02d}.jpg").write_bytes(blob(f"img{i}", 4096))
print(f"seeded: 4 images pushed, 20 training images in {dataset}/")
