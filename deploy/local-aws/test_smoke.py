"""Self-check for the sdop local AWS emulator (not part of the Rust test suite).

    deploy/local-aws/up --install-only && deploy/local-aws/.venv/bin/python deploy/local-aws/test_smoke.py
"""
import http.client
import json
import threading
import time
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from selfcheck import PORT, URL, ctl, error as error_code, run, wait_for

ROLE = "arn:aws:iam::123456789012:role/sdop"


def client(service, akid="AKIDSDOPTEST"):
    return boto3.client(service, endpoint_url=URL, region_name="us-east-1",
                        aws_access_key_id=akid, aws_secret_access_key="secret",
                        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=32))


sm, s3, cfn = client("sagemaker"), client("s3"), client("cloudformation")


def make_endpoint_basics(model="m1", configs=("c1", "c2")):
    sm.create_model(ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "img"})
    for c in configs:
        sm.create_endpoint_config(EndpointConfigName=c, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": model, "InstanceType": "ml.g4dn.xlarge",
            "InitialInstanceCount": 1, "InitialVariantWeight": 1.0}])


def ep_state(name="e1"):
    d = sm.describe_endpoint(EndpointName=name)
    return d["EndpointStatus"], d["EndpointConfigName"], d.get("FailureReason")


def test_endpoint_lifecycle():
    # "img" is not in this ECR: its fork revision is external_image_revision; 47dd0bbc starts
    # without an api_endpoint (README "The all-in-one-ai images"), so the endpoints here serve.
    ctl("POST", "/_sdop/config", {"endpoint_create_seconds": 0.6, "endpoint_update_seconds": 0.6,
                                  "endpoint_delete_seconds": 0.4,
                                  "external_image_revision": "47dd0bbc"})
    make_endpoint_basics()
    t0 = time.time()
    sm.create_endpoint(EndpointName="e1", EndpointConfigName="c1")
    assert ep_state() == ("Creating", "c1", None)
    wait_for(ep_state, ("InService", "c1", None))
    assert 0.5 < time.time() - t0 < 2.0, time.time() - t0
    assert sm.describe_endpoint(EndpointName="e1")["ProductionVariants"][0]["VariantName"] == "AllTraffic"
    # update: old config while Updating, new one when InService
    sm.update_endpoint(EndpointName="e1", EndpointConfigName="c2")
    assert ep_state() == ("Updating", "c1", None)
    assert error_code(sm.update_endpoint, EndpointName="e1", EndpointConfigName="c1")[0] == "ValidationException"
    wait_for(ep_state, ("InService", "c2", None))
    # failed update rolls back to the old config with FailureReason
    ctl("POST", "/_sdop/faults", {"fail_next_update_endpoint": "CapacityError: no ml.g4dn.xlarge"})
    sm.update_endpoint(EndpointName="e1", EndpointConfigName="c1")
    assert ep_state() == ("Updating", "c2", None)
    wait_for(ep_state, ("InService", "c2", "CapacityError: no ml.g4dn.xlarge"))
    sm.update_endpoint(EndpointName="e1", EndpointConfigName="c1")  # fault was one-shot
    wait_for(ep_state, ("InService", "c1", None))
    # delete: Deleting, then gone
    sm.delete_endpoint(EndpointName="e1")
    assert ep_state()[0] == "Deleting"
    wait_for(lambda: error_code(sm.describe_endpoint, EndpointName="e1")[0]
             if sm.list_endpoints()["Endpoints"] == [] else "still there", "ValidationException")
    assert "Could not find endpoint" in error_code(sm.describe_endpoint, EndpointName="e1")[1]


