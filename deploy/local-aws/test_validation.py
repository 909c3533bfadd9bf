"""Self-check for request validation in the sdop local AWS emulator (local_aws_validation.py):
requests that break botocore's model are refused as AWS refuses them, valid ones still work.
boto3 runs with parameter_validation=False so that the bad requests reach the server.

    deploy/local-aws/up --install-only && deploy/local-aws/.venv/bin/python deploy/local-aws/test_validation.py
"""
import json
import sys

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

from selfcheck import HERE, URL, ctl, run

ROLE = "arn:aws:iam::123456789012:role/sdop"
TAG_PATTERN = r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"
ENV_KEY = ("[Member must have length less than or equal to 1024, Member must have length "
           "greater than or equal to 0, Member must satisfy regular expression pattern: "
           "[a-zA-Z_][a-zA-Z0-9_]*]")
ENV_VALUE = ("[Member must have length less than or equal to 1024, Member must have length "
             r"greater than or equal to 0, Member must satisfy regular expression pattern: [\S\s]*]")
TEMPLATE = json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}})


def client(service):
    return boto3.client(service, endpoint_url=URL, region_name="us-east-1",
                        aws_access_key_id="AKIDSDOPTEST", aws_secret_access_key="secret",
                        config=Config(parameter_validation=False,
                                      retries={"total_max_attempts": 1}))


sm, rt, ecr, cfn, aas = (client("sagemaker"), client("sagemaker-runtime"), client("ecr"),
                         client("cloudformation"), client("application-autoscaling"))


def refused(fn, **kw):
    """(HTTP status, error code, message) of a call that must fail."""
    try:
        fn(**kw)
    except ClientError as err:
        return (err.response["ResponseMetadata"]["HTTPStatusCode"], err.response["Error"]["Code"],
                err.response["Error"]["Message"])
    raise AssertionError(f"{fn.__name__} was not refused")


def expect(got, status, code, message):
    assert got == (status, code, message), f"\n got  {got!r}\n want {(status, code, message)!r}"


def container(env):
    return {"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/webui:1", "Environment": env}


def test_sagemaker_environment():
    long_value = "x" * 1025
    # A name that is not an environment variable name and a value over 1024 characters: both
    # constraints of botocore's sagemaker EnvironmentMap, reported at the map's path with the
    # whole map (aws/sagemaker-sparkml-serving-container#12 for AWS's wording).
    env = {"hf.cache-dir": long_value}
    expect(refused(sm.create_model, ModelName="m-env", ExecutionRoleArn=ROLE,
                   PrimaryContainer=container(env)), 400, "ValidationException",
           "2 validation errors detected: "
           f"Value '{{hf.cache-dir={long_value}}}' at 'primaryContainer.environment' failed to "
           f"satisfy constraint: Map keys must satisfy constraint: {ENV_KEY}; "
           f"Value '{{hf.cache-dir={long_value}}}' at 'primaryContainer.environment' failed to "
           f"satisfy constraint: Map value must satisfy constraint: {ENV_VALUE}")
    expect(refused(sm.create_model, ModelName="m-env", ExecutionRoleArn=ROLE,
                   PrimaryContainer=container({"HF_HOME": "/opt/ml/cache", "hf.cache-dir": "/c"})),
           400, "ValidationException",
           "1 validation error detected: Value '{HF_HOME=/opt/ml/cache, hf.cache-dir=/c}' at "
           "'primaryContainer.environment' failed to satisfy constraint: Map keys must satisfy "
           f"constraint: {ENV_KEY}")
    expect(refused(sm.create_model, ModelName="m-env", ExecutionRoleArn=ROLE,
                   PrimaryContainer=container({"HF_HOME": long_value})), 400, "ValidationException",
           f"1 validation error detected: Value '{{HF_HOME={long_value}}}' at "
           "'primaryContainer.environment' failed to satisfy constraint: Map value must satisfy "
           f"constraint: {ENV_VALUE}")
    # Refused before the operation ran: no model.
    assert sm.list_models()["Models"] == []
    sm.create_model(ModelName="m-env", ExecutionRoleArn=ROLE,
                    PrimaryContainer=container({"HF_HOME": "/opt/ml/cache", "V": "y" * 1024}))
    assert sm.describe_model(ModelName="m-env")["PrimaryContainer"]["Environment"]["V"] == "y" * 1024


