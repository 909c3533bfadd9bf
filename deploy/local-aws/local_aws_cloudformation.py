"""CloudFormation patches of the sdop local AWS emulator: stack status lifecycles, failed
resources failing their stack, Lambda code that must exist, UpdateStack while in progress,
parameters and capabilities as AWS reports them, nested stack outputs, TemplateURL on
127.0.0.1."""
import threading
import time

import moto.cloudformation.responses as cfn_responses
import moto.cloudformation.parsing as cfn_parsing
from moto.cloudformation.models import CloudFormationBackend, Event, cloudformation_backends
from moto.core.utils import utcnow

from local_aws_state import FINISH, TRACK, dur, patch


def finish_stack(e):
    stack = e["obj"]
    if stack.status == e["phase"] + "_IN_PROGRESS":  # not deleted meanwhile
        stack.status = e["phase"] + "_COMPLETE"
        stack._add_stack_event(stack.status)


FINISH["stack"] = finish_stack


def track_stack(stack, phase):
    if stack.status == phase + "_COMPLETE" and dur("stack_seconds") > 0:
        if stack.events and stack.events[-1].resource_status == stack.status:
            stack.events.pop()
        stack.status = phase + "_IN_PROGRESS"
        TRACK[stack.stack_id] = {"kind": "stack", "phase": phase, "obj": stack,
                                 "until": time.time() + dur("stack_seconds")}
    return stack


CREATING = threading.local()


class _NoOutputs(dict):
    exports = []


# A stack's failure as AWS reports it in DescribeStackEvents ("Returns all stack related events
# for a specified stack in reverse chronological order", API_DescribeStackEvents): each resource
# has its own events (LogicalResourceId, ResourceType, ResourceStatus, ResourceStatusReason),
# and "From this list, find the failure event and then view the status reason for that event"
# (UserGuide/troubleshooting.html, "Troubleshooting guide"). The resource that fails has
# CREATE_FAILED with the service's error as its reason; the stack then rolls back
# (ROLLBACK_IN_PROGRESS "The following resource(s) failed to create: [X]. ", its resources
# deleted, ROLLBACK_COMPLETE; API_CreateStack, OnFailure: "ROLLBACK" is the default). A nested
# stack (AWS::CloudFormation::Stack) rolls back on its own and its parent records the nested
# stack resource as CREATE_FAILED "Embedded stack <nested stack ARN> was not successfully
# created: <the nested stack's reason>", then rolls back too, deleting the nested stack; the
# nested stack's events stay readable by its stack ID ("You can list events for stacks that
# have failed to create or have been deleted by specifying the unique stack identifier (stack
# ID)", API_DescribeStackEvents). The messages are AWS's as CloudFormation prints them
# (quoted in aws/aws-cdk#5974, aws/aws-cdk#14812: "Embedded stack arn:aws:cloudformation:...
# was not successfully created: The following resource(s) failed to create: [CDKMetadata,
# TestAppBucket59492B1A]."). moto 5.2.5 records only the stack's own events and raised the
# resource's error out of CreateStack; a nested stack's failure reached the parent only as the
# raw error, with neither the nested stack nor the resource named.
def _reason(err):
    return getattr(err, "message", None) or " ".join(map(str, err.args)) or repr(err)


def _resource_event(stack, logical_id, resource_type, status, reason=None, physical=None):
    stack.events.append(Event(
        stack_id=stack.stack_id, stack_name=stack.name, logical_resource_id=logical_id,
        physical_resource_id=physical, resource_type=resource_type, resource_status=status,
        resource_status_reason=reason, resource_properties=None))


def _creating_stack(resources_map, account_id, region_name):
    return cloudformation_backends[account_id][region_name].stacks.get(resources_map.stack_id)


_orig_parse_and_create_resource = cfn_parsing.parse_and_create_resource


def _parse_and_create_resource(logical_id, resource_json, resources_map, account_id,
                               region_name):
    stack = _creating_stack(resources_map, account_id, region_name)
    resource_type = resource_json.get("Type") if isinstance(resource_json, dict) else None
    try:
        resource = _orig_parse_and_create_resource(logical_id, resource_json, resources_map,
                                                   account_id, region_name)
    except Exception as err:  # noqa: BLE001 - any resource's failure, raised on unchanged
        if stack is None or getattr(err, "sdop_failed", (None,))[0] == stack.stack_id:
            raise  # a resource this one depends on failed: this one never started
        nested = getattr(err, "sdop_stack", None)
        _resource_event(stack, logical_id, resource_type, "CREATE_IN_PROGRESS")
        if nested is not None and resource_type == "AWS::CloudFormation::Stack":
            nested.sdop_logical_id = logical_id
            stack.sdop_failed_nested = [*getattr(stack, "sdop_failed_nested", []), nested]
            _resource_event(stack, logical_id, resource_type, "CREATE_FAILED",
                            f"Embedded stack {nested.stack_id} was not successfully created: "
                            f"{nested.sdop_failure}", nested.stack_id)
        else:
            _resource_event(stack, logical_id, resource_type, "CREATE_FAILED", _reason(err))
        err.sdop_failed = (stack.stack_id, logical_id)
        raise
    if stack is not None and resource is not None:
        try:
            physical = resource.physical_resource_id
        except Exception:  # noqa: BLE001 - a moto model without one
            physical = None
        _resource_event(stack, logical_id, resource_type, "CREATE_IN_PROGRESS")
        _resource_event(stack, logical_id, resource_type, "CREATE_COMPLETE",
                        physical=physical if isinstance(physical, str) else None)
    return resource


