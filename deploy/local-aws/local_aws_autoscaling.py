"""Application Auto Scaling patches of the sdop local AWS emulator: tags on scalable targets,
SageMaker endpoint variants that must exist, policies that need a registered target,
deregistration that deletes policies, and the SageMaker rules that involve scalable targets."""
import json

from moto.applicationautoscaling.exceptions import AWSValidationException
from moto.applicationautoscaling.models import (ApplicationAutoscalingBackend,
                                                _target_params_are_valid)
from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse
from moto.core.exceptions import JsonRESTError
from moto.sagemaker.models import sagemaker_backends

from local_aws_state import LOCK, patch


class ObjectNotFound(JsonRESTError):
    """ObjectNotFoundException: "For any operation that depends on the existence of a scalable
    target, this exception is thrown if the scalable target with the specified service
    namespace, resource ID, and scalable dimension does not exist. For any operation that
    deletes or deregisters a resource, this exception is thrown if the resource cannot be
    found." (Application Auto Scaling API reference, Errors)"""
    code = 400

    def __init__(self, message):
        super().__init__("ObjectNotFoundException", message)


class ResourceNotFound(JsonRESTError):
    """ResourceNotFoundException {Message, ResourceName} of the tagging APIs ("The specified
    resource doesn't exist.", botocore application-autoscaling service-2)."""
    code = 400

    def __init__(self, resource_arn):
        # The wording is the emulator's.
        super().__init__("ResourceNotFoundException",
                         f"No scalable target with ARN {resource_arn} exists.")
        self.description = json.dumps({"__type": self.error_type, "message": self.message,
                                       "ResourceName": resource_arn})


def aas_backend(account_id, region_name):
    from moto.applicationautoscaling.models import applicationautoscaling_backends
    return applicationautoscaling_backends[account_id][region_name]


def all_targets(aas):
    return [t for by_id in aas.targets.values() for t in by_id.values()]


def sagemaker_variant(resource_id):
    """endpoint/NAME/variant/VARIANT -> (NAME, VARIANT), else None (RegisterScalableTarget
    ResourceId for SageMaker endpoint variants)."""
    parts = resource_id.split("/")
    if len(parts) == 4 and parts[0] == "endpoint" and parts[2] == "variant":
        return parts[1], parts[3]
    return None


@patch(ApplicationAutoscalingBackend, "register_scalable_target")
def register_scalable_target(self, orig, namespace, r_id, dimension, min_capacity,
                             max_capacity, role_arn, suspended_state, tags=None):
    _target_params_are_valid(namespace, r_id, dimension)  # moto's shape check first
    named = sagemaker_variant(r_id) if namespace == "sagemaker" else None
    if named:
        # The endpoint variant must exist. Its status does not matter: "If the specified
        # resource is not active in the target service, this operation does not change the
        # resource's current capacity" (API_RegisterScalableTarget), so registering a Creating
        # or Updating endpoint's variant is accepted. Wording is the emulator's.
        ep = sagemaker_backends[self.account_id][self.region_name].endpoints.get(named[0])
        if ep is None or named[1] not in [v.get("VariantName") for v in ep.production_variants]:
            raise AWSValidationException(
                f"The endpoint variant {r_id} does not exist: no SageMaker endpoint "
                f"{named[0]!r} with a production variant {named[1]!r}.")
    existing = self._scalable_target_exists(r_id, dimension)
    if existing and tags:
        # RegisterScalableTarget Tags: "Use this parameter to tag the scalable target when it is
        # created. To tag an existing scalable target, use the TagResource operation." (API
        # reference); AWS's error text as reported in hashicorp/terraform-provider-aws#31839.
        raise AWSValidationException(
            "The scalable target that you tried to tag already exists. To update tags on an "
            "existing scalable target, use the TagResource API.")
    # An existing target is updated in place (same ScalableTargetARN): "To update a scalable
    # target, specify the parameters that you want to change ... Any parameters that you don't
    # specify are not changed by this update request." (API_RegisterScalableTarget)
    target = orig(self, namespace, r_id, dimension, min_capacity, max_capacity, role_arn,
                  suspended_state)
    if not existing:
        target.tags = dict(tags or {})
    return target


