"""Self-check for InvokeEndpointAsync and Application Auto Scaling in the sdop local AWS
emulator (not part of the Rust test suite; no pytest needed).

    deploy/local-aws/up --install-only && deploy/local-aws/.venv/bin/python deploy/local-aws/test_invocations.py
"""
import base64
import json
import time
import urllib.error

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from selfcheck import URL, ctl, error, run, wait_for

ROLE = "arn:aws:iam::123456789012:role/sdop"
ACCOUNT = "123456789012"
BUCKET = "sdop-async"
VARIANT = "AllTraffic"
DIM = "sagemaker:variant:DesiredInstanceCount"


def client(service):
    return boto3.client(service, endpoint_url=URL, region_name="us-east-1",
                        aws_access_key_id="AKIDSDOPTEST", aws_secret_access_key="secret",
                        config=Config(retries={"total_max_attempts": 1},
                                      s3={"addressing_style": "path"}))


sm, rt, s3, aas = (client("sagemaker"), client("sagemaker-runtime"), client("s3"),
                   client("application-autoscaling"))


def status(name):
    return sm.describe_endpoint(EndpointName=name)["EndpointStatus"]


def s3_body(uri):
    bucket, _, key = uri[len("s3://"):].partition("/")
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if err.response["Error"]["Code"] == "NoSuchKey":
            return None
        raise


def keys(prefix):
    return sorted(o["Key"] for o in
                  s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


# The all-in-one-ai notebook's text-to-image request (stable-diffusion-webui.ipynb, cell
# c6d280a9), shrunk to one small image.
SCRIPT_ARGS = "[0, false, false, false, \"\", 1, \"\", 0, \"\", true, false, false]"


def payload(**changes):
    body = {"task": "text-to-image", "username": "",
            "txt2img_payload": {"prompt": "smoke test", "negative_prompt": "", "steps": 1,
                                "width": 64, "height": 64, "sampler_index": "Euler a",
                                "batch_size": 1, "n_iter": 1, "cfg_scale": 7, "seed": -1,
                                "script_args": SCRIPT_ARGS}}
    for key, value in changes.items():
        target, _, field = key.partition("__")
        if field:
            if value is None:
                body[target].pop(field)
            else:
                body[target][field] = value
        elif value is None:
            body.pop(target)
        else:
            body[target] = value
    return body


def invoke(endpoint, body, inference_id, key=None):
    key = key or f"in/{inference_id}.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(body).encode(),
                  ContentType="application/json")
    return rt.invoke_endpoint_async(EndpointName=endpoint, InputLocation=f"s3://{BUCKET}/{key}",
                                    InferenceId=inference_id, ContentType="application/json")


def make_model(name, env):
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE,
                    PrimaryContainer={"Image": "img", "Environment": env})


def make_config(name, model, output_config=None, instance_type="ml.g4dn.xlarge"):
    kw = {"AsyncInferenceConfig": {"OutputConfig": output_config}} if output_config else {}
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": VARIANT, "ModelName": model, "InstanceType": instance_type,
        "InitialInstanceCount": 1, "InitialVariantWeight": 1.0}], **kw)


ENV = {"api_endpoint": "https://api.example.com/prod",
       "embeddings_s3uri": f"s3://{BUCKET}/embeddings/"}


def setup():
    ctl("POST", "/_sdop/config", {"endpoint_create_seconds": 0.3, "endpoint_update_seconds": 0.3,
                                  "endpoint_delete_seconds": 0.2, "invocation_seconds": 0.3})
    s3.create_bucket(Bucket=BUCKET)
    make_model("m-async", ENV)
    make_model("m-noemb", {"api_endpoint": ENV["api_endpoint"]})
    make_model("m-other", ENV)
    both = {"S3OutputPath": f"s3://{BUCKET}/out/", "S3FailurePath": f"s3://{BUCKET}/fail/"}
    make_config("c-async", "m-async", both)
    make_config("c-async-model2", "m-other", both)
    make_config("c-async-big", "m-async", both, instance_type="ml.g4dn.2xlarge")
    make_config("c-nofail", "m-noemb", {"S3OutputPath": f"s3://{BUCKET}/out2"})
    make_config("c-rt", "m-async")
    for name, cfg in [("e-async", "c-async"), ("e-nofail", "c-nofail"), ("e-rt", "c-rt")]:
        sm.create_endpoint(EndpointName=name, EndpointConfigName=cfg)
    for name in ("e-async", "e-nofail", "e-rt"):
        wait_for(lambda: status(name), "InService")