def test_duplicates_and_tags():
    make_endpoint_basics("m2", ["c3"])
    code, msg = error_code(sm.create_model, ModelName="m2", ExecutionRoleArn=ROLE,
                           PrimaryContainer={"Image": "img"})
    assert (code, msg) == ("ValidationException", 'Cannot create already existing model '
                           '"arn:aws:sagemaker:us-east-1:123456789012:model/m2".'), msg
    code, msg = error_code(sm.create_endpoint_config, EndpointConfigName="c3", ProductionVariants=[{
        "VariantName": "v", "ModelName": "m2", "InstanceType": "ml.g4dn.xlarge", "InitialInstanceCount": 1}])
    assert code == "ValidationException" and msg.startswith("Cannot create already existing endpoint configuration"), msg
    arn = sm.create_endpoint(EndpointName="e2", EndpointConfigName="c3", Tags=[{"Key": "a", "Value": "1"}])["EndpointArn"]
    code, msg = error_code(sm.create_endpoint, EndpointName="e2", EndpointConfigName="c3")
    assert code == "ValidationException" and msg.startswith("Cannot create already existing endpoint \""), msg
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "a", "Value": "2"}, {"Key": "b", "Value": "3"}])
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "b", "Value": "4"}])
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "a", "Value": "2"}, {"Key": "b", "Value": "4"}]
    sm.delete_tags(ResourceArn=arn, TagKeys=["a"])
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "b", "Value": "4"}]