def no_target(namespace, resource_id, dimension):
    # AWS's text (ansible/ansible#40237, PutScalingPolicy): "No scalable target registered for
    # service namespace: dynamodb, resource ID: tablename, scalable dimension: ..."
    return ObjectNotFound(f"No scalable target registered for service namespace: {namespace}, "
                          f"resource ID: {resource_id}, scalable dimension: {dimension}")


def registered(aas, namespace, resource_id, dimension):
    target = (aas.targets.get(dimension) or {}).get(resource_id)
    return target if target is not None and target.service_namespace == namespace else None


@patch(ApplicationAutoscalingBackend, "put_scaling_policy")
def put_scaling_policy(self, orig, policy_name, service_namespace, resource_id,
                       scalable_dimension, policy_body, policy_type):
    # "You cannot create a scaling policy until you have registered the resource as a scalable
    # target." (API_PutScalingPolicy)
    if registered(self, service_namespace, resource_id, scalable_dimension) is None:
        raise no_target(service_namespace, resource_id, scalable_dimension)
    return orig(self, policy_name=policy_name, service_namespace=service_namespace,
                resource_id=resource_id, scalable_dimension=scalable_dimension,
                policy_body=policy_body, policy_type=policy_type)


@patch(ApplicationAutoscalingBackend, "deregister_scalable_target")
def deregister_scalable_target(self, orig, namespace, r_id, dimension):
    if registered(self, namespace, r_id, dimension) is None:
        raise ObjectNotFound(f"No scalable target found for service namespace: {namespace}, "
                             f"resource ID: {r_id}, scalable dimension: {dimension}")
    orig(self, namespace, r_id, dimension)
    # "Deregistering a scalable target deletes the scaling policies and the scheduled actions
    # that are associated with it." (API_DeregisterScalableTarget), with the CloudWatch alarms
    # Application Auto Scaling created for its target tracking policies.
    for key, policy in list(self.policies.items()):
        if (policy.service_namespace, policy.resource_id, policy.scalable_dimension) == \
                (namespace, r_id, dimension):
            policy.delete_alarms(self.account_id, self.region_name)
            del self.policies[key]
    self.scheduled_actions = [
        a for a in self.scheduled_actions
        if (a.service_namespace, a.resource_id, a.scalable_dimension) != (namespace, r_id, dimension)]


@patch(ApplicationAutoscalingBackend, "delete_scaling_policy")
def delete_scaling_policy(self, orig, policy_name, service_namespace, resource_id,
                          scalable_dimension):
    from moto.applicationautoscaling.models import FakeApplicationAutoscalingPolicy as Policy
    if Policy.formulate_key(service_namespace, resource_id, scalable_dimension,
                            policy_name) not in self.policies:
        # ObjectNotFoundException for a delete of a missing resource (see ObjectNotFound).
        raise ObjectNotFound(
            f"No scaling policy found for service namespace: {service_namespace}, resource ID: "
            f"{resource_id}, scalable dimension: {scalable_dimension}, policy name: {policy_name}")
    return orig(self, policy_name=policy_name, service_namespace=service_namespace,
                resource_id=resource_id, scalable_dimension=scalable_dimension)


@patch(ApplicationAutoscalingBackend, "describe_scaling_policies")
def describe_scaling_policies(self, orig, service_namespace, resource_id, scalable_dimension,
                              max_results, next_token, policy_names=None):
    # Exact ResourceId / ScalableDimension / PolicyNames filters (DescribeScalingPolicies
    # request parameters); moto matched ResourceId as a substring of the filter and ignored
    # PolicyNames.
    policies = [p for p in self.policies.values()
                if p.service_namespace == service_namespace
                and (not resource_id or p.resource_id == resource_id)
                and (not scalable_dimension or p.scalable_dimension == scalable_dimension)
                and (not policy_names or p.policy_name in policy_names)]
    start = int(next_token) if next_token else 0
    end = start + (max_results or 100)
    return (str(end) if end < len(policies) else None), policies[start:end]


def _describe_scaling_policies_response(self):
    from moto.applicationautoscaling.responses import _build_policy
    next_token, page = self.applicationautoscaling_backend.describe_scaling_policies(
        service_namespace=self._get_param("ServiceNamespace"),
        resource_id=self._get_param("ResourceId"),
        scalable_dimension=self._get_param("ScalableDimension"),
        max_results=self._get_int_param("MaxResults"),
        next_token=self._get_param("NextToken"),
        policy_names=self._get_param("PolicyNames"))
    return json.dumps({"ScalingPolicies": [_build_policy(p) for p in page],
                       "NextToken": next_token})


