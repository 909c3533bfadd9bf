"""Self-check for GetResources of the Resource Groups Tagging API in the sdop local AWS emulator:
every type sdop tags listed with its exact tags, tag changes through each service's own API, the
tagging_lag_seconds knob and the call counter's name for it (not part of the Rust test suite;
no pytest needed).

    deploy/local-aws/up --install-only && deploy/local-aws/.venv/bin/python deploy/local-aws/test_tagging.py
"""
import json
import time
import urllib.error

import boto3
from botocore.config import Config

from selfcheck import URL, ctl, run

ROLE = "arn:aws:iam::123456789012:role/sdop"
ACCOUNT = "123456789012"
KEY = "sdop.io/managed-by"  # sdop's ownership tag (crates/sdop-aws/src/aws/mod.rs TAG_MANAGED_BY)
LAG = 3.0  # seconds; generous, so a busy machine still makes its changes within it


def client(service, region="us-east-1"):
    return boto3.client(service, endpoint_url=URL, region_name=region,
                        aws_access_key_id="AKIDSDOPTEST", aws_secret_access_key="secret",
                        config=Config(retries={"total_max_attempts": 1},
                                      s3={"addressing_style": "path"}))


sm, s3, ecr = client("sagemaker"), client("s3"), client("ecr")
aas, cw, cfn = client("application-autoscaling"), client("cloudwatch"), client("cloudformation")
tagging = client("resourcegroupstaggingapi")


def tag_list(tags):
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def owned(n, **user):
    """The tags sdop puts on an object (ownership tags plus the user's)."""
    return {KEY: "sdop", "sdop.io/resource": f"Kind/obj-{n}", "sdop.io/spec-hash": f"h{n}", **user}


def get_all(region_client=None, per_page=100, **kw):
    """Every page of GetResources(TagFilters=[{Key: KEY}], ...) -> {arn: {key: value}}."""
    client_, out, token = region_client or tagging, {}, None
    kw.setdefault("TagFilters", [{"Key": KEY}])
    while True:
        page = client_.get_resources(ResourcesPerPage=per_page,
                                     **({"PaginationToken": token} if token else {}), **kw)
        assert len(page["ResourceTagMappingList"]) <= per_page, page
        for m in page["ResourceTagMappingList"]:
            assert m["ResourceARN"] not in out, f"{m['ResourceARN']} listed twice"
            tags = {t["Key"]: t["Value"] for t in m["Tags"]}
            assert len(tags) == len(m["Tags"]), m  # one entry per key
            out[m["ResourceARN"]] = tags
        token = page.get("PaginationToken")
        if not token:
            return out


EXPECTED = {}  # arn -> tags every test leaves behind
ARN = {}       # short name -> arn