def train(name, hp, **extra):
    return sm.create_training_job(
        TrainingJobName=name, HyperParameters=hp, RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": "s3://sdop-bucket/output"},
        ResourceConfig={"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 3600}, **extra)


def db_hp(model, steps, is512, uri="s3://sdop-bucket/models/"):
    args = {"train_dreambooth_settings": {"db_new_model_name": model, "db_max_train_steps": steps,
                                          "db_512_model": is512}}
    return {"train-task": "dreambooth", "sd-models-s3uri": uri, "train-args": json.dumps(args),
            "api-endpoint": "https://api.invalid"}


def job(name):
    return sm.describe_training_job(TrainingJobName=name)


def test_training():
    # Lifecycles and faults. Every job goes through the training image's contract
    # (containers.run_training, README "The all-in-one-ai images"): these hyperparameters pass
    # train.py's argparse but not webui.py train() (the toolkit json.loads a JSON-object
    # train-args and hands train.py "k=v,...", which webui.py cannot json.loads), so the jobs end
    # Completed without a checkpoint, as on AWS (train.py drops os.system's status); the
    # container's error is in /_sdop/containers. The checkpoint path itself is covered by the
    # Rust tests (tests/integration, training_env).
    ctl("POST", "/_sdop/config", {"training_seconds": 1.5, "training_stop_seconds": 0.3,
                                  "checkpoint_bytes": 4096})
    s3.create_bucket(Bucket="sdop-bucket")
    train("t-sd2", db_hp("dog", 300, False))
    train("t-badargs", dict(db_hp("bad", 1, True), **{"train-args": "{not json"}))
    train("t-unknown", dict(db_hp("cat", 1, True), epochs="3"))
    train("t-stop", db_hp("stop", 1, True))
    train("t-fault", db_hp("fault", 1, True))
    ctl("POST", "/_sdop/faults", {"fail_training_jobs": {"t-fault": "AlgorithmError: injected"}})
    code, msg = error_code(train, name="t-sd2", hp=db_hp("dog", 300, False))
    assert code == "ResourceInUse" and "training job with this name already exists" in msg, msg
    first = job("t-sd2")
    assert first["TrainingJobStatus"] == "InProgress" and "TrainingEndTime" not in first, first
    sm.stop_training_job(TrainingJobName="t-stop")
    assert (job("t-stop")["TrainingJobStatus"], job("t-stop")["SecondaryStatus"]) == ("Stopping", "Stopping")
    wait_for(lambda: job("t-stop")["TrainingJobStatus"], "Stopped")
    assert error_code(sm.stop_training_job, TrainingJobName="t-stop")[0] == "ValidationException"
    seen = set()
    while job("t-sd2")["TrainingJobStatus"] == "InProgress":
        seen.add(job("t-sd2")["SecondaryStatus"])
        time.sleep(0.02)
    assert {"Training", "Uploading"} <= seen, seen
    done = job("t-sd2")
    assert done["TrainingJobStatus"] == "Completed", done
    assert done["SecondaryStatus"] == "Completed" and done["TrainingEndTime"] >= done["TrainingStartTime"]
    assert [t["Status"] for t in done["SecondaryStatusTransitions"]] == [
        "Starting", "Downloading", "Training", "Uploading", "Completed"]
    wait_for(lambda: job("t-badargs")["TrainingJobStatus"], "Completed")
    assert "Contents" not in s3.list_objects_v2(Bucket="sdop-bucket")  # no checkpoint
    logs = ctl("GET", "/_sdop/containers")["logs"]
    for name in ("t-sd2", "t-badargs"):
        assert any("JSONDecodeError" in line for line in logs[name]), logs[name]
    for name, fragment in [("t-unknown", "unrecognized arguments: --epochs 3"),
                           ("t-fault", "AlgorithmError: injected")]:
        wait_for(lambda: job(name)["TrainingJobStatus"], "Failed")
        assert fragment in job(name)["FailureReason"], job(name)["FailureReason"]
    statuses = {j["TrainingJobName"]: j["TrainingJobStatus"]
                for j in sm.list_training_jobs()["TrainingJobSummaries"]}
    assert statuses["t-stop"] == "Stopped" and statuses["t-sd2"] == "Completed"


def test_faults_and_calls():
    ctl("DELETE", "/_sdop/calls")
    ctl("POST", "/_sdop/faults", {"throttle": {"sagemaker:ListModels": 0.2, "s3:*": 0.5},
                                  "error500": {"sagemaker:ListEndpointConfigs": 1.0,
                                               "cloudformation:ListStacks": 1.0}})
    outcomes = []
    for _ in range(10):
        try:
            sm.list_models()
            outcomes.append("ok")
        except ClientError as err:
            assert err.response["Error"]["Code"] == "ThrottlingException"
            assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            outcomes.append("T")
    assert outcomes == (["ok"] * 4 + ["T"]) * 2, outcomes
    s3_codes = []
    for _ in range(4):
        try:
            s3.list_buckets()
            s3_codes.append("ok")
        except ClientError as err:
            s3_codes.append((err.response["Error"]["Code"], err.response["ResponseMetadata"]["HTTPStatusCode"]))
    assert s3_codes == ["ok", ("SlowDown", 503)] * 2, s3_codes
    err = error_code(sm.list_endpoint_configs)
    assert err == ("InternalFailure", "injected"), err
    assert error_code(cfn.list_stacks)[0] == "InternalFailure"
    ctl("DELETE", "/_sdop/faults")
    sm.list_endpoint_configs()
    calls = ctl("GET", "/_sdop/calls")
    assert calls["by_api"]["sagemaker:ListModels"] == {"read": 10, "mutate": 0, "count": 10, "faulted": 2}
    assert calls["by_api"]["s3:ListBuckets"]["count"] == 4
    assert calls["by_api"]["sagemaker:ListEndpointConfigs"]["count"] == 2
    assert calls["by_api"]["cloudformation:ListStacks"]["read"] == 1
    assert calls["total"] == {"read": 17, "mutate": 0}, calls["total"]
    s3.put_object(Bucket="sdop-bucket", Key="k/obj", Body=b"x")
    s3.head_object(Bucket="sdop-bucket", Key="k/obj")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "sdop-bucket", "Key": "k/obj"})
    assert urllib.request.urlopen(url).read() == b"x"
    by_api = ctl("GET", "/_sdop/calls")["by_api"]
    assert by_api["s3:PutObject"]["mutate"] == 1 and by_api["s3:HeadObject"]["read"] == 1, by_api
    assert by_api["s3:GetObject"]["read"] == 1, by_api
    ctl("DELETE", "/_sdop/calls")
    assert ctl("GET", "/_sdop/calls") == {"total": {"read": 0, "mutate": 0}, "by_api": {},
                                          "by_caller": {}, "body_bytes": {}}


