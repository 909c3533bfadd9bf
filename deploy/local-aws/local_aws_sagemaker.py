"""SageMaker patches of the sdop local AWS emulator: endpoint and training job lifecycles
(Creating -> InService, Updating with rollback, Deleting; InProgress with secondary statuses,
Stopping), UpdateEndpoint, StopTrainingJob, AWS's duplicate-name errors, tag upsert and the
Model Registry (model package groups and versions). Each
rule names its source in a comment (AWS API reference / developer guide, botocore's model or
the all-in-one-ai sources modelled in containers.py)."""
import time

from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.ecr.models import ecr_backends
from moto.s3.models import s3_backends
from moto.sagemaker.exceptions import ConflictException, ResourceInUseException, ValidationError
from moto.sagemaker.models import ModelPackage, ModelPackageGroup, SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

import containers  # the all-in-one-ai images' contract (containers.py beside this file)
from local_aws_autoscaling import autoscaled_instance_type_changes, deregister_endpoint_targets
from local_aws_state import (CONFIG, FAULTS, FINISH, LOCK, PROGRESS, ROLLOUTS, TRACK, dur,
                             patch)


# ------------------------------------------------- lifecycles (ended by local_aws_state.advance)
def finish_endpoint(e):
    ep, be = e["obj"], e["backend"]
    if e["phase"] == "delete":
        if be.endpoints.get(ep.endpoint_name) is ep:
            del be.endpoints[ep.endpoint_name]
        deregister_endpoint_targets(be, ep.endpoint_name)  # registered while Deleting
        return
    fail = e.get("fail") or start_variants(ep, be, e.get("config") or ep.endpoint_config_name)
    if e["phase"] == "create" and fail:
        ep.endpoint_status, ep.failure_reason = "Failed", fail
        ep.last_modified_time = utcnow()
        return
    if e["phase"] == "update":
        alarm = None if fail else tripped_alarm(be, e.get("alarms") or [])
        if alarm:
            # The exact FailureReason text AWS writes is not pinned here; sdop reads only that
            # one is set while the endpoint is InService on the old config.
            fail = f"Rolled back: CloudWatch alarm {alarm} went into ALARM during the update"
        rollout = next((r for r in reversed(ROLLOUTS.get(ep.endpoint_name, []))
                        if r["config"] == e["config"]), None)
        if rollout is not None:
            rollout["outcome"] = f"rolled back: {fail}" if fail else "completed"
        if fail:
            ep.failure_reason = fail  # rollback: old config stays
        else:
            ep.endpoint_config_name = e["config"]
            ep.production_variants = ep._process_production_variants(e["variants"])
            ep.failure_reason = None
    ep.endpoint_status = "InService"
    ep.last_modified_time = utcnow()


def start_variants(ep, be, config_name):
    """Starts the inference image of every variant's model; the first FailureReason, if any."""
    cfg = be.endpoint_configs.get(config_name)
    s3 = s3_backends[be.account_id][be.partition]
    for variant in (cfg.production_variants if cfg else []):
        model = be._models.get(variant.get("ModelName"))
        if model is not None:
            reason = containers.start_inference(ep.endpoint_name, model, s3, ecr_backends,
                                                be.account_id,
                                                CONFIG["external_image_revision"])
            if reason:
                return reason
    return None


SECONDARY = [(0.1, "Starting", "Preparing the instances for training"),
             (0.2, "Downloading", "Downloading input data"),
             (0.9, "Training", "Training image download completed. Training in progress."),
             (1.0, "Uploading", "Uploading generated training model")]


def set_secondary(job, status, message):
    if job.secondary_status == status:
        return
    now = utcnow()
    if job.secondary_status_transitions:
        job.secondary_status_transitions[-1]["EndTime"] = now
    job.secondary_status_transitions.append(
        {"Status": status, "StartTime": now, "StatusMessage": message})
    job.secondary_status = status
    job.last_modified_time = now


def secondary_progress(e, now):
    frac = (now - e["start"]) / max(e["until"] - e["start"], 1e-9)
    for limit, status, message in SECONDARY:
        if frac < limit:
            if status != "Starting" and e["obj"].training_start_time is None:
                e["obj"].training_start_time = utcnow()
            return set_secondary(e["obj"], status, message)


