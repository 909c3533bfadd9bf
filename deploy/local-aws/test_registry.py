"""Self-check for the text-to-image PNGs of InvokeEndpointAsync, the blank_images knob and the
SageMaker Model Registry in the sdop local AWS emulator (not part of the Rust test suite; no
pytest needed).

    deploy/local-aws/up --install-only && deploy/local-aws/.venv/bin/python deploy/local-aws/test_registry.py
"""
import base64
import hashlib
import io
import json
import random
import struct
import tarfile
import urllib.error
import zlib

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from selfcheck import URL, ctl, error, run, wait_for

ROLE = "arn:aws:iam::123456789012:role/sdop"
ACCOUNT = "123456789012"
BUCKET = "sdop-registry"
IMAGE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/all-in-one-ai-stable-diffusion-webui-inference:latest"
TAGS_ON_VERSIONS = ("Tags are not supported in Model Package versions. Please add them to the "
                    "Model Package Group.")


def client(service, key="AKIDSDOPTEST"):
    return boto3.client(service, endpoint_url=URL, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key="secret",
                        config=Config(retries={"total_max_attempts": 1},
                                      s3={"addressing_style": "path"}))


sm, rt, s3 = client("sagemaker"), client("sagemaker-runtime"), client("s3")


def s3_body(uri):
    bucket, _, key = uri[len("s3://"):].partition("/")
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if err.response["Error"]["Code"] == "NoSuchKey":
            return None
        raise