def test_invoke_success():
    ctl("DELETE", "/_sdop/calls")
    resp = invoke("e-async", payload(), "inf-ok")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 202, resp["ResponseMetadata"]
    assert resp["InferenceId"] == "inf-ok"
    assert resp["OutputLocation"] == f"s3://{BUCKET}/out/inf-ok.out", resp
    assert resp["FailureLocation"] == f"s3://{BUCKET}/fail/inf-ok-error.out", resp
    headers = resp["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-sagemaker-outputlocation"] == resp["OutputLocation"], headers
    assert s3_body(resp["OutputLocation"]) is None  # written after invocation_seconds
    wait_for(lambda: s3_body(resp["OutputLocation"]) is not None, True)
    out = json.loads(s3_body(resp["OutputLocation"]))
    assert len(out["images"]) == 1 and base64.b64decode(out["images"][0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert out["parameters"]["prompt"] == "smoke test" and "error" not in out, out
    info = json.loads(out["info"])
    assert (info["width"], info["height"], info["sampler_name"]) == (64, 64, "Euler a"), info
    assert keys("fail/") == []
    log = [c for c in ctl("GET", "/_sdop/calls/log")["calls"] if c["api"].endswith("Async")]
    assert [(c["api"], c["read"]) for c in log] == [("sagemaker:InvokeEndpointAsync", False)], log
    # Inline Body (no InputLocation) and a generated InferenceId.
    resp = rt.invoke_endpoint_async(EndpointName="e-async", Body=json.dumps(payload()).encode(),
                                    ContentType="application/json")
    assert resp["OutputLocation"] == f"s3://{BUCKET}/out/{resp['InferenceId']}.out", resp
    wait_for(lambda: s3_body(resp["OutputLocation"]) is not None, True)
    # Without ContentType (the SageMaker Python SDK sends none) the container parses JSON.
    s3.put_object(Bucket=BUCKET, Key="in/noct.json", Body=json.dumps(payload()).encode())
    resp = rt.invoke_endpoint_async(EndpointName="e-async", InputLocation=f"s3://{BUCKET}/in/noct.json",
                                    InferenceId="inf-noct")
    wait_for(lambda: s3_body(resp["OutputLocation"]) is not None, True)


def test_invoke_bad_payloads():
    cases = {"inf-nouser": payload(username=None),           # None != '' -> user lookup fails
             "inf-user": payload(username="alice"),          # no all-in-one-ai API here
             "inf-noargs": payload(txt2img_payload__script_args=None),
             "inf-sampler": payload(txt2img_payload__sampler_index="k_euler_a"),
             "inf-task": payload(task="text-to-video"),
             "inf-notask": payload(task=None)}
    locations = {i: invoke("e-async", body, i) for i, body in cases.items()}
    for inference_id, resp in locations.items():
        wait_for(lambda: s3_body(resp["FailureLocation"]) is not None, True)
        assert s3_body(resp["OutputLocation"]) is None, inference_id
        body = s3_body(resp["FailureLocation"])
        if inference_id == "inf-notask":  # pydantic: task is required -> 422
            detail = json.loads(body)["detail"]
            assert detail[0]["loc"] == ["body", "task"], detail
        else:
            assert body == b"Internal Server Error", (inference_id, body)
    logs = "\n".join(ctl("GET", "/_sdop/containers")["logs"]["e-async"])
    for fragment in ("ConnectionError", "ScriptRunner.run() argument after *",
                     "404 Sampler not found ('k_euler_a')", "NotImplementedError"):
        assert fragment in logs, (fragment, logs)
    # A non-JSON ContentType reaches validation as raw bytes -> 422.
    s3.put_object(Bucket=BUCKET, Key="in/octet.json", Body=json.dumps(payload()).encode())
    resp = rt.invoke_endpoint_async(EndpointName="e-async", InputLocation=f"s3://{BUCKET}/in/octet.json",
                                    InferenceId="inf-octet", ContentType="application/octet-stream")
    wait_for(lambda: s3_body(resp["FailureLocation"]) is not None, True)
    assert json.loads(s3_body(resp["FailureLocation"]))["detail"][0]["type"] == "type_error.dict"


def test_invoke_no_failure_path():
    # m-noemb has no embeddings_s3uri: download_s3files('') fails inside the handler (500);
    # c-nofail has no S3FailurePath, so nothing is written anywhere.
    resp = invoke("e-nofail", payload(), "inf-noemb")
    assert resp["OutputLocation"] == f"s3://{BUCKET}/out2/inf-noemb.out", resp
    assert "FailureLocation" not in resp, resp
    assert "x-amzn-sagemaker-failurelocation" not in resp["ResponseMetadata"]["HTTPHeaders"]
    wait_for(lambda: any("inf-noemb: 500" in line for line in
                         ctl("GET", "/_sdop/containers")["logs"]["e-nofail"]), True)
    assert keys("out2") == [] and not any(k.startswith("fail/inf-noemb") for k in keys("fail/"))
    assert any("Invalid bucket name" in line for line in
               ctl("GET", "/_sdop/containers")["logs"]["e-nofail"])


def test_invocation_outcome_knob():
    ctl("POST", "/_sdop/config", {"invocation_outcome": "error"})
    failed = invoke("e-async", payload(), "inf-forced-error")
    ctl("POST", "/_sdop/config", {"invocation_outcome": "silent"})
    silent = invoke("e-async", payload(), "inf-silent")
    ctl("POST", "/_sdop/config", {"invocation_outcome": "container"})
    wait_for(lambda: s3_body(failed["FailureLocation"]), b"Internal Server Error")
    time.sleep(1.0)  # > invocation_seconds
    assert s3_body(silent["OutputLocation"]) is None and s3_body(silent["FailureLocation"]) is None
    assert s3_body(failed["OutputLocation"]) is None
    try:
        ctl("POST", "/_sdop/config", {"invocation_outcome": "bogus"})
        raise AssertionError("bad invocation_outcome accepted")
    except urllib.error.HTTPError as err:
        assert err.code == 400
    assert ctl("GET", "/_sdop/config")["invocation_outcome"] == "container"


def test_invoke_validation():
    code, msg = error(rt.invoke_endpoint_async, EndpointName="nope",
                      InputLocation=f"s3://{BUCKET}/in/inf-ok.json")
    assert (code, msg) == ("ValidationError", f"Endpoint nope of account {ACCOUNT} not found."), msg
    code, msg = error(rt.invoke_endpoint_async, EndpointName="e-rt",
                      InputLocation=f"s3://{BUCKET}/in/inf-ok.json")
    assert code == "ValidationError" and "not an asynchronous endpoint" in msg, msg
    code, msg = error(rt.invoke_endpoint_async, EndpointName="e-async",
                      InputLocation=f"s3://{BUCKET}/in/missing.json")
    assert code == "ValidationError" and "no such S3 object" in msg, msg
    code, msg = error(rt.invoke_endpoint_async, EndpointName="e-async",
                      InputLocation=f"s3://{BUCKET}/in/inf-ok.json", Body=b"{}")
    assert code == "ValidationError" and "exactly one" in msg, msg
    sm.create_endpoint(EndpointName="e-creating", EndpointConfigName="c-async")
    code, msg = error(rt.invoke_endpoint_async, EndpointName="e-creating",
                      InputLocation=f"s3://{BUCKET}/in/inf-ok.json")
    assert code == "ValidationError" and "is not in service (status Creating)" in msg, msg
    wait_for(lambda: status("e-creating"), "InService")
    # Updating still serves (the old config), as AWS ("there is no availability loss").
    sm.update_endpoint(EndpointName="e-creating", EndpointConfigName="c-async-model2")
    assert status("e-creating") == "Updating"
    resp = invoke("e-creating", payload(), "inf-updating")
    wait_for(lambda: s3_body(resp["OutputLocation"]) is not None, True)
    wait_for(lambda: status("e-creating"), "InService")
    sm.delete_endpoint(EndpointName="e-creating")


def target_id(endpoint, variant=VARIANT):
    return f"endpoint/{endpoint}/variant/{variant}"


def register(endpoint, **kw):
    return aas.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=target_id(endpoint),
                                        ScalableDimension=DIM, **{"MinCapacity": 0, "MaxCapacity": 2, **kw})


def policy(endpoint, name="backlog"):
    return aas.put_scaling_policy(
        PolicyName=name, ServiceNamespace="sagemaker", ResourceId=target_id(endpoint),
        ScalableDimension=DIM, PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 5.0, "CustomizedMetricSpecification": {
                "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
                "Dimensions": [{"Name": "EndpointName", "Value": endpoint}], "Statistic": "Average"}})