def test_sagemaker_tags():
    model_arn = sm.describe_model(ModelName="m-env")["ModelArn"]
    expect(refused(sm.add_tags, ResourceArn=model_arn, Tags=[{"Key": "team", "Value": "R&D"}]),
           400, "ValidationException",
           "1 validation error detected: Value 'R&D' at 'tags.1.member.value' failed to satisfy "
           f"constraint: Member must satisfy regular expression pattern: {TAG_PATTERN}")
    sm.add_tags(ResourceArn=model_arn, Tags=[{"Key": "team", "Value": "R and D"}])
    assert sm.list_tags(ResourceArn=model_arn)["Tags"] == [{"Key": "team", "Value": "R and D"}]

    sm.create_endpoint_config(EndpointConfigName="c-tags", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "m-env", "InstanceType": "ml.g4dn.xlarge",
        "InitialInstanceCount": 1}])
    tags = [{"Key": "owner", "Value": "ml-team"}, {"Key": "team", "Value": "R&D"},
            {"Key": "course", "Value": "SD 1.5, workshop"}]
    expect(refused(sm.create_endpoint, EndpointName="e-tags", EndpointConfigName="c-tags",
                   Tags=tags), 400, "ValidationException",
           "2 validation errors detected: "
           "Value 'R&D' at 'tags.2.member.value' failed to satisfy constraint: Member must "
           f"satisfy regular expression pattern: {TAG_PATTERN}; "
           "Value 'SD 1.5, workshop' at 'tags.3.member.value' failed to satisfy constraint: "
           f"Member must satisfy regular expression pattern: {TAG_PATTERN}")
    # A tag without its required Value (botocore sagemaker Tag: required Key, Value).
    expect(refused(sm.create_endpoint, EndpointName="e-tags", EndpointConfigName="c-tags",
                   Tags=[{"Key": "owner"}]), 400, "ValidationException",
           "1 validation error detected: Value null at 'tags.1.member.value' failed to satisfy "
           "constraint: Member must not be null")
    assert sm.list_endpoints()["Endpoints"] == []
    sm.create_endpoint(EndpointName="e-tags", EndpointConfigName="c-tags",
                       Tags=[{"Key": "owner", "Value": "ml-team"},
                             {"Key": "course", "Value": "SD 1.5 workshop"}])
    assert sm.describe_endpoint(EndpointName="e-tags")["EndpointStatus"] == "Creating"


def test_missing_required_member():
    expect(refused(sm.create_model, ExecutionRoleArn=ROLE, PrimaryContainer=container({})),
           400, "ValidationException",
           "1 validation error detected: Value null at 'modelName' failed to satisfy constraint: "
           "Member must not be null")
    expect(refused(cfn.create_stack, TemplateBody=TEMPLATE), 400, "ValidationError",
           "1 validation error detected: Value null at 'stackName' failed to satisfy constraint: "
           "Member must not be null")
    expect(refused(ecr.create_repository, imageTagMutability="MUTABLE"), 400,
           "InvalidParameterException",
           "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'Member must not "
           "be null'")


def test_ecr_enum():
    expect(refused(ecr.create_repository, repositoryName="sdop/webui",
                   imageTagMutability="immutable"), 400, "InvalidParameterException",
           "Invalid parameter at 'imageTagMutability' failed to satisfy constraint: 'Member must "
           "satisfy enum value set: [IMMUTABLE, MUTABLE, MUTABLE_WITH_EXCLUSION, "
           "IMMUTABLE_WITH_EXCLUSION]'")
    assert ecr.describe_repositories()["repositories"] == []
    repo = ecr.create_repository(repositoryName="sdop/webui", imageTagMutability="IMMUTABLE")
    assert repo["repository"]["imageTagMutability"] == "IMMUTABLE"


def test_cloudformation():
    for name in ("0-sdop-models", "sdop_models"):
        expect(refused(cfn.create_stack, StackName=name, TemplateBody=TEMPLATE), 400,
               "ValidationError",
               f"1 validation error detected: Value '{name}' at 'stackName' failed to satisfy "
               "constraint: Member must satisfy regular expression pattern: "
               "[a-zA-Z][-a-zA-Z0-9]*|arn:[-a-zA-Z0-9:/._+]*")
    # botocore cloudformation TagValue: max 256; Tags: list, query protocol Tags.member.N.
    expect(refused(cfn.create_stack, StackName="sdop-models", TemplateBody=TEMPLATE,
                   Tags=[{"Key": "owner", "Value": "v" * 257}]), 400, "ValidationError",
           f"1 validation error detected: Value '{'v' * 257}' at 'tags.1.member.value' failed "
           "to satisfy constraint: Member must have length less than or equal to 256")
    expect(refused(cfn.create_stack, StackName="sdop-models", TemplateBody=TEMPLATE,
                   Capabilities=["CAPABILITY_IAM", "CAPABILITY_ADMIN"]), 400, "ValidationError",
           "1 validation error detected: Value '[CAPABILITY_IAM, CAPABILITY_ADMIN]' at "
           "'capabilities' failed to satisfy constraint: Member must satisfy constraint: "
           "[Member must satisfy enum value set: [CAPABILITY_IAM, CAPABILITY_NAMED_IAM, "
           "CAPABILITY_AUTO_EXPAND]]")
    assert cfn.describe_stacks()["Stacks"] == []
    stack = cfn.create_stack(StackName="sdop-models", TemplateBody=TEMPLATE,
                             Tags=[{"Key": "owner", "Value": "v" * 256}],
                             Capabilities=["CAPABILITY_IAM"])
    assert cfn.describe_stacks(StackName=stack["StackId"])["Stacks"][0]["StackName"] == "sdop-models"