def test_upload_part_faults_and_body_bytes():
    """UploadPart answered NoSuchUpload a limited number of times, and the bytes of request
    bodies counted per API, faulted ones included (what a retrying uploader sent)."""
    ctl("DELETE", "/_sdop/calls")
    s3.create_bucket(Bucket="sdop-parts")
    upload = s3.create_multipart_upload(Bucket="sdop-parts", Key="k")["UploadId"]
    ctl("POST", "/_sdop/faults", {"no_such_upload": {"s3:UploadPart": {"fraction": 0.5, "times": 1}},
                                  "error500": {"s3:PutObject": 1.0}})
    try:
        part = dict(Bucket="sdop-parts", Key="k", UploadId=upload, Body=b"p" * 1000)
        outcomes = []
        for number in range(1, 5):
            try:
                s3.upload_part(PartNumber=number, **part)
                outcomes.append("ok")
            except ClientError as err:
                outcomes.append((err.response["Error"]["Code"],
                                 err.response["ResponseMetadata"]["HTTPStatusCode"]))
        # Calls 2 and 4 are picked by the fraction; only the first of them (times: 1) is faulted.
        assert outcomes == ["ok", ("NoSuchUpload", 404), "ok", "ok"], outcomes
        assert error_code(s3.put_object, Bucket="sdop-parts", Key="o", Body=b"x" * 10)[0] == "InternalError"
    finally:
        ctl("DELETE", "/_sdop/faults")
        s3.abort_multipart_upload(Bucket="sdop-parts", Key="k", UploadId=upload)
    body_bytes = ctl("GET", "/_sdop/calls")["body_bytes"]
    assert body_bytes == {"s3:UploadPart": {"bytes": 4000, "faulted": 1000},
                          "s3:PutObject": {"bytes": 10, "faulted": 10}}, body_bytes


def test_cloudformation():
    ctl("POST", "/_sdop/config", {"stack_seconds": 0.6})
    template = {"Resources": {"Bucket": {"Type": "AWS::S3::Bucket",
                                         "Properties": {"BucketName": "sdop-cfn-bucket"}}}}
    s3.put_object(Bucket="sdop-bucket", Key="tpl/stack.json", Body=json.dumps(template).encode())
    cfn.create_stack(StackName="sdop-stack",
                     TemplateURL=f"http://localhost:{PORT}/sdop-bucket/tpl/stack.json")

    def status():
        return cfn.describe_stacks(StackName="sdop-stack")["Stacks"][0]["StackStatus"]
    assert status() == "CREATE_IN_PROGRESS"
    wait_for(status, "CREATE_COMPLETE")
    # LastUpdatedTime "will only be returned if the stack has been updated at least once"
    # (API_Stack); each update sets it.
    assert "LastUpdatedTime" not in cfn.describe_stacks(StackName="sdop-stack")["Stacks"][0]
    template["Resources"]["Other"] = {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "sdop-cfn-2"}}
    cfn.update_stack(StackName="sdop-stack", TemplateBody=json.dumps(template))
    assert status() == "UPDATE_IN_PROGRESS"
    wait_for(status, "UPDATE_COMPLETE")
    assert "sdop-cfn-2" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    first_update = cfn.describe_stacks(StackName="sdop-stack")["Stacks"][0]["LastUpdatedTime"]
    # A tag-only change is an update, not "No updates are to be performed" (API_UpdateStack).
    cfn.update_stack(StackName="sdop-stack", UsePreviousTemplate=True,
                     Tags=[{"Key": "team", "Value": "ml"}])
    wait_for(status, "UPDATE_COMPLETE")
    assert cfn.describe_stacks(StackName="sdop-stack")["Stacks"][0]["Tags"] == [
        {"Key": "team", "Value": "ml"}]
    assert cfn.describe_stacks(StackName="sdop-stack")["Stacks"][0]["LastUpdatedTime"] > first_update