# ------------------------------------------------------------------------ PNG reading
def read_png(data):
    """-> (width, height, {text key: value}, rows of RGB bytes); checks what a decoder checks."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    pos, chunks = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind}"
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b""), [c[0] for c in chunks]
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, interlace) == (8, 2, 0), (depth, colour, interlace)
    texts = {}
    for kind, body in chunks:
        if kind == b"tEXt":
            key, _, value = body.partition(b"\x00")
            texts[key.decode("latin-1")] = value.decode("latin-1")
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = 3 * width + 1
    assert len(raw) == stride * height, (len(raw), stride * height)
    rows = []
    for y in range(height):
        line = raw[y * stride:(y + 1) * stride]
        assert line[0] == 0, f"filter {line[0]} in row {y}"  # the emulator writes filter 0
        rows.append(line[1:])
    return width, height, texts, rows


def pixel_stats(rows):
    values = b"".join(rows)
    mean = sum(values) / len(values)
    return len(set(values)), mean, (sum((v - mean) ** 2 for v in values[::7]) / len(values[::7])) ** 0.5


# ------------------------------------------------------------------------------ setup
def model_tar(ckpt_name, weights):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"Stable-diffusion/{ckpt_name}")
        info.size = len(weights)
        tar.addfile(info, io.BytesIO(weights))
    return buf.getvalue()


# Two finetunes: checkpoints past 1 MiB, so the fork's model hash (64 KiB at 1 MiB) is theirs.
WEIGHTS = {"prod": random.Random("prod").randbytes(0x110000),
           "stage": random.Random("stage").randbytes(0x110000)}


def setup():
    ctl("POST", "/_sdop/config", {"endpoint_create_seconds": 0.2, "invocation_seconds": 0.2})
    s3.create_bucket(Bucket=BUCKET)
    for line, weights in WEIGHTS.items():
        s3.put_object(Bucket=BUCKET, Key=f"models/{line}/model.tar.gz",
                      Body=model_tar(f"jp_{line}.ckpt", weights))
        sm.create_model(ModelName=f"m-{line}", ExecutionRoleArn=ROLE, PrimaryContainer={
            "Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/models/{line}/model.tar.gz",
            "Environment": {"api_endpoint": "https://api.example.com/prod",
                            "embeddings_s3uri": f"s3://{BUCKET}/embeddings/",
                            "ckpt": f"/opt/ml/model/Stable-diffusion/jp_{line}.ckpt"}})
        sm.create_endpoint_config(EndpointConfigName=f"c-{line}", ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": f"m-{line}",
            "InstanceType": "ml.g4dn.xlarge", "InitialInstanceCount": 1}],
            AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": f"s3://{BUCKET}/out/",
                                                   "S3FailurePath": f"s3://{BUCKET}/fail/"}})
    # Two endpoints on the production model (the same model answers the same bytes) and a
    # staging endpoint on the candidate.
    for name, line in (("e-prod", "prod"), ("e-prod-2", "prod"), ("e-stage", "stage")):
        sm.create_endpoint(EndpointName=name, EndpointConfigName=f"c-{line}")
    for name in ("e-prod", "e-prod-2", "e-stage"):
        wait_for(lambda: sm.describe_endpoint(EndpointName=name)["EndpointStatus"], "InService")


SCRIPT_ARGS = "[0, false, false, false, \"\", 1, \"\", 0, \"\", true, false, false]"


def txt2img(endpoint, **payload):
    body = {"task": "text-to-image", "username": "",
            "txt2img_payload": {"prompt": "a lighthouse, jpstyle", "negative_prompt": "blurry",
                                "steps": 20, "width": 512, "height": 512,
                                "sampler_index": "Euler a", "batch_size": 1, "n_iter": 1,
                                "cfg_scale": 7, "seed": 1234, "script_args": SCRIPT_ARGS,
                                **payload}}
    resp = rt.invoke_endpoint_async(EndpointName=endpoint, Body=json.dumps(body).encode(),
                                    ContentType="application/json")
    wait_for(lambda: s3_body(resp["OutputLocation"]) is not None
             or s3_body(resp["FailureLocation"]) is not None, True)
    out = s3_body(resp["OutputLocation"])
    assert out is not None, s3_body(resp["FailureLocation"])
    return out


# ------------------------------------------------------------------------------ images
def test_png_images():
    raw = txt2img("e-prod")
    # FastAPI's JSONResponse: compact separators, keys in TextToImageResponse's order.
    assert raw.startswith(b'{"images":["iVBORw0KGgo'), raw[:40]
    out = json.loads(raw)
    assert list(out) == ["images", "parameters", "info"], list(out)
    info, params = json.loads(out["info"]), out["parameters"]
    assert (info["seed"], info["all_seeds"], params["seed"]) == (1234, [1234], 1234), info
    assert info["sd_model_hash"] == hashlib.sha256(
        WEIGHTS["prod"][0x100000:0x110000]).hexdigest()[:8], info
    # parameters: vars() of the whole request model, defaults included.
    assert params["cfg_scale"] == 7.0 and params["sampler_name"] is None, params
    assert params["sampler_index"] == "Euler a" and params["denoising_strength"] == 0, params
    assert list(params)[:4] == ["enable_hr", "denoising_strength", "firstphase_width",
                                "firstphase_height"] and list(params)[-1] == "sampler_index"
    (image,) = out["images"]
    width, height, texts, rows = read_png(base64.b64decode(image, validate=True))
    assert (width, height) == (512, 512)
    assert texts["parameters"] == info["infotexts"][0], texts
    assert texts["parameters"].startswith("a lighthouse, jpstyle\nNegative prompt: blurry\n"
                                          "Steps: 20, Sampler: Euler a, CFG scale: 7.0, "
                                          "Seed: 1234, Size: 512x512, Model hash: "), texts
    distinct, mean, stddev = pixel_stats(rows)
    assert distinct > 64 and 20 < mean < 235 and stddev > 30, (distinct, mean, stddev)
    # Same model, prompt and seed: the same bytes (another endpoint, another call).
    again = json.loads(txt2img("e-prod-2"))
    assert again["images"] == out["images"]
    # Another model (the staging finetune): another picture.
    other = json.loads(txt2img("e-stage"))["images"][0]
    assert other != image
    other_rows = read_png(base64.b64decode(other))[3]
    changed = sum(a != b for a, b in zip(b"".join(rows), b"".join(other_rows)))
    assert changed > len(b"".join(rows)) // 2, changed
    # Another seed or prompt: another picture.
    assert json.loads(txt2img("e-prod", seed=1235))["images"][0] != image
    assert json.loads(txt2img("e-prod", prompt="a harbour"))["images"][0] != image


def test_sizes():
    out = json.loads(txt2img("e-prod", width=768, height=768))
    assert read_png(base64.b64decode(out["images"][0]))[:2] == (768, 768)
    # The latent is size // 8: 500x300 comes back 496x296 (info keeps the request's size).
    out = json.loads(txt2img("e-prod", width=500, height=300))
    assert read_png(base64.b64decode(out["images"][0]))[:2] == (496, 296)
    assert (json.loads(out["info"])["width"], json.loads(out["info"])["height"]) == (500, 300)


def test_batches_and_random_seed():
    out = json.loads(txt2img("e-prod", batch_size=2, n_iter=2, width=64, height=64))
    info = json.loads(out["info"])
    assert info["all_seeds"] == [1234, 1235, 1236, 1237] and len(out["images"]) == 4, info
    assert len(set(out["images"])) == 4
    assert "Batch size: 2, Batch pos: 1" in info["infotexts"][3], info["infotexts"][3]
    # seed -1: upstream draws one (random.randrange(4294967294)); info has it, parameters keep -1.
    first = json.loads(txt2img("e-prod", seed=-1, width=64, height=64))
    second = json.loads(txt2img("e-prod", seed=-1, width=64, height=64))
    seeds = [json.loads(o["info"])["seed"] for o in (first, second)]
    assert first["parameters"]["seed"] == -1 and all(0 <= s < 4294967294 for s in seeds), seeds
    assert seeds[0] != seeds[1] and first["images"] != second["images"], seeds
    # The chosen seed gives the same picture when asked for again.
    replay = json.loads(txt2img("e-prod", seed=seeds[0], width=64, height=64))
    assert replay["images"] == first["images"]


def test_too_large():
    body = {"task": "text-to-image", "username": "",
            "txt2img_payload": {"prompt": "x", "width": 4096, "height": 4096,
                                "script_args": SCRIPT_ARGS}}
    resp = rt.invoke_endpoint_async(EndpointName="e-prod", Body=json.dumps(body).encode())
    wait_for(lambda: s3_body(resp["FailureLocation"]), b"Internal Server Error")
    assert any("CUDA out of memory" in line
               for line in ctl("GET", "/_sdop/containers")["logs"]["e-prod"])


def test_blank_images_knob():
    # The server was started with SDOP_EMU_BLANK_IMAGES="e-nothing, e-other".
    ctl("POST", "/_sdop/reset")
    assert ctl("GET", "/_sdop/config")["blank_images"] == ["e-nothing", "e-other"]
    setup()
    ctl("POST", "/_sdop/config", {"blank_images": ["e-stage"]})
    stage = json.loads(txt2img("e-stage"))
    prod = json.loads(txt2img("e-prod"))
    width, height, texts, rows = read_png(base64.b64decode(stage["images"][0]))
    assert (width, height) == (512, 512) and set(b"".join(rows)) == {0}
    assert "Seed: 1234" in texts["parameters"]  # the rest of the answer is unchanged
    assert pixel_stats(read_png(base64.b64decode(prod["images"][0]))[3])[0] > 64
    ctl("POST", "/_sdop/config", {"blank_images": "*"})
    assert set(b"".join(read_png(base64.b64decode(
        json.loads(txt2img("e-prod"))["images"][0]))[3])) == {0}
    ctl("POST", "/_sdop/config", {"blank_images": "e-prod, e-stage"})
    assert ctl("GET", "/_sdop/config")["blank_images"] == ["e-prod", "e-stage"]
    ctl("POST", "/_sdop/config", {"blank_images": []})
    assert pixel_stats(read_png(base64.b64decode(
        json.loads(txt2img("e-stage"))["images"][0]))[3])[0] > 64
    try:
        ctl("POST", "/_sdop/config", {"blank_images": 3})
        raise AssertionError("blank_images=3 accepted")
    except urllib.error.HTTPError as err:
        assert err.code == 400


# ----------------------------------------------------------------------- Model Registry
GROUP = "JpStyle-Finetunes"
GROUP_ARN = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package-group/{GROUP}"


def version_arn(n, group=GROUP):
    return f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package/{group}/{n}"


def inference_spec(line):
    return {"Containers": [{"Image": IMAGE,
                            "ModelDataUrl": f"s3://{BUCKET}/models/{line}/model.tar.gz",
                            "Environment": {"ckpt": f"/opt/ml/model/Stable-diffusion/jp_{line}.ckpt"}}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
            "SupportedRealtimeInferenceInstanceTypes": ["ml.g4dn.xlarge"],
            "SupportedTransformInstanceTypes": ["ml.g4dn.xlarge"]}


def register(line, **kw):
    return sm.create_model_package(
        ModelPackageGroupName=kw.pop("group", GROUP),
        ModelPackageDescription=f"DreamBooth {line}", InferenceSpecification=inference_spec(line),
        ModelApprovalStatus="PendingManualApproval",
        CustomerMetadataProperties={"sdop/content-id": f"sha256-{line}", "sdop/job": f"job-{line}"},
        **kw)["ModelPackageArn"]


def versions(**kw):
    pages, token = [], None
    while True:
        page = sm.list_model_packages(ModelPackageGroupName=GROUP, SortBy="CreationTime", **kw,
                                      **({"NextToken": token} if token else {}))
        pages.append([s["ModelPackageVersion"] for s in page["ModelPackageSummaryList"]])
        token = page.get("NextToken")
        if not token:
            return pages, page


def test_groups():
    resp = sm.create_model_package_group(ModelPackageGroupName=GROUP,
                                         ModelPackageGroupDescription="jpstyle line",
                                         Tags=[{"Key": "sdop/owner", "Value": "a"}])
    assert resp["ModelPackageGroupArn"] == GROUP_ARN, resp
    code, msg = error(sm.create_model_package_group, ModelPackageGroupName=GROUP)
    assert (code, msg) == ("ValidationException", f"Model Package Group already exists: {GROUP_ARN}")
    for name in (GROUP, GROUP_ARN):
        group = sm.describe_model_package_group(ModelPackageGroupName=name)
        assert (group["ModelPackageGroupName"], group["ModelPackageGroupArn"],
                group["ModelPackageGroupStatus"], group["ModelPackageGroupDescription"]) == (
            GROUP, GROUP_ARN, "Completed", "jpstyle line"), group
    assert group["CreatedBy"] == {"IamIdentity": {
        "Arn": f"arn:aws:sts::{ACCOUNT}:user/moto", "PrincipalId": "AKIAIOSFODNN7EXAMPLE"}}, group
    sm.add_tags(ResourceArn=GROUP_ARN, Tags=[{"Key": "sdop/owner", "Value": "b"},
                                             {"Key": "team", "Value": "art"}])
    assert sm.list_tags(ResourceArn=GROUP_ARN)["Tags"] == [
        {"Key": "sdop/owner", "Value": "b"}, {"Key": "team", "Value": "art"}]
    code, msg = error(sm.describe_model_package_group, ModelPackageGroupName="nope")
    assert (code, msg) == ("ValidationException", "ModelPackageGroup arn:aws:sagemaker:us-east-1:"
                           f"{ACCOUNT}:model-package-group/nope does not exist."), msg


def test_versions():
    arns = [register("prod"), register("stage"), register("third", group=GROUP_ARN)]
    assert arns == [version_arn(1), version_arn(2), version_arn(3)], arns
    # ClientToken: the same token answers the same version, no new one.
    token = "sdop-3f2a9c"
    first = register("fourth", ClientToken=token)
    assert register("fourth", ClientToken=token) == first == version_arn(4)
    code, msg = error(register, line="x", Tags=[{"Key": "sdop/owner", "Value": "a"}])
    assert (code, msg) == ("ValidationException", TAGS_ON_VERSIONS), msg
    for fn, kw in ((sm.add_tags, {"Tags": [{"Key": "a", "Value": "b"}]}), (sm.list_tags, {})):
        assert error(fn, ResourceArn=version_arn(1), **kw) == ("ValidationException", TAGS_ON_VERSIONS)
    code, _ = error(register, line="x", group="no-such-group")
    assert code == "ValidationException"
    pkg = sm.describe_model_package(ModelPackageName=version_arn(2))
    assert (pkg["ModelPackageGroupName"], pkg["ModelPackageVersion"], pkg["ModelPackageArn"],
            pkg["ModelPackageStatus"], pkg["ModelApprovalStatus"],
            pkg["ModelPackageDescription"]) == (
        GROUP, 2, version_arn(2), "Completed", "PendingManualApproval", "DreamBooth stage"), pkg
    assert pkg["InferenceSpecification"] == inference_spec("stage"), pkg["InferenceSpecification"]
    assert pkg["CustomerMetadataProperties"] == {"sdop/content-id": "sha256-stage",
                                                 "sdop/job": "job-stage"}
    assert pkg["ModelPackageStatusDetails"] == {"ValidationStatuses": [], "ImageScanStatuses": []}
    assert "IamIdentity" in pkg["CreatedBy"] and "LastModifiedBy" not in pkg, pkg
    assert sm.describe_model_package(ModelPackageName=f"{GROUP}/2")["ModelPackageArn"] == version_arn(2)
    pages, last = versions(SortOrder="Descending", MaxResults=3)
    assert pages == [[4, 3, 2], [1]], pages
    assert versions()[0] == [[1, 2, 3, 4]]
    summary = sm.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"][0]
    assert set(summary) == {"ModelPackageGroupName", "ModelPackageVersion", "ModelPackageArn",
                            "ModelPackageDescription", "CreationTime", "ModelPackageStatus",
                            "ModelApprovalStatus"}, summary


def test_approval():
    before = sm.describe_model_package(ModelPackageName=version_arn(1))
    sm.update_model_package(ModelPackageArn=version_arn(1), ModelApprovalStatus="Approved",
                            ApprovalDescription="sdop: evidence sha256:ab passed")
    pkg = sm.describe_model_package(ModelPackageName=version_arn(1))
    assert (pkg["ModelApprovalStatus"], pkg["ApprovalDescription"]) == (
        "Approved", "sdop: evidence sha256:ab passed"), pkg
    # What the update did not send is kept.
    assert pkg["CustomerMetadataProperties"] == before["CustomerMetadataProperties"]
    assert pkg["InferenceSpecification"] == before["InferenceSpecification"]
    assert "LastModifiedTime" in pkg and pkg["CreationTime"] == before["CreationTime"]
    # LastModifiedBy names the caller: a console user is another IAM identity.
    iam = client("iam")
    iam.create_user(UserName="console-reviewer")
    key = iam.create_access_key(UserName="console-reviewer")["AccessKey"]
    other = boto3.client("sagemaker", endpoint_url=URL, region_name="us-east-1",
                         aws_access_key_id=key["AccessKeyId"],
                         aws_secret_access_key=key["SecretAccessKey"])
    other.update_model_package(ModelPackageArn=version_arn(1), ModelApprovalStatus="Rejected",
                               ApprovalDescription="looks wrong")
    pkg = sm.describe_model_package(ModelPackageName=version_arn(1))
    assert pkg["ModelApprovalStatus"] == "Rejected"
    assert pkg["LastModifiedBy"]["IamIdentity"]["Arn"] == \
        f"arn:aws:iam::{ACCOUNT}:user/console-reviewer", pkg["LastModifiedBy"]
    assert pkg["CreatedBy"]["IamIdentity"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:user/moto"
    sm.update_model_package(ModelPackageArn=version_arn(2), ModelApprovalStatus="Approved")
    sm.update_model_package(ModelPackageArn=version_arn(2),
                            CustomerMetadataProperties={"sdop/evidence": "s3://b/e.json"},
                            CustomerMetadataPropertiesToRemove=["sdop/job"])
    pkg = sm.describe_model_package(ModelPackageName=version_arn(2))
    assert pkg["CustomerMetadataProperties"] == {"sdop/content-id": "sha256-stage",
                                                 "sdop/evidence": "s3://b/e.json"}, pkg
    assert pkg["ModelApprovalStatus"] == "Approved"
    approved = sm.list_model_packages(ModelPackageGroupName=GROUP, ModelApprovalStatus="Approved")
    assert [s["ModelPackageVersion"] for s in approved["ModelPackageSummaryList"]] == [2]
    code, msg = error(sm.update_model_package, ModelPackageArn=version_arn(99),
                      ModelApprovalStatus="Approved")
    assert (code, msg) == ("ValidationException", f"ModelPackage {version_arn(99)} does not exist.")


def test_deletes():
    code, msg = error(sm.delete_model_package_group, ModelPackageGroupName=GROUP)
    assert code == "ConflictException" and "1, 2, 3, 4" in msg, (code, msg)
    sm.delete_model_package(ModelPackageName=version_arn(4))
    code, msg = error(sm.describe_model_package, ModelPackageName=version_arn(4))
    assert (code, msg) == ("ValidationException", f"ModelPackage {version_arn(4)} does not exist.")
    assert error(sm.delete_model_package, ModelPackageName=version_arn(4))[0] == "ValidationException"
    # Versions are never given twice: the next one is 5, not 4.
    assert register("fifth") == version_arn(5)
    for n in (1, 2, 3, 5):
        sm.delete_model_package(ModelPackageName=version_arn(n) if n != 3 else f"{GROUP}/3")
    assert sm.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"] == []
    sm.delete_model_package_group(ModelPackageGroupName=GROUP_ARN)
    code, msg = error(sm.describe_model_package_group, ModelPackageGroupName=GROUP)
    assert (code, msg) == ("ValidationException", f"ModelPackageGroup {GROUP_ARN} does not exist.")
    code, _ = error(sm.delete_model_package_group, ModelPackageGroupName=GROUP)
    assert code == "ValidationException"
    # A new group of the same name starts at version 1 again.
    sm.create_model_package_group(ModelPackageGroupName=GROUP)
    assert register("again") == version_arn(1)


def main():
    run([test_png_images, test_sizes, test_batches_and_random_seed, test_too_large,
         test_blank_images_knob, test_groups, test_versions, test_approval, test_deletes],
        setup=setup, env={"SDOP_EMU_BLANK_IMAGES": "e-nothing, e-other"})


if __name__ == "__main__":
    main()