cfn_parsing.parse_and_create_resource = _parse_and_create_resource


def _roll_back(backend, stack):
    """Deletes what the failed create made: the resources, and the nested stacks that failed
    (already rolled back themselves; not among the resources, their creation having raised)."""
    resource_map = stack.resource_map
    created = [(k, resource_map._resource_json_map[k].get("Type"))
               for k in resource_map._resource_json_map
               if not isinstance(resource_map._parsed_resources.get(k), (str, type(None)))]
    created += [(n.sdop_logical_id, "AWS::CloudFormation::Stack")
                for n in getattr(stack, "sdop_failed_nested", [])]
    for logical_id, resource_type in created:
        _resource_event(stack, logical_id, resource_type, "DELETE_IN_PROGRESS")
    resource_map.delete()
    for nested in getattr(stack, "sdop_failed_nested", []):
        backend.delete_stack(nested.stack_id)
    for logical_id, resource_type in created:
        _resource_event(stack, logical_id, resource_type, "DELETE_COMPLETE")


@patch(CloudFormationBackend, "create_stack")
def create_stack(self, orig, *a, **kw):
    # AWS reports a resource that fails to create in the stack's events and rolls the stack back
    # (ROLLBACK_COMPLETE for a first create), not as an error of CreateStack; moto raises out of
    # CreateStack. A nested stack's failure fails its parent, so it is raised up to the top.
    depth = getattr(CREATING, "depth", 0)
    CREATING.depth = depth + 1
    try:
        return track_stack(orig(self, *a, **kw), "CREATE")
    except Exception as err:  # noqa: BLE001 - any resource's failure
        name = kw.get("name", a[0] if a else None)
        stack = next((st for st in self.stacks.values() if st.name == name), None)
        if stack is None:
            raise
        failed = getattr(err, "sdop_failed", None)
        if failed and failed[0] == stack.stack_id:
            failure = f"The following resource(s) failed to create: [{failed[1]}]. "
        else:  # not a resource's failure (moto's parameters, outputs): the stack's own
            failure = _reason(err)
            stack._add_stack_event("CREATE_FAILED", resource_status_reason=failure)
        # A failed stack has no outputs (moto would evaluate them, creating the failed
        # resource again on every DescribeStacks).
        stack.output_map = _NoOutputs()
        stack.status = "ROLLBACK_IN_PROGRESS"
        stack._add_stack_event("ROLLBACK_IN_PROGRESS", resource_status_reason=failure + (
            "" if depth else "Rollback requested by user."))
        try:
            _roll_back(self, stack)
        except Exception as rollback_err:  # noqa: BLE001 - a resource AWS could not delete
            stack.status = "ROLLBACK_FAILED"
            stack._add_stack_event("ROLLBACK_FAILED", resource_status_reason=_reason(rollback_err))
        else:
            stack.status = "ROLLBACK_COMPLETE"
            stack._add_stack_event("ROLLBACK_COMPLETE")
        if depth:
            stack.sdop_failure = failure
            err.sdop_stack = stack
            raise
        return stack
    finally:
        CREATING.depth = depth


# AWS fails a Lambda function or layer whose code is not at Code.S3Bucket/S3Key ("Error
# occurred while GetObject. S3 Error Code: NoSuchKey"): the all-in-one-ai LAMBDA stack fails
# when a codes/<name>.zip is missing. moto's S3 get_object returns None instead of raising
# MissingKey, so moto created the function with empty code.
import moto.awslambda.models as lambda_models  # noqa: E402

_orig_validate_code = lambda_models._validate_s3_bucket_and_key


def _validate_code(account_id, partition, data):
    key = _orig_validate_code(account_id, partition, data)
    if key is None and lambda_models.do_validate_s3():
        raise lambda_models.InvalidParameterValueException(
            "Error occurred while GetObject. S3 Error Code: NoSuchKey. S3 Error Message: "
            f"The specified key does not exist. (s3://{data.get('S3Bucket')}/{data.get('S3Key')})")
    return key


lambda_models._validate_s3_bucket_and_key = _validate_code