def test_nested_stack_failure():
    # A nested stack whose resource fails (a Lambda layer whose code zip is missing): the
    # resource's CREATE_FAILED and its reason are in the nested stack's events, the parent has
    # the nested stack resource CREATE_FAILED "Embedded stack <ARN> was not successfully
    # created: ...", both roll back, and the deleted nested stack's events are read by its ARN
    # (local_aws_cloudformation.py names AWS's sources).
    ctl("POST", "/_sdop/config", {"stack_seconds": 0.0})
    s3.create_bucket(Bucket="sdop-nested")
    layer = {"Resources": {
        "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
            "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                           "Principal": {"Service": "lambda.amazonaws.com"}}]}}},
        "Layer": {"Type": "AWS::Lambda::LayerVersion", "DependsOn": "Role", "Properties": {
            "LayerName": "sdop-helper", "CompatibleRuntimes": ["python3.9"],
            "Content": {"S3Bucket": "sdop-nested", "S3Key": "codes/missing.zip"}}}}}
    main = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}, "LAMBDA": {
        "Type": "AWS::CloudFormation::Stack", "DependsOn": "Topic", "Properties": {
            "TemplateURL": f"http://localhost:{PORT}/sdop-nested/lambda.json"}}}}
    s3.put_object(Bucket="sdop-nested", Key="lambda.json", Body=json.dumps(layer).encode())
    cfn.create_stack(StackName="sdop-root", TemplateBody=json.dumps(main))
    root = cfn.describe_stacks(StackName="sdop-root")["Stacks"][0]
    assert root["StackStatus"] == "ROLLBACK_COMPLETE", root

    def events(name):
        # Newest first, as DescribeStackEvents returns them.
        return [(e["LogicalResourceId"], e["ResourceType"], e["ResourceStatus"],
                 e.get("ResourceStatusReason"), e.get("PhysicalResourceId"))
                for e in cfn.describe_stack_events(StackName=name)["StackEvents"]]
    root_events = events("sdop-root")
    failed = [e for e in root_events if e[2] == "CREATE_FAILED"]
    assert len(failed) == 1 and failed[0][:3] == (
        "LAMBDA", "AWS::CloudFormation::Stack", "CREATE_FAILED"), root_events
    nested_id = failed[0][4]
    assert nested_id.startswith("arn:aws:cloudformation:us-east-1:123456789012:stack/"
                                "sdop-root-LAMBDA-"), failed
    assert failed[0][3] == (f"Embedded stack {nested_id} was not successfully created: "
                            "The following resource(s) failed to create: [Layer]. "), failed
    stack_events = [(e[2], e[3]) for e in root_events if e[1:2] == ("AWS::CloudFormation::Stack",)
                    and e[4] == root["StackId"]]
    assert stack_events[:2] == [
        ("ROLLBACK_COMPLETE", None),
        ("ROLLBACK_IN_PROGRESS", "The following resource(s) failed to create: [LAMBDA]. "
                                 "Rollback requested by user.")], stack_events
    # The root's own resources are deleted by the rollback, the nested stack too.
    assert ("Topic", "AWS::SNS::Topic", "DELETE_COMPLETE", None, None) in root_events
    assert ("LAMBDA", "AWS::CloudFormation::Stack", "DELETE_COMPLETE", None, None) in root_events
    assert client("sns").list_topics()["Topics"] == [], "the rollback deletes the topic"
    nested = cfn.describe_stacks(StackName=nested_id)["Stacks"][0]
    assert nested["StackStatus"] == "DELETE_COMPLETE", nested
    assert error_code(cfn.describe_stack_events, StackName=nested["StackName"])[0] == \
        "ValidationError", "a deleted stack is found by its ID only"
    nested_events = events(nested_id)
    assert nested_events[0][2:4] == ("DELETE_COMPLETE", None), nested_events
    layer_failed = [e for e in nested_events if e[2] == "CREATE_FAILED"]
    assert [e[:3] for e in layer_failed] == [
        ("Layer", "AWS::Lambda::LayerVersion", "CREATE_FAILED")], nested_events
    assert "S3 Error Code: NoSuchKey" in layer_failed[0][3], layer_failed
    # Role was created before Layer failed, then deleted by the nested stack's own rollback.
    statuses = [(e[0], e[2]) for e in reversed(nested_events) if e[0] == "Role"]
    assert statuses == [("Role", "CREATE_IN_PROGRESS"), ("Role", "CREATE_COMPLETE"),
                        ("Role", "DELETE_IN_PROGRESS"), ("Role", "DELETE_COMPLETE")], statuses
    rollback = [e[3] for e in nested_events if e[2] == "ROLLBACK_IN_PROGRESS"]
    assert rollback == ["The following resource(s) failed to create: [Layer]. "], rollback