def finish_training(e):
    job = e["obj"]
    if e["phase"] == "stop":
        job.training_job_status = "Stopped"
        set_secondary(job, "Stopped", "The job was stopped")
    else:
        fails = FAULTS.get("fail_training_jobs") or {}
        reason = fails.get(job.training_job_name) or fails.get("*")
        if not reason:
            s3 = s3_backends[e["backend"].account_id][job.arn.split(":")[1]]
            outcome, reason = containers.run_training(
                job, s3, int(CONFIG["checkpoint_bytes"]), FAULTS)
        if reason:
            job.training_job_status, job.failure_reason = "Failed", reason
            set_secondary(job, "Failed", reason)
        else:
            job.training_job_status = "Completed"
            job.model_artifacts = e["artifacts"]
            set_secondary(job, "Completed", "Training job completed")
    job.training_start_time = job.training_start_time or utcnow()
    job.training_end_time = utcnow()
    job.secondary_status_transitions[-1]["EndTime"] = job.training_end_time



def training_progress(e, now):
    if e["phase"] == "train":
        secondary_progress(e, now)


FINISH.update({"endpoint": finish_endpoint, "training": finish_training})
PROGRESS["training"] = training_progress


# ---------------------------------------------------- SageMaker backend patches
def arn(be, kind, name):
    return f"arn:{be.partition}:sagemaker:{be.region_name}:{be.account_id}:{kind}/{name}"


@patch(SageMakerModelBackend, "create_model")
def create_model(self, orig, model_name, **kw):
    if model_name in self._models:
        raise ValidationError(
            f'Cannot create already existing model "{arn(self, "model", model_name)}".')
    return orig(self, model_name=model_name, **kw)


@patch(SageMakerModelBackend, "create_endpoint_config")
def create_endpoint_config(self, orig, endpoint_config_name, **kw):
    if endpoint_config_name in self.endpoint_configs:
        a = arn(self, "endpoint-config", endpoint_config_name)
        raise ValidationError(f'Cannot create already existing endpoint configuration "{a}".')
    return orig(self, endpoint_config_name=endpoint_config_name, **kw)


@patch(SageMakerModelBackend, "create_endpoint")
def create_endpoint(self, orig, endpoint_name, endpoint_config_name, tags):
    if endpoint_name in self.endpoints:
        a = arn(self, "endpoint", endpoint_name)
        raise ValidationError(f'Cannot create already existing endpoint "{a}".')
    ep = orig(self, endpoint_name, endpoint_config_name, tags)
    ep.data_capture_config = ep.data_capture_config or None
    ep.endpoint_status = "Creating"
    TRACK[ep.arn] = {"kind": "endpoint", "phase": "create", "obj": ep, "backend": self,
                     "until": time.time() + dur("endpoint_create_seconds")}
    return ep