def _register_scalable_target_response(self):
    self._validate_params()
    target = self.applicationautoscaling_backend.register_scalable_target(
        self._get_param("ServiceNamespace"), self._get_param("ResourceId"),
        self._get_param("ScalableDimension"),
        min_capacity=self._get_int_param("MinCapacity"),
        max_capacity=self._get_int_param("MaxCapacity"),
        role_arn=self._get_param("RoleARN"),
        suspended_state=self._get_param("SuspendedState"),
        tags=self._get_param("Tags"))
    return json.dumps({"ScalableTargetARN": target.arn})


# TagResource / UntagResource / ListTagsForResource on a ScalableTargetARN ("you can use this
# operation to tag an Application Auto Scaling scalable target, but you cannot tag a scaling
# policy or scheduled action", API_TagResource); moto 5.2.5 raises NotImplementedError.
def tagged_target(self):
    with LOCK:
        resource_arn = self._get_param("ResourceARN")
        for target in all_targets(self.applicationautoscaling_backend):
            if target.arn == resource_arn:
                if not hasattr(target, "tags"):
                    target.tags = {}
                return target
        raise ResourceNotFound(resource_arn)


def _tag_resource_response(self):
    # "If you specify an existing tag key with a different tag value, Application Auto Scaling
    # replaces the current tag value with the specified one." (TagResource Tags)
    tagged_target(self).tags.update(self._get_param("Tags") or {})
    return json.dumps({})


def _untag_resource_response(self):
    target = tagged_target(self)
    for key in self._get_param("TagKeys") or []:
        target.tags.pop(key, None)
    return json.dumps({})


def _list_tags_for_resource_response(self):
    return json.dumps({"Tags": dict(tagged_target(self).tags)})


ApplicationAutoScalingResponse.register_scalable_target = _register_scalable_target_response
ApplicationAutoScalingResponse.describe_scaling_policies = _describe_scaling_policies_response
ApplicationAutoScalingResponse.tag_resource = _tag_resource_response
ApplicationAutoScalingResponse.untag_resource = _untag_resource_response
ApplicationAutoScalingResponse.list_tags_for_resource = _list_tags_for_resource_response


def deregister_endpoint_targets(be, endpoint_name):
    """DeleteEndpoint: "If you delete an endpoint, Application Auto Scaling checks to see whether
    any of the models on that endpoint are targets for auto scaling. If any are and you have
    permission to deregister the model, Application Auto Scaling deregisters those models as
    scalable targets without notifying you." (developer guide, endpoint-delete-with-scaling)"""
    aas = aas_backend(be.account_id, be.region_name)
    for target in all_targets(aas):
        named = sagemaker_variant(target.resource_id)
        if target.service_namespace == "sagemaker" and named and named[0] == endpoint_name:
            aas.deregister_scalable_target(target.service_namespace, target.resource_id,
                                           target.scalable_dimension)


def autoscaled_instance_type_changes(be, ep, cfg):
    """Variants of `ep` registered as scalable targets whose InstanceType `cfg` changes:
    "If the update would change the instance type for any model that is a target for auto
    scaling, the update fails." (developer guide, endpoint-scaling-update)"""
    old = be.endpoint_configs.get(ep.endpoint_config_name)
    if old is None:
        return []
    old_types = {v.get("VariantName"): v.get("InstanceType") for v in old.production_variants}
    new_types = {v.get("VariantName"): v.get("InstanceType") for v in cfg.production_variants}
    changed = []
    for target in all_targets(aas_backend(be.account_id, be.region_name)):
        named = sagemaker_variant(target.resource_id)
        if target.service_namespace != "sagemaker" or not named or named[0] != ep.endpoint_name:
            continue
        variant = named[1]
        # A variant the new config drops is not checked: the guide only says deregistering is
        # "required" for it, not that UpdateEndpoint fails.
        if variant in new_types and old_types.get(variant) != new_types[variant]:
            changed.append(variant)
    return sorted(set(changed))