def s3_error(fn, **kw):
    try:
        fn(**kw)
    except ClientError as err:
        return err.response["ResponseMetadata"]["HTTPStatusCode"], err.response["Error"]
    raise AssertionError(f"{fn.__name__} did not fail")


PRECONDITION = "At least one of the pre-conditions you specified did not hold"


def test_s3_conditional_writes():
    s3.create_bucket(Bucket="sdop-lease")
    put = s3.put_object
    etag = put(Bucket="sdop-lease", Key="lease", Body=b"a", IfNoneMatch="*")["ETag"]
    assert s3_error(put, Bucket="sdop-lease", Key="lease", Body=b"b", IfNoneMatch="*") == (412, {
        "Code": "PreconditionFailed", "Message": PRECONDITION, "Condition": "If-None-Match"})
    etag2 = put(Bucket="sdop-lease", Key="lease", Body=b"c", IfMatch=etag)["ETag"]
    assert etag2 != etag
    assert s3_error(put, Bucket="sdop-lease", Key="lease", Body=b"d", IfMatch=etag) == (412, {
        "Code": "PreconditionFailed", "Message": PRECONDITION, "Condition": "If-Match"})
    status, err = s3_error(put, Bucket="sdop-lease", Key="missing", Body=b"e", IfMatch=etag)
    assert (status, err["Code"]) == (404, "NoSuchKey"), err
    assert s3.get_object(Bucket="sdop-lease", Key="lease")["Body"].read() == b"c"
    # raw wire format (what a non-boto client parses)
    req = urllib.request.Request(f"{URL}/sdop-lease/lease", data=b"f", method="PUT", headers={
        "If-None-Match": "*", "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDRAW/20250101/"
        "us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"})
    try:
        urllib.request.urlopen(req)
        raise AssertionError("raw If-None-Match put did not fail")
    except urllib.error.HTTPError as err:
        body = err.read().decode()
        assert err.code == 412 and ("<Error><Code>PreconditionFailed</Code><Message>"
                                    f"{PRECONDITION}</Message><Condition>If-None-Match</Condition>") in body, body
    # DeleteObject If-Match
    status, err = s3_error(s3.delete_object, Bucket="sdop-lease", Key="lease", IfMatch=etag)
    assert (status, err["Code"], err.get("Condition")) == (412, "PreconditionFailed", "If-Match"), err
    s3.delete_object(Bucket="sdop-lease", Key="lease", IfMatch=etag2)
    assert s3.list_objects_v2(Bucket="sdop-lease").get("KeyCount") == 0
    # after delete the key can be taken again
    put(Bucket="sdop-lease", Key="lease", Body=b"g", IfNoneMatch="*")


def race(n, attempt):
    """Run attempt(i) in n threads released together -> (winners, failure codes)."""
    barrier, wins, codes = threading.Barrier(n), [], []

    def run(i):
        barrier.wait()
        try:
            attempt(i)
            wins.append(i)
        except ClientError as err:
            codes.append((err.response["ResponseMetadata"]["HTTPStatusCode"], err.response["Error"]["Code"]))
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return wins, codes


def test_s3_conditional_races():
    n, bodies = 12, [b"%02d" % i * 50000 for i in range(12)]
    for round_ in range(8):
        key = f"race-{round_}"
        wins, codes = race(n, lambda i: s3.put_object(Bucket="sdop-lease", Key=key, Body=bodies[i],
                                                      IfNoneMatch="*"))
        assert len(wins) == 1 and codes == [(412, "PreconditionFailed")] * (n - 1), (wins, codes)
        assert s3.get_object(Bucket="sdop-lease", Key=key)["Body"].read() == bodies[wins[0]]
        # compare-and-swap: everyone read the same ETag, exactly one renewal wins
        etag = s3.head_object(Bucket="sdop-lease", Key=key)["ETag"]
        wins, codes = race(n, lambda i: s3.put_object(Bucket="sdop-lease", Key=key,
                                                      Body=bodies[i] + b"!", IfMatch=etag))
        assert len(wins) == 1 and codes == [(412, "PreconditionFailed")] * (n - 1), (wins, codes)
        assert s3.get_object(Bucket="sdop-lease", Key=key)["Body"].read() == bodies[wins[0]] + b"!"