def policies(endpoint):
    return [p["PolicyName"] for p in aas.describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=target_id(endpoint))["ScalingPolicies"]]


def targets(endpoint):
    return aas.describe_scalable_targets(ServiceNamespace="sagemaker",
                                         ResourceIds=[target_id(endpoint)])["ScalableTargets"]


def test_target_tags():
    arn = register("e-async", Tags={"team": "sdop", "env": "test"})["ScalableTargetARN"]
    assert aas.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"team": "sdop", "env": "test"}
    aas.tag_resource(ResourceARN=arn, Tags={"env": "ci", "owner": "me"})
    aas.untag_resource(ResourceARN=arn, TagKeys=["team"])
    assert aas.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"env": "ci", "owner": "me"}
    # Re-registering updates in place: same ARN, new capacity, tags kept.
    assert register("e-async", MinCapacity=1, MaxCapacity=3)["ScalableTargetARN"] == arn
    (target,) = targets("e-async")
    assert (target["MinCapacity"], target["MaxCapacity"], target["ScalableTargetARN"]) == (1, 3, arn)
    code, msg = error(register, endpoint="e-async", Tags={"x": "y"})
    assert code == "ValidationException" and "use the TagResource API" in msg, msg
    missing = arn.rsplit("/", 1)[0] + "/0123456789abcdef0123456789abcdef0123"
    for fn, kw in [(aas.list_tags_for_resource, {}), (aas.tag_resource, {"Tags": {"a": "b"}}),
                   (aas.untag_resource, {"TagKeys": ["a"]})]:
        assert error(fn, ResourceARN=missing, **kw)[0] == "ResourceNotFoundException"
    aas.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=target_id("e-async"),
                                   ScalableDimension=DIM)