def test_application_autoscaling():
    expect(refused(aas.register_scalable_target, ServiceNamespace="sagemakr",
                   ResourceId="endpoint/e-tags/variant/AllTraffic",
                   ScalableDimension="sagemaker:variant:DesiredInstanceCount",
                   MinCapacity=0, MaxCapacity=1), 400, "ValidationException",
           "1 validation error detected: Value 'sagemakr' at 'serviceNamespace' failed to "
           "satisfy constraint: Member must satisfy enum value set: [ecs, elasticmapreduce, ec2, "
           "appstream, dynamodb, rds, sagemaker, custom-resource, comprehend, lambda, cassandra, "
           "kafka, elasticache, neptune, workspaces]")
    aas.register_scalable_target(ServiceNamespace="sagemaker",
                                 ResourceId="endpoint/e-tags/variant/AllTraffic",
                                 ScalableDimension="sagemaker:variant:DesiredInstanceCount",
                                 MinCapacity=0, MaxCapacity=1, Tags={"owner": "ml-team"})


def test_runtime_uri_and_headers():
    # rest-json: the URI label and the headers are members too (botocore sagemaker-runtime
    # InvokeEndpointAsync); the service's error is ValidationError.
    expect(refused(rt.invoke_endpoint_async, EndpointName="e_tags", InputLocation="ftp://b/k"),
           400, "ValidationError",
           "2 validation errors detected: Value 'e_tags' at 'endpointName' failed to satisfy "
           "constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*; "
           "Value 'ftp://b/k' at 'inputLocation' failed to satisfy constraint: Member must "
           "satisfy regular expression pattern: ^(https|s3)://([^/]+)/?(.*)$")
    expect(refused(rt.invoke_endpoint_async, EndpointName="e-tags", InputLocation="s3://b/k",
                   RequestTTLSeconds=30), 400, "ValidationError",
           "1 validation error detected: Value '30' at 'requestTTLSeconds' failed to satisfy "
           "constraint: Member must have value greater than or equal to 60")
    # A valid request gets past validation to the emulator's own checks (not asynchronous).
    code, message = refused(rt.invoke_endpoint_async, EndpointName="nope",
                            InputLocation="s3://b/k")[1:]
    assert (code, message) == ("ValidationError", "Endpoint nope of account 123456789012 not found."), message


def test_counted_faulted_and_kill_point():
    ctl("DELETE", "/_sdop/calls")
    bad = dict(ModelName="m-bad", ExecutionRoleArn=ROLE, PrimaryContainer=container({"a.b": "c"}))
    refused(sm.create_model, **bad)
    log = ctl("GET", "/_sdop/calls/log")["calls"]
    assert [(c["api"], c["faulted"]) for c in log] == [("sagemaker:CreateModel", False)], log
    assert ctl("GET", "/_sdop/calls")["by_api"]["sagemaker:CreateModel"] == {
        "read": 0, "mutate": 1, "count": 1, "faulted": 0}
    # An injected fault answers first: the request never got as far as the service's checks.
    ctl("POST", "/_sdop/faults", {"throttle": {"sagemaker:CreateModel": 1.0}})
    assert refused(sm.create_model, **bad)[:2] == (400, "ThrottlingException")
    ctl("DELETE", "/_sdop/faults")
    # A refused call never reaches moto, so it is not the kill point's nth call.
    ctl("POST", "/_sdop/kill-point", {"api": "sagemaker:CreateModel", "nth": 1})
    refused(sm.create_model, **bad)
    assert ctl("GET", "/_sdop/kill-point")["seen"] == 0
    ctl("POST", "/_sdop/kill-point", {})


def test_query_unflatten():
    # The query-protocol reader against botocore's own serializer, including flattened lists
    # with a locationName (SimpleDB PutAttributes: Attribute.N.Name) and maps (SNS
    # Attributes.entry.N.key/value).
    sys.path.insert(0, HERE)
    import local_aws_validation as v
    from botocore.serialize import create_serializer
    session = botocore.session.get_session()
    cases = [("sdb", "PutAttributes", {"DomainName": "d", "ItemName": "i", "Attributes": [
                 {"Name": "a", "Value": "1", "Replace": True}, {"Name": "b", "Value": "2"}]}),
             ("sns", "CreateTopic", {"Name": "t", "Attributes": {"DisplayName": "x", "Policy": "{}"},
                                     "Tags": [{"Key": "k", "Value": "v"}]}),
             ("cloudformation", "CreateStack", {"StackName": "s", "Tags": [], "Parameters": [
                 {"ParameterKey": "P", "ParameterValue": ""}]})]
    for service, operation, params in cases:
        op = session.get_service_model(service).operation_model(operation)
        body = create_serializer("query").serialize_to_request(params, op)["body"]
        form = {k: str(val) for k, val in body.items()}
        got = v.unflatten(op.input_shape, form, "")
        want = json.loads(json.dumps(params).replace("true", '"true"'))
        assert got == want, (service, got, want)


def main():
    run([test_sagemaker_environment, test_sagemaker_tags, test_missing_required_member,
         test_ecr_enum, test_cloudformation, test_application_autoscaling,
         test_runtime_uri_and_headers, test_counted_faulted_and_kill_point,
         test_query_unflatten])


if __name__ == "__main__":
    main()