def test_calls_by_caller_and_log():
    ctl("DELETE", "/_sdop/calls")
    assert ctl("GET", "/_sdop/calls/log") == {"calls": []}
    other = client("sagemaker", "AKIDOTHER")
    ctl("POST", "/_sdop/faults", {"throttle": {"sagemaker:ListEndpoints": 1.0}})
    t0 = time.time()
    sm.list_models()
    other.list_models()
    other.create_model(ModelName="m-caller", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "img"})
    assert error_code(other.list_endpoints)[0] == "ThrottlingException"
    ctl("DELETE", "/_sdop/faults")
    url = client("s3", "AKIDPRESIGN").generate_presigned_url(
        "get_object", Params={"Bucket": "sdop-lease", "Key": "lease"})
    assert urllib.request.urlopen(url).read() == b"g"
    t1 = time.time()
    calls = ctl("GET", "/_sdop/calls")
    assert calls["total"] == {"read": 4, "mutate": 1}, calls
    assert calls["by_api"]["sagemaker:ListModels"] == {"read": 2, "mutate": 0, "count": 2, "faulted": 0}
    assert calls["by_caller"] == {
        "AKIDSDOPTEST": {"read": 1, "mutate": 0, "by_api": {
            "sagemaker:ListModels": {"read": 1, "mutate": 0, "count": 1, "faulted": 0}}},
        "AKIDOTHER": {"read": 2, "mutate": 1, "by_api": {
            "sagemaker:ListModels": {"read": 1, "mutate": 0, "count": 1, "faulted": 0},
            "sagemaker:CreateModel": {"read": 0, "mutate": 1, "count": 1, "faulted": 0},
            "sagemaker:ListEndpoints": {"read": 1, "mutate": 0, "count": 1, "faulted": 1}}},
        "AKIDPRESIGN": {"read": 1, "mutate": 0, "by_api": {
            "s3:GetObject": {"read": 1, "mutate": 0, "count": 1, "faulted": 0}}},
    }, calls["by_caller"]
    log = ctl("GET", "/_sdop/calls/log")["calls"]
    assert [{k: v for k, v in c.items() if k != "t"} for c in log] == [
        {"api": "sagemaker:ListModels", "read": True, "caller": "AKIDSDOPTEST", "faulted": False},
        {"api": "sagemaker:ListModels", "read": True, "caller": "AKIDOTHER", "faulted": False},
        {"api": "sagemaker:CreateModel", "read": False, "caller": "AKIDOTHER", "faulted": False},
        {"api": "sagemaker:ListEndpoints", "read": True, "caller": "AKIDOTHER", "faulted": True},
        {"api": "s3:GetObject", "read": True, "caller": "AKIDPRESIGN", "faulted": False},
    ], log
    times = [c["t"] for c in log]
    assert all(isinstance(t, float) for t in times) and t0 <= times[0] and times[-1] <= t1, (t0, times, t1)
    assert times == sorted(times), times
    assert ctl("GET", f"/_sdop/calls/log?since={times[2]!r}")["calls"] == log[3:]
    assert ctl("GET", f"/_sdop/calls/log?since={t1!r}")["calls"] == []
    assert ctl("GET", "/_sdop/calls/log?since=0")["calls"] == log
    try:
        ctl("GET", "/_sdop/calls/log?since=soon")
        raise AssertionError("bad since accepted")
    except urllib.error.HTTPError as err:
        assert err.code == 400
    # SigV2 ("AWS AKID:signature") is S3; unsigned requests are counted as caller "unknown"
    urllib.request.urlopen(urllib.request.Request(URL + "/sdop-lease/lease", headers={
        "Authorization": "AWS AKIDV2:c2lnbmF0dXJl"})).close()
    urllib.request.urlopen(urllib.request.Request(URL + "/", method="HEAD")).close()
    by_caller = ctl("GET", "/_sdop/calls")["by_caller"]
    assert by_caller["AKIDV2"]["by_api"] == {"s3:GetObject": {"read": 1, "mutate": 0, "count": 1, "faulted": 0}}
    assert by_caller["unknown"] == {"read": 0, "mutate": 1, "by_api": {
        "unknown:HEAD": {"read": 0, "mutate": 1, "count": 1, "faulted": 0}}}, by_caller
    ctl("DELETE", "/_sdop/calls")
    assert ctl("GET", "/_sdop/calls")["by_caller"] == {}
    assert ctl("GET", "/_sdop/calls/log") == {"calls": []}