def test_target_must_exist():
    code, msg = error(register, endpoint="no-such-endpoint")
    assert code == "ValidationException" and "does not exist" in msg, msg
    code, msg = error(aas.register_scalable_target, ServiceNamespace="sagemaker",
                      ResourceId=target_id("e-async", "OtherVariant"), ScalableDimension=DIM,
                      MinCapacity=1, MaxCapacity=2)
    assert code == "ValidationException" and "OtherVariant" in msg, msg
    # A Creating endpoint's variant can be registered (the API does not require it active).
    sm.create_endpoint(EndpointName="e-young", EndpointConfigName="c-async")
    assert status("e-young") == "Creating"
    register("e-young")
    wait_for(lambda: status("e-young"), "InService")


def test_policy_needs_target_and_deregister_deletes_it():
    code, msg = error(policy, endpoint="e-nofail")
    assert (code, msg) == ("ObjectNotFoundException",
                           "No scalable target registered for service namespace: sagemaker, "
                           f"resource ID: {target_id('e-nofail')}, scalable dimension: {DIM}"), msg
    register("e-nofail")
    register("e-async")
    policy("e-nofail")
    policy("e-nofail", "second")
    policy("e-async")
    assert sorted(policies("e-nofail")) == ["backlog", "second"]
    aas.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=target_id("e-nofail"),
                                   ScalableDimension=DIM)
    assert policies("e-nofail") == [] and targets("e-nofail") == []
    assert policies("e-async") == ["backlog"]  # another target's policy stays
    code, _ = error(aas.deregister_scalable_target, ServiceNamespace="sagemaker",
                    ResourceId=target_id("e-nofail"), ScalableDimension=DIM)
    assert code == "ObjectNotFoundException"
    code, _ = error(aas.delete_scaling_policy, PolicyName="backlog", ServiceNamespace="sagemaker",
                    ResourceId=target_id("e-nofail"), ScalableDimension=DIM)
    assert code == "ObjectNotFoundException"


def test_update_endpoint_with_autoscaling():
    # e-async's variant is registered (previous test): changing its instance type fails...
    code, msg = error(sm.update_endpoint, EndpointName="e-async", EndpointConfigName="c-async-big")
    assert code == "ValidationException" and "AllTraffic" in msg, msg
    assert status("e-async") == "InService"
    # ...changing only the model is allowed.
    sm.update_endpoint(EndpointName="e-async", EndpointConfigName="c-async-model2")
    wait_for(lambda: status("e-async"), "InService")
    # DeleteEndpoint deregisters the endpoint's targets (and so their policies).
    assert targets("e-young") != []
    policy("e-young")
    sm.delete_endpoint(EndpointName="e-young")
    assert targets("e-young") == [] and policies("e-young") == []
    sm.delete_endpoint(EndpointName="e-async")
    assert targets("e-async") == [] and policies("e-async") == []


def main():
    run([test_invoke_success, test_invoke_bad_payloads, test_invoke_no_failure_path,
         test_invocation_outcome_knob, test_invoke_validation, test_target_tags,
         test_target_must_exist, test_policy_needs_target_and_deregister_deletes_it,
         test_update_endpoint_with_autoscaling], setup=setup)


if __name__ == "__main__":
    main()