def traffic_steps(deployment, variants):
    """The traffic-shifting steps of a blue/green update (SageMaker developer guide, "Use
    canary / linear / all at once traffic shifting"): a canary step then the rest; linear steps
    of LinearStepSize until all traffic moved; one step for all at once (also the default)."""
    routing = ((deployment or {}).get("BlueGreenUpdatePolicy") or {}).get(
        "TrafficRoutingConfiguration") or {"Type": "ALL_AT_ONCE"}
    count = sum(int(v.get("InitialInstanceCount") or 1) for v in variants) or 1

    def percent(size):
        if size["Type"] == "CAPACITY_PERCENT":
            return int(size["Value"])
        return min(100, int(size["Value"]) * 100 // count)
    kind = routing.get("Type")
    if kind == "CANARY":
        if not routing.get("CanarySize"):
            raise ValidationError("CanarySize is required for CANARY traffic routing.")
        return [f"{percent(routing['CanarySize'])}%", "100%"]
    if kind == "LINEAR":
        if not routing.get("LinearStepSize"):
            raise ValidationError("LinearStepSize is required for LINEAR traffic routing.")
        step, steps, done = percent(routing["LinearStepSize"]), [], 0
        while done < 100:
            done = min(100, done + max(step, 1))
            steps.append(f"{done}%")
        return steps
    if kind not in ("ALL_AT_ONCE", None):
        raise ValidationError(f"Value '{kind}' at 'trafficRoutingConfiguration.type' failed to "
                              "satisfy constraint: Member must satisfy enum value set: "
                              "[ALL_AT_ONCE, CANARY, LINEAR]")
    return ["100%"]


def update_endpoint(self, endpoint_name, endpoint_config_name, deployment_config=None):
    with LOCK:
        ep = self.endpoints.get(endpoint_name)
        if ep is None:
            raise ValidationError(
                f'Could not find endpoint "{arn(self, "endpoint", endpoint_name)}".')
        if ep.endpoint_status != "InService":
            raise ValidationError(f'Cannot update in-progress endpoint "{ep.arn}".')
        cfg = self.endpoint_configs.get(endpoint_config_name)
        if cfg is None:
            a = arn(self, "endpoint-config", endpoint_config_name)
            raise ValidationError(f'Could not find endpoint configuration "{a}".')
        changed = autoscaled_instance_type_changes(self, ep, cfg)
        if changed:
            # Rule and source in autoscaled_instance_type_changes; the wording is the emulator's.
            raise ValidationError(
                f"The variant(s) {changed} of endpoint \"{ep.arn}\" are registered as scalable "
                "targets with Application Auto Scaling and the update changes their instance "
                "type. Deregister them (DeregisterScalableTarget) before the update.")
        steps = traffic_steps(deployment_config, cfg.production_variants)
        fail = FAULTS.pop("fail_next_update_endpoint", None)
        ep.endpoint_status, ep.last_modified_time = "Updating", utcnow()
        if deployment_config:
            ep.last_deployment_config = deployment_config  # DescribeEndpoint's LastDeploymentConfig
        alarms = [a["AlarmName"] for a in
                  ((deployment_config or {}).get("AutoRollbackConfiguration") or {}).get("Alarms")
                  or []]
        ROLLOUTS.setdefault(endpoint_name, []).append(
            {"config": endpoint_config_name, "steps": steps, "alarms": alarms, "outcome": None})
        TRACK[ep.arn] = {"kind": "endpoint", "phase": "update", "obj": ep, "backend": self,
                         "config": endpoint_config_name, "fail": fail, "alarms": alarms,
                         "variants": list(cfg.production_variants),
                         "until": time.time() + dur("endpoint_update_seconds")}
        return ep.arn


def tripped_alarm(be, alarms):
    """The first auto-rollback alarm in ALARM (moto's CloudWatch), if any: "If any of the
    pre-specified alarms trip during any baking period, then all endpoint traffic rolls back to
    the blue fleet" (developer guide, "Blue/Green Deployments")."""
    from moto.cloudwatch.models import cloudwatch_backends
    cw = cloudwatch_backends[be.account_id][be.region_name]
    for name in alarms:
        alarm = cw.alarms.get(name)
        if alarm is not None and alarm.state_value == "ALARM":
            return name
    return None


SageMakerModelBackend.update_endpoint = update_endpoint


@patch(SageMakerModelBackend, "delete_endpoint")
def delete_endpoint(self, orig, endpoint_name):
    ep = self.endpoints.get(endpoint_name)
    if ep is None:
        return orig(self, endpoint_name)  # moto's not-found error
    deregister_endpoint_targets(self, endpoint_name)
    if ep.endpoint_status != "Deleting":
        ep.endpoint_status, ep.last_modified_time = "Deleting", utcnow()
        TRACK[ep.arn] = {"kind": "endpoint", "phase": "delete", "obj": ep, "backend": self,
                         "until": time.time() + dur("endpoint_delete_seconds")}


@patch(SageMakerModelBackend, "update_endpoint_weights_and_capacities")
def update_endpoint_weights_and_capacities(self, orig, endpoint_name,
                                           desired_weights_and_capacities):
    # "When it receives the request, SageMaker sets the endpoint status to Updating. After
    # updating the endpoint, it sets the status to InService" (API_UpdateEndpointWeightsAndCapacities),
    # and LastModifiedTime is "a timestamp that shows when the endpoint was last modified"
    # (botocore sagemaker service-2 DescribeEndpointOutput and EndpointSummary): the update
    # modifies it, so the time moves (moto 5.2.5 leaves it). AWS states the status change, not
    # the time itself: this is read from those two texts. It is what Application Auto Scaling
    # calls to scale a variant, down to zero included.
    arn = orig(self, endpoint_name, desired_weights_and_capacities)
    self.endpoints[endpoint_name].last_modified_time = utcnow()
    return arn


@patch(SageMakerModelBackend, "create_training_job")
def create_training_job(self, orig, training_job_name, **kw):
    if training_job_name in self.training_jobs:
        raise ResourceInUseException(
            "Training job names must be unique within an AWS account and region, and a "
            "training job with this name already exists "
            f"({arn(self, 'training-job', training_job_name)})")
    job = orig(self, training_job_name=training_job_name, **kw)
    artifacts, job.model_artifacts = job.model_artifacts, None
    job.training_job_status, job.secondary_status = "InProgress", None
    job.training_start_time = job.training_end_time = None
    job.secondary_status_transitions, job.final_metric_data_list = [], None
    set_secondary(job, *SECONDARY[0][1:])
    now = time.time()
    TRACK[job.arn] = {"kind": "training", "phase": "train", "obj": job, "backend": self,
                      "start": now, "until": now + dur("training_seconds"),
                      "artifacts": artifacts}
    return job


def stop_training_job(self, training_job_name):
    with LOCK:
        job = self.training_jobs.get(training_job_name)
        if job is None:
            a = arn(self, "training-job", training_job_name)
            raise ValidationError(f"Could not find training job '{a}'.")
        if job.training_job_status != "InProgress":
            raise ValidationError("The request was rejected because the training job is "
                                  f"in status {job.training_job_status}.")
        job.training_job_status = "Stopping"
        set_secondary(job, "Stopping", "Stopping the training job")
        TRACK[job.arn] = {"kind": "training", "phase": "stop", "obj": job, "backend": self,
                          "until": time.time() + dur("training_stop_seconds")}


SageMakerModelBackend.stop_training_job = stop_training_job


def tagged(self, resource_arn):
    res = self._get_resource_from_arn(resource_arn)
    if res is None:
        raise ValidationError(f"Could not find resource {resource_arn}")
    return res


@patch(SageMakerModelBackend, "add_tags")
def add_tags(self, orig, resource_arn, tags):
    res, new = tagged(self, resource_arn), {t["Key"]: t for t in tags or []}
    res.tags = [new.pop(t["Key"], t) for t in res.tags] + list(new.values())
    return res.tags


@patch(SageMakerModelBackend, "list_tags")
def list_tags(self, orig, **kw):
    tagged(self, kw["arn"])
    return orig(self, **kw)


@patch(SageMakerModelBackend, "delete_tags")
def delete_tags(self, orig, resource_arn, tag_keys):
    res = tagged(self, resource_arn)
    res.tags = [t for t in res.tags if t["Key"] not in (tag_keys or [])]


def _update_endpoint_response(self):
    return ActionResult({"EndpointArn": self.sagemaker_backend.update_endpoint(
        self._get_param("EndpointName"), self._get_param("EndpointConfigName"),
        self._get_param("DeploymentConfig"))})


def _stop_training_job_response(self):
    self.sagemaker_backend.stop_training_job(self._get_param("TrainingJobName"))
    return EmptyResult()


SageMakerResponse.update_endpoint = _update_endpoint_response
SageMakerResponse.stop_training_job = _stop_training_job_response


# ------------------------------------------------------------------------ Model Registry
# Model package groups and versioned model packages (moto 5.2.5 has Create/Describe/List for
# both and UpdateModelPackage; no DeleteModelPackage, no DeleteModelPackageGroup). Sources:
# - API reference and botocore's sagemaker service-2.json (the shapes and their documentation);
# - developer guide "Model Registry Models, Model Versions, and Model Groups"
#   (https://docs.aws.amazon.com/sagemaker/latest/dg/model-registry-models.html), "View the
#   Details of a Model Version" (model-registry-details.html: AWS's own ListModelPackages and
#   DescribeModelPackage output) and the Model Registry FAQ (modelregistryfaq.html), read in
#   awsdocs/amazon-sagemaker-developer-guide (doc_source/, 9e8dd3d3);
# - AWS's answers quoted in public code, named at each rule.
TAGS_ON_VERSIONS = ("Tags are not supported in Model Package versions. Please add them to the "
                    "Model Package Group.")


def _name_of(arn_or_name):
    """ArnOrName (botocore): `arn:aws:sagemaker:REGION:ACCOUNT:TYPE/NAME` or NAME."""
    return arn_or_name.rsplit("/", 1)[-1] if arn_or_name.startswith("arn:") else arn_or_name


def _package(self, name):
    """A model package by VersionedArnOrName: its ARN, `GROUP/VERSION` (a versioned package's
    name: "automatically generated by SageMaker Model Registry and follows the format
    'ModelPackageGroupName/ModelPackageVersion'", botocore ModelPackage.ModelPackageName) or an
    unversioned package's name. Missing: AWS's answer, "ModelPackage
    arn:aws:sagemaker:us-west-2:ACCOUNT:model-package/NAME does not exist." (ValidationException
    to DescribeModelPackage, quoted in a public README, kyopark2014's llama3 RAG notes)."""
    if name.startswith("arn:"):
        a = name
    elif "/" in name:
        a = arn(self, "model-package", name)
    else:
        a = self.model_package_name_mapping.get(name) or arn(self, "model-package", name)
    pkg = self.model_packages.get(a)
    if pkg is None:
        raise ValidationError(f"ModelPackage {a} does not exist.")
    return pkg


@patch(SageMakerModelBackend, "create_model_package_group")
def create_model_package_group(self, orig, model_package_group_name, **kw):
    # moto replaced an existing group (and orphaned its versions). AWS: ValidationException
    # "Model Package Group already exists: ARN" (the message AWS's CloudFormation provider
    # aws-cloudformation-resource-providers-sagemaker matches, ExceptionMapper.java and its test
    # constant MODEL_PACKAGE_GROUP_ALREADY_EXISTS_ERROR_MESSAGE).
    if model_package_group_name in self.model_package_groups:
        a = self.model_package_groups[model_package_group_name].arn
        raise ValidationError(f"Model Package Group already exists: {a}")
    return orig(self, model_package_group_name=model_package_group_name, **kw)


def _group_response(self, orig=ModelPackageGroup.gen_response_object):
    # DescribeModelPackageGroupOutput requires CreatedBy (botocore); moto left it out.
    return {**orig(self), "CreatedBy": self.created_by}


ModelPackageGroup.gen_response_object = _group_response


@patch(SageMakerModelBackend, "describe_model_package_group")
def describe_model_package_group(self, orig, model_package_group_name):
    # ArnOrName: a group's ARN names it too (moto looked the ARN up as a name).
    return orig(self, _name_of(model_package_group_name))


@patch(SageMakerModelBackend, "create_model_package")
def create_model_package(self, orig, **kw):
    group, name = kw.get("model_package_group_name"), kw.get("model_package_name")
    token = kw.get("client_token")
    tokens = self.__dict__.setdefault("_sdop_client_tokens", {})
    # ClientToken: "A unique token that guarantees that the call to this API is idempotent"
    # (botocore CreateModelPackageInput): the same token answers the package it created (moto
    # stored it and created another). How long AWS remembers a token is not documented; here,
    # as long as the package exists.
    if token and tokens.get(token) in self.model_packages:
        return tokens[token]
    # moto's messages without the client's "An error occurred (...) when calling ..." prefix,
    # which moto had put into the message itself (moto PR #7165 quotes them as AWS's).
    if group and name:
        raise ValidationError("Both ModelPackageName and ModelPackageGroupName are provided in "
                              "the input. Cannot determine which one to use.")
    if not group and not name:
        raise ValidationError("Missing ARN.")
    if not group:
        a = orig(self, **kw)  # unversioned: moto's
    else:
        group = _name_of(group)  # ArnOrName
        g = self.model_package_groups.get(group)
        if g is None:
            raise ValidationError("Model Package Group does not exist.")
        # Tags on a versioned package: "If you supply ModelPackageGroupName, your model package
        # belongs to the model group you specify and uses the tags associated with the model
        # group. In this case, you cannot supply a tag argument." (botocore
        # CreateModelPackageInput.Tags); AWS answers ValidationException with TAGS_ON_VERSIONS
        # (quoted in aws/aws-cdk#33699).
        if kw.get("tags"):
            raise ValidationError(TAGS_ON_VERSIONS)
        # "The version of each model package is a numerical value that starts at 1 and is
        # incremented with each new model package added to a Model Group" (developer guide,
        # model-registry-models.html): a number is never given twice, even after a delete (moto
        # counted the group's packages plus one, so after a delete it reused, and overwrote, the
        # latest version).
        version = max([getattr(g, "_sdop_last_version", 0)] +
                      [p.model_package_version or 0 for p in self.model_packages.values()
                       if p.model_package_group_name == group]) + 1
        g._sdop_last_version = version
        args = {k: v for k, v in kw.items() if k not in ("model_package_name",
                                                         "model_package_group_name", "tags")}
        pkg = ModelPackage(model_package_name=group, model_package_group_name=group,
                           model_package_version=version, approval_description=None,
                           region_name=self.region_name, account_id=self.account_id,
                           model_package_type="Versioned", tags=None, **args)
        # The ARN keeps the group name's case, as AWS prints it ("ModelPackageArn":
        # "arn:aws:sagemaker:us-east-2:123456789012:model-package/ModelGroup1/1",
        # model-registry-details.html); moto lower-cased it.
        pkg.arn = arn(self, "model-package", f"{group}/{version}")
        # AWS's example: "ModelPackageStatusDetails": {"ValidationStatuses": [],
        # "ImageScanStatuses": []} (moto listed the ARN as a validated name).
        pkg.model_package_status_details = {"ValidationStatuses": [], "ImageScanStatuses": []}
        self.model_packages[pkg.arn] = pkg
        self.model_package_name_mapping[pkg.arn] = pkg.arn
        a = pkg.arn
    if token:
        tokens[token] = a
    return a


@patch(SageMakerModelBackend, "describe_model_package")
def describe_model_package(self, orig, model_package_name):
    return _package(self, model_package_name)


@patch(SageMakerModelBackend, "update_model_package")
def update_model_package(self, orig, model_package_arn, model_approval_status,
                         approval_description, customer_metadata_properties,
                         customer_metadata_properties_to_remove,
                         additional_inference_specifications_to_add):
    # moto set every member the request left out to None (an approval erased the
    # CustomerMetadataProperties and the ApprovalDescription). Here only what is sent changes:
    # CustomerMetadataProperties are added or overwritten by key and
    # CustomerMetadataPropertiesToRemove removes keys (the two members of
    # UpdateModelPackageInput, botocore).
    pkg = _package(self, model_package_arn)
    if model_approval_status is not None:
        pkg.set_model_approval_status(model_approval_status)
    if approval_description is not None:
        pkg.approval_description = approval_description
    if customer_metadata_properties:
        pkg.customer_metadata_properties = {**(pkg.customer_metadata_properties or {}),
                                            **customer_metadata_properties}
    if customer_metadata_properties_to_remove and pkg.customer_metadata_properties:
        for key in customer_metadata_properties_to_remove:
            pkg.customer_metadata_properties.pop(key, None)
        pkg.customer_metadata_properties = pkg.customer_metadata_properties or None
    if additional_inference_specifications_to_add:
        pkg.add_additional_inference_specifications(additional_inference_specifications_to_add)
    pkg.modifications_done()
    return pkg.arn


def delete_model_package(self, model_package_name):
    """DeleteModelPackage (missing in moto): a versioned package by ARN or GROUP/VERSION, an
    unversioned one by name or ARN. The deletion is immediate here."""
    with LOCK:
        pkg = _package(self, model_package_name)
        del self.model_packages[pkg.arn]
        for key in [k for k, v in self.model_package_name_mapping.items() if v == pkg.arn]:
            del self.model_package_name_mapping[key]


def delete_model_package_group(self, model_package_group_name):
    """DeleteModelPackageGroup (missing in moto). Missing group: "ModelPackageGroup ARN does not
    exist." (moto's DescribeModelPackageGroup text, which AWS's CloudFormation provider matches
    in DeleteHandler.java). A group that still holds model packages is refused with
    ConflictException, the one error the operation declares (botocore; "There was a conflict
    when you attempted to modify a SageMaker entity"); the message is the emulator's."""
    with LOCK:
        name = _name_of(model_package_group_name)
        g = self.model_package_groups.get(name)
        if g is None:
            raise ValidationError(
                f"ModelPackageGroup {arn(self, 'model-package-group', name)} does not exist.")
        left = sorted(p.model_package_version or 0 for p in self.model_packages.values()
                      if p.model_package_group_name == name)
        if left:
            raise ConflictException(
                f"Model Package Group {g.arn} still has model packages (versions "
                f"{', '.join(map(str, left))}); delete them before the group.")
        del self.model_package_groups[name]


SageMakerModelBackend.delete_model_package = delete_model_package
SageMakerModelBackend.delete_model_package_group = delete_model_package_group


@patch(SageMakerModelBackend, "_get_resource_from_arn")
def _get_resource_from_arn(self, orig, resource_arn):
    # Tags on model packages (moto had no "model-package" resource and failed with a 500):
    # "Model packages in the SageMaker Model Registry do not support tags—these are versioned
    # model packages. Instead, you can add key value pairs using CustomerMetadataProperties.
    # Model package groups in the model registry support tagging." (Model Registry FAQ). A
    # versioned package's ARN is refused with CreateModelPackage's answer (AWS's wording for
    # AddTags/ListTags is not known); an unversioned package is taggable.
    if resource_arn.split(":", 5)[-1].startswith("model-package/"):
        pkg = self.model_packages.get(resource_arn)
        if pkg is not None and pkg.model_package_version is not None:
            raise ValidationError(TAGS_ON_VERSIONS)
        if pkg is not None and pkg.tags is None:
            pkg.tags = []
        return pkg
    return orig(self, resource_arn)


def user_context(response):
    """UserContext of the caller for CreatedBy / LastModifiedBy: "IamIdentity: The IAM Identity
    details associated with the user. These details are associated with model package groups,
    model packages, ..." (botocore UserContext). The identity is moto's STS answer for the
    request's access key (GetCallerIdentity: an IAM user or assumed role created in moto, else
    moto's default user). moto gave a made-up Studio user profile instead."""
    from moto.sts.models import sts_backends
    user_id, caller_arn, _ = sts_backends[response.current_account][response.partition] \
        .get_caller_identity(response.get_access_key(), response.region)
    return {"IamIdentity": {"Arn": caller_arn, "PrincipalId": user_id}}


def _created_group_response(orig):
    def wrapper(self):
        result = orig(self)
        with LOCK:
            name = self._get_param("ModelPackageGroupName")
            self.sagemaker_backend.model_package_groups[name].created_by = user_context(self)
        return result
    return wrapper


def _created_package_response(orig):
    def wrapper(self):
        be = self.sagemaker_backend
        before = set(be.model_packages)
        result = orig(self)
        with LOCK:
            a = result.result["ModelPackageArn"]
            if a not in before:  # not a ClientToken replay
                be.model_packages[a].created_by = user_context(self)
        return result
    return wrapper


def _updated_package_response(orig):
    def wrapper(self):
        result = orig(self)
        with LOCK:
            pkg = self.sagemaker_backend.model_packages[result.result["ModelPackageArn"]]
            pkg.last_modified_by = user_context(self)
        return result
    return wrapper


def _delete_model_package_response(self):
    self.sagemaker_backend.delete_model_package(self._get_param("ModelPackageName"))
    return EmptyResult()


def _delete_model_package_group_response(self):
    self.sagemaker_backend.delete_model_package_group(self._get_param("ModelPackageGroupName"))
    return EmptyResult()


SageMakerResponse.create_model_package_group = _created_group_response(
    SageMakerResponse.create_model_package_group)
SageMakerResponse.create_model_package = _created_package_response(
    SageMakerResponse.create_model_package)
SageMakerResponse.update_model_package = _updated_package_response(
    SageMakerResponse.update_model_package)
SageMakerResponse.delete_model_package = _delete_model_package_response
SageMakerResponse.delete_model_package_group = _delete_model_package_group_response