def test_call_log_bound():
    ctl("DELETE", "/_sdop/calls")
    ctl("POST", "/_sdop/faults", {"error500": {"s3:*": 1.0}})  # answered by the middleware alone
    conn = http.client.HTTPConnection("127.0.0.1", PORT)  # raw keep-alive: ~10 s for 20005 calls
    for i in range(20005):  # the 5 oldest (AKIDOLD) must fall out of the 20000-entry log
        akid = "AKIDOLD" if i < 5 else "AKIDBULK"
        conn.request("GET", f"/sdop-bulk/k{i}", headers={"Authorization": (
            f"AWS4-HMAC-SHA256 Credential={akid}/20250101/us-east-1/s3/aws4_request, "
            "SignedHeaders=host, Signature=0")})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 500, resp.status
    conn.close()
    ctl("DELETE", "/_sdop/faults")
    log = ctl("GET", "/_sdop/calls/log")["calls"]
    assert len(log) == 20000 and {c["caller"] for c in log} == {"AKIDBULK"}, len(log)
    by_caller = ctl("GET", "/_sdop/calls")["by_caller"]  # counters are not bounded
    assert by_caller["AKIDOLD"]["read"] == 5 and by_caller["AKIDBULK"]["by_api"]["s3:GetObject"] == {
        "read": 20000, "mutate": 0, "count": 20000, "faulted": 20000}, by_caller
    ctl("DELETE", "/_sdop/calls")


def test_ecr_scan_on_push_default():
    # An empty imageScanningConfiguration is scanOnPush at its default, false (local_aws_ecr.py).
    ecr = client("ecr")
    ecr.create_repository(repositoryName="sdop-scan", imageScanningConfiguration={"scanOnPush": True})
    scanning = lambda: ecr.describe_repositories(repositoryNames=["sdop-scan"])[  # noqa: E731
        "repositories"][0]["imageScanningConfiguration"]["scanOnPush"]
    assert scanning() is True
    ecr.put_image_scanning_configuration(repositoryName="sdop-scan", imageScanningConfiguration={})
    assert scanning() is False
    ecr.put_image_scanning_configuration(repositoryName="sdop-scan",
                                         imageScanningConfiguration={"scanOnPush": True})
    assert scanning() is True
    ecr.delete_repository(repositoryName="sdop-scan")


def test_reset():
    ctl("POST", "/_sdop/config", {"training_seconds": 9})
    ctl("POST", "/_sdop/faults", {"throttle": {"*": 1.0}})
    ctl("POST", "/_sdop/reset")
    assert sm.list_models()["Models"] == [] and s3.list_buckets()["Buckets"] == []
    assert ctl("GET", "/_sdop/config")["training_seconds"] == 3.0
    assert ctl("GET", "/_sdop/faults") == {}
    assert ctl("GET", "/_sdop/calls")["total"] == {"read": 2, "mutate": 0}


def main():
    run([test_endpoint_lifecycle, test_duplicates_and_tags, test_training,
         test_faults_and_calls, test_upload_part_faults_and_body_bytes,
         test_cloudformation, test_nested_stack_failure, test_s3_conditional_writes,
         test_s3_conditional_races, test_calls_by_caller_and_log, test_call_log_bound,
         test_ecr_scan_on_push_default, test_reset], quiet=False)


if __name__ == "__main__":
    main()