def setup():
    ctl("POST", "/_sdop/config", {"endpoint_create_seconds": 0.3, "training_seconds": 0.3,
                                  "stack_seconds": 0, "external_image_revision": "47dd0bbc"})
    s3.create_bucket(Bucket="sdop-tag-bucket")
    s3.put_bucket_tagging(Bucket="sdop-tag-bucket", Tagging={"TagSet": tag_list(owned(1))})
    s3.create_bucket(Bucket="sdop-tag-plain")  # untagged
    s3.create_bucket(Bucket="sdop-tag-other")  # tagged, without sdop's key
    s3.put_bucket_tagging(Bucket="sdop-tag-other", Tagging={"TagSet": tag_list({"team": "x"})})
    ARN["bucket"] = "arn:aws:s3:::sdop-tag-bucket"
    EXPECTED[ARN["bucket"]] = owned(1)

    ARN["repo"] = ecr.create_repository(repositoryName="sdop/tag-repo",
                                        tags=tag_list(owned(2)))["repository"]["repositoryArn"]
    assert ARN["repo"] == f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/sdop/tag-repo", ARN["repo"]
    EXPECTED[ARN["repo"]] = owned(2)
    ecr.create_repository(repositoryName="sdop/tag-plain")  # untagged

    ARN["model"] = sm.create_model(ModelName="m-tag", ExecutionRoleArn=ROLE,
                                   PrimaryContainer={"Image": "img"},
                                   Tags=tag_list(owned(3)))["ModelArn"]
    ARN["config"] = sm.create_endpoint_config(EndpointConfigName="c-tag", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "m-tag", "InstanceType": "ml.g4dn.xlarge",
        "InitialInstanceCount": 1, "InitialVariantWeight": 1.0}],
        Tags=tag_list(owned(4)))["EndpointConfigArn"]
    ARN["endpoint"] = sm.create_endpoint(EndpointName="e-tag", EndpointConfigName="c-tag",
                                         Tags=tag_list(owned(5)))["EndpointArn"]
    ARN["group"] = sm.create_model_package_group(
        ModelPackageGroupName="g-tag", Tags=tag_list(owned(6)))["ModelPackageGroupArn"]
    ARN["job"] = sm.create_training_job(
        TrainingJobName="t-tag", RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": "s3://sdop-tag-bucket/output"},
        ResourceConfig={"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
        Tags=tag_list(owned(7)))["TrainingJobArn"]
    sm.create_model(ModelName="m-plain", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "img"})
    for n, name in ((3, "model"), (4, "config"), (5, "endpoint"), (6, "group"), (7, "job")):
        EXPECTED[ARN[name]] = owned(n)
    assert ARN["config"] == f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint-config/c-tag"

    ARN["target"] = aas.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId="endpoint/e-tag/variant/AllTraffic",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount", MinCapacity=1, MaxCapacity=2,
        Tags=owned(8))["ScalableTargetARN"]
    assert ARN["target"].startswith(
        f"arn:aws:application-autoscaling:us-east-1:{ACCOUNT}:scalable-target/"), ARN["target"]
    EXPECTED[ARN["target"]] = owned(8)

    cw.put_metric_alarm(AlarmName="a-tag", MetricName="ApproximateBacklogSize",
                        Namespace="AWS/SageMaker", Statistic="Average", Period=60,
                        EvaluationPeriods=1, Threshold=1.0,
                        ComparisonOperator="GreaterThanThreshold", Tags=tag_list(owned(9)))
    ARN["alarm"] = cw.describe_alarms(AlarmNames=["a-tag"])["MetricAlarms"][0]["AlarmArn"]
    EXPECTED[ARN["alarm"]] = owned(9)

    # A template without taggable resources: stack tags alone.
    template = {"Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}
    ARN["stack"] = cfn.create_stack(StackName="sdop-tag-stack", TemplateBody=json.dumps(template),
                                    Tags=tag_list(owned(10)))["StackId"]
    EXPECTED[ARN["stack"]] = owned(10)


def test_every_type_listed():
    # Each ARN with its exact tags; the untagged bucket, repository and model and the bucket
    # tagged without sdop's key are not listed.
    assert get_all() == EXPECTED, json.dumps(get_all(), indent=1)
    # A filter with Values, and a resource type filter.
    assert set(get_all(TagFilters=[{"Key": "sdop.io/spec-hash", "Values": ["h2", "h8"]}])) == \
        {ARN["repo"], ARN["target"]}
    assert get_all(ResourceTypeFilters=["ecr:repository"]) == {ARN["repo"]: owned(2)}
    assert get_all(ResourceTypeFilters=["application-autoscaling"]) == {ARN["target"]: owned(8)}


def test_pages():
    assert get_all(per_page=1) == EXPECTED
    assert get_all(per_page=3) == EXPECTED


def test_tag_changes():
    s3.put_bucket_tagging(Bucket="sdop-tag-bucket",
                          Tagging={"TagSet": tag_list(owned(1, team="ml"))})
    EXPECTED[ARN["bucket"]] = owned(1, team="ml")
    ecr.tag_resource(resourceArn=ARN["repo"], tags=tag_list({"sdop.io/spec-hash": "h2b"}))
    ecr.untag_resource(resourceArn=ARN["repo"], tagKeys=["sdop.io/resource"])
    EXPECTED[ARN["repo"]] = {KEY: "sdop", "sdop.io/spec-hash": "h2b"}
    sm.add_tags(ResourceArn=ARN["endpoint"], Tags=tag_list({"sdop.io/spec-hash": "h5b", "a": "1"}))
    EXPECTED[ARN["endpoint"]] = owned(5, a="1") | {"sdop.io/spec-hash": "h5b"}
    sm.delete_tags(ResourceArn=ARN["group"], TagKeys=[KEY])  # no longer sdop's
    del EXPECTED[ARN["group"]]
    sm.add_tags(ResourceArn=ARN["config"], Tags=tag_list({"b": "2"}))
    EXPECTED[ARN["config"]] = owned(4, b="2")
    aas.tag_resource(ResourceARN=ARN["target"], Tags={"sdop.io/spec-hash": "h8b"})
    aas.untag_resource(ResourceARN=ARN["target"], TagKeys=["sdop.io/resource"])
    EXPECTED[ARN["target"]] = {KEY: "sdop", "sdop.io/spec-hash": "h8b"}
    cw.tag_resource(ResourceARN=ARN["alarm"], Tags=tag_list({"c": "3"}))
    EXPECTED[ARN["alarm"]] = owned(9, c="3")
    cfn.update_stack(StackName="sdop-tag-stack", UsePreviousTemplate=True,
                     Tags=tag_list(owned(10, d="4")))
    EXPECTED[ARN["stack"]] = owned(10, d="4")
    # Tagging the untagged repository makes it sdop's.
    plain = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/sdop/tag-plain"
    ecr.tag_resource(resourceArn=plain, tags=tag_list(owned(11)))
    EXPECTED[plain] = owned(11)
    assert get_all() == EXPECTED, json.dumps(get_all(), indent=1)


def test_regions():
    # A bucket is listed in its own Region only; GetResources is per Region.
    west_s3 = client("s3", "us-west-2")
    west_s3.create_bucket(Bucket="sdop-tag-west",
                          CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    west_s3.put_bucket_tagging(Bucket="sdop-tag-west", Tagging={"TagSet": tag_list(owned(12))})
    assert get_all() == EXPECTED
    assert get_all(client("resourcegroupstaggingapi", "us-west-2")) == \
        {"arn:aws:s3:::sdop-tag-west": owned(12)}


def test_lag():
    ctl("POST", "/_sdop/config", {"tagging_lag_seconds": LAG})
    try:
        time.sleep(LAG + 0.1)  # the changes of the tests before are old enough to be seen
        assert get_all() == EXPECTED
        before = dict(EXPECTED)
        t0 = time.time()
        ecr.tag_resource(resourceArn=ARN["repo"], tags=tag_list({"sdop.io/spec-hash": "h2c"}))
        EXPECTED[ARN["repo"]] = {KEY: "sdop", "sdop.io/spec-hash": "h2c"}
        aas.untag_resource(ResourceARN=ARN["target"], TagKeys=[KEY])
        del EXPECTED[ARN["target"]]
        s3.delete_bucket_tagging(Bucket="sdop-tag-bucket")
        del EXPECTED[ARN["bucket"]]
        sm.add_tags(ResourceArn=ARN["group"], Tags=tag_list(owned(6)))  # sdop's again
        EXPECTED[ARN["group"]] = owned(6)
        new = ecr.create_repository(repositoryName="sdop/tag-new",
                                    tags=tag_list(owned(13)))["repository"]["repositoryArn"]
        EXPECTED[new] = owned(13)
        cw.delete_alarms(AlarmNames=["a-tag"])
        del EXPECTED[ARN["alarm"]]
        # The services' own APIs answer with the new tags at once ...
        assert {t["Key"]: t["Value"] for t in ecr.list_tags_for_resource(
            resourceArn=ARN["repo"])["tags"]}[KEY] == "sdop"
        assert KEY not in aas.list_tags_for_resource(ResourceARN=ARN["target"])["Tags"]
        # ... GetResources with the tags of LAG seconds ago: the old values, no new repository,
        # the deleted alarm still there.
        got = get_all()
        assert time.time() - t0 < LAG, "too slow to see the lag"
        assert got == before, json.dumps(got, indent=1)
        time.sleep(max(0.0, t0 + LAG + 0.3 - time.time()))
        assert get_all() == EXPECTED, json.dumps(get_all(), indent=1)
    finally:
        ctl("POST", "/_sdop/config", {"tagging_lag_seconds": 0})
    assert get_all() == EXPECTED
    # The knob is checked like the others.
    try:
        ctl("POST", "/_sdop/config", {"tagging_lag_seconds": -1})
        raise AssertionError("a negative tagging_lag_seconds was accepted")
    except urllib.error.HTTPError as err:
        assert err.code == 400, err.code


def test_call_counter():
    ctl("DELETE", "/_sdop/calls")
    tagging.get_resources(TagFilters=[{"Key": KEY}], ResourcesPerPage=100)
    calls = ctl("GET", "/_sdop/calls")
    # IAM's name for the call (service prefix "tag"), counted as a read.
    assert calls["by_api"] == {"tag:GetResources": {"read": 1, "mutate": 0, "count": 1,
                                                     "faulted": 0}}, calls["by_api"]
    assert calls["total"] == {"read": 1, "mutate": 0}, calls["total"]
    log = ctl("GET", "/_sdop/calls/log")["calls"]
    assert [(c["api"], c["read"]) for c in log] == [("tag:GetResources", True)], log
    # Fault rules use the same name.
    ctl("POST", "/_sdop/faults", {"throttle": {"tag:GetResources": 1.0}})
    try:
        tagging.get_resources(TagFilters=[{"Key": KEY}])
        raise AssertionError("the throttle rule did not apply")
    except tagging.exceptions.ClientError as err:
        assert err.response["Error"]["Code"] == "ThrottlingException", err.response
    finally:
        ctl("DELETE", "/_sdop/faults")
    # IAM's refusal, as a policy without tag:GetResources gets it.
    ctl("POST", "/_sdop/faults", {"access_denied": {"tag:GetResources": 1.0}})
    try:
        tagging.get_resources(TagFilters=[{"Key": KEY}])
        raise AssertionError("the access_denied rule did not apply")
    except tagging.exceptions.ClientError as err:
        assert err.response["Error"]["Code"] == "AccessDeniedException", err.response
        assert "is not authorized to perform: tag:GetResources" in \
            err.response["Error"]["Message"], err.response
    finally:
        ctl("DELETE", "/_sdop/faults")


def main():
    run([test_every_type_listed, test_pages, test_tag_changes, test_regions, test_lag,
         test_call_counter], setup=setup)


if __name__ == "__main__":
    main()