@patch(CloudFormationBackend, "update_stack")
def update_stack(self, orig, name, *a, **kw):
    stack = self.get_stack(name)
    if stack.status.endswith("_IN_PROGRESS"):
        raise cfn_responses.ValidationError(
            name, f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated.")
    stack = orig(self, name, *a, **kw)
    # "LastUpdatedTime: The time the stack was last updated. This field will only be returned
    # if the stack has been updated at least once." (botocore cloudformation model, Stack;
    # API_Stack). moto 5.2.5 never sets it. sdop reads nested stacks' outputs again when it
    # changes.
    stack.last_updated_time = utcnow()
    return track_stack(stack, "UPDATE")


# AWS reports List<...> parameters comma-joined (moto: a Python list repr) and keeps the
# stack's Capabilities (moto: drops them). sdop compares both with its manifests.
from moto.cloudformation.models import Stack as _Stack  # noqa: E402

_orig_parameter_list = _Stack.parameter_list.fget
_Stack.parameter_list = property(lambda self: [
    dict(p, ParameterValue=",".join(map(str, p["ParameterValue"])))
    if isinstance(p.get("ParameterValue"), list) else p
    for p in _orig_parameter_list(self)])


def _keep_capabilities(method):
    orig = getattr(cfn_responses.CloudFormationResponse, method)

    def wrapper(self):
        result = orig(self)
        stack = self.cloudformation_backend.get_stack(self._get_param("StackName"))
        stack.capabilities = sorted(self._get_param("Capabilities", []) or [])
        return result
    setattr(cfn_responses.CloudFormationResponse, method, wrapper)


_keep_capabilities("create_stack")
_keep_capabilities("update_stack")

# A nested stack's physical ID is its stack ID, an ARN: the AWS::CloudFormation::Stack resource
# is identified by its StackId (the resource schema's identifier, "The StackId of the Stack
# resource", aws-cdk-lib aws_cloudformation.StackReference generated from it), as the nested
# stack's events and ListStackResources report it; AWS's own CDK reads a nested stack's events
# with DescribeStackEvents(StackName=<the event's PhysicalResourceId>) (aws-cdk
# stack-event-poller.ts, trackNestedStack), and once the nested stack is deleted only its stack
# ID finds it (API_DescribeStackEvents, StackName). moto 5.2.5 reports the nested stack's name.
_Stack.physical_resource_id = property(lambda self: self.stack_id)

# `!GetAtt NESTED.Outputs.NAME` (and `${NESTED.Outputs.NAME}` in !Sub): AWS returns a nested
# stack's output (AWS::CloudFormation::Stack return values, "Outputs.NestedStackOutputName");
# moto passes only "Outputs" to the nested stack and gets nothing. The all-in-one-ai main
# template (deployment/templates/all-in-one-ai-webui-main.yaml) wires its nested stacks so.

_orig_clean_json = cfn_parsing.clean_json


def _clean_json(resource_json, resources_map):
    if isinstance(resource_json, dict) and "Fn::GetAtt" in resource_json:
        att = resource_json["Fn::GetAtt"]
        parts = [att[0], *str(att[1]).split("."), *att[2:]] if len(att) >= 2 else att
        if len(parts) == 3 and parts[1] == "Outputs":
            try:
                nested = resources_map[parts[0]]
            except Exception:  # noqa: BLE001 - moto's own GetAtt reports the bad reference
                nested = None
            if isinstance(nested, _Stack):
                outputs = {o["OutputKey"]: o["OutputValue"] for o in nested.outputs or []}
                if parts[2] not in outputs:
                    raise cfn_responses.ValidationError(
                        nested.name, f"nested stack {parts[0]} has no output {parts[2]}")
                return outputs[parts[2]]
    return _orig_clean_json(resource_json, resources_map)


cfn_parsing.clean_json = _clean_json

_orig_s3_url = cfn_responses.get_stack_from_s3_url
cfn_responses.get_stack_from_s3_url = lambda url, **kw: _orig_s3_url(
    url.replace("//127.0.0.1", "//localhost"), **kw)  # moto only path-parses "localhost"


# UpdateStack that changes only the stack's tags is an update: "Key-value pairs to associate
# with this stack. CloudFormation also propagates these tags to supported resources in the
# stack. ... If you don't specify this parameter, CloudFormation doesn't modify the stack's
# tags. If you specify an empty value, CloudFormation removes all associated tags."
# (API_UpdateStack, Tags). moto 5.2.5 (moto/cloudformation/responses.py
# _validate_different_update) compares only the template and the parameters and answers "No
# updates are to be performed." to a tag-only change, which then never happens.
_orig_validate_different_update = cfn_responses.CloudFormationResponse._validate_different_update


def _validate_different_update(self, incoming_params, stack_body, old_stack):
    tags = {t["Key"]: t["Value"] for t in self._get_param("Tags", []) or []}
    if tags and tags != (old_stack.tags or {}):
        return None
    return _orig_validate_different_update(self, incoming_params, stack_body, old_stack)


cfn_responses.CloudFormationResponse._validate_different_update = _validate_different_update
