"""Resource Groups Tagging API patches of the sdop local AWS emulator: GetResources lists every
type sdop tags (moto 5.2.5 left out ECR repositories and Application Auto Scaling scalable
targets, gave SageMaker endpoint configs a malformed ARN and listed S3 buckets in every Region),
and the tagging_lag_seconds knob answers with tags as they were that many seconds ago.

GetResources: "Returns all the tagged or previously tagged resources that are located in the
specified Amazon Web Services Region for the account." (botocore resourcegroupstaggingapi
service-2, GetResources); "The GetResources, GetTagKeys, and GetTagValues operations support all
resource types" (https://docs.aws.amazon.com/resourcegroupstagging/latest/APIReference/
supported-services.html), whichever API tagged them: "All tagged resources, whether the tagging
used the Resource Groups Tagging API or not, are returned by the Get* operation." (botocore,
GetResourcesInput.ResourceTypeFilters)."""
import sys
import time
from collections import deque

from moto.applicationautoscaling.models import applicationautoscaling_backends
from moto.cloudformation.models import cloudformation_backends
from moto.cloudwatch.models import cloudwatch_backends
from moto.core.resource_tagging import (TaggedResource, iter_taggable_backends,
                                        make_tag_matcher, match_resource_type)
from moto.ecr.models import ecr_backends
from moto.resourcegroupstaggingapi.models import ResourceGroupsTaggingAPIBackend
from moto.s3.models import s3_backends
from moto.sagemaker.models import sagemaker_backends

from local_aws_state import CONFIG, LOCK, TAG_HISTORY, patch

HISTORY_LEN = 64  # tag sets kept per ARN (the oldest drop out)


# ------------------------------------------------------------ the types sdop tags, by backend
def s3_buckets(be):
    # A bucket is "located" in its own Region (CreateBucket LocationConstraint), so GetResources
    # in another Region does not list it (the API reference's "located in the specified Region";
    # rileydakota/cfn-sweeper#21: buckets of other Regions are missing from GetResources).
    # Moto listed every bucket of the partition in every Region.
    for bucket in list(be.buckets.values()):
        yield bucket.region_name, TaggedResource(
            arn=bucket.arn, tags=be.tagger.get_tag_dict_for_resource(bucket.arn),
            resource_type="s3:bucket")


def moto_listed(be):
    """SageMaker (endpoints, endpoint configs, models, model package groups, training jobs, ...),
    CloudFormation stacks and CloudWatch alarms: moto's own TaggableResourcesMixin listings."""
    for res in be.iter_tagged_resources():
        if isinstance(res.arn, tuple):
            # moto's FakeEndpointConfig.arn is the 1-tuple (endpoint_config_arn,); AWS's ARN is
            # arn:aws:sagemaker:REGION:ACCOUNT:endpoint-config/NAME (CreateEndpointConfig
            # EndpointConfigArn, which moto answers right).
            res = TaggedResource(arn=res.arn[0], tags=res.tags, resource_type=res.resource_type,
                                 extra=res.extra)
        yield be.region_name, res


def ecr_repositories(be):
    # ECR repositories, arn:aws:ecr:REGION:ACCOUNT:repository/NAME (ECR CreateRepository
    # repositoryArn), tagged by CreateRepository tags / TagResource: moto's ECRBackend is no
    # TaggableResourcesMixin, so GetResources never listed them.
    for repo in list(be.repositories.values()):
        yield be.region_name, TaggedResource(
            arn=repo.arn, tags=be.tagger.get_tag_dict_for_resource(repo.arn),
            resource_type="ecr:repository")


def scalable_targets(be):
    # Application Auto Scaling scalable targets, arn:aws:application-autoscaling:REGION:ACCOUNT:
    # scalable-target/ID (RegisterScalableTarget ScalableTargetARN), with the tags
    # local_aws_autoscaling keeps (RegisterScalableTarget Tags, TagResource, UntagResource):
    # moto's ApplicationAutoscalingBackend is no TaggableResourcesMixin.
    for by_id in list(be.targets.values()):
        for target in list(by_id.values()):
            yield be.region_name, TaggedResource(
                arn=target.arn, tags=dict(getattr(target, "tags", None) or {}),
                resource_type="application-autoscaling:scalable-target")


COVERED = ((s3_backends, s3_buckets), (sagemaker_backends, moto_listed),
           (cloudformation_backends, moto_listed), (cloudwatch_backends, moto_listed),
           (ecr_backends, ecr_repositories), (applicationautoscaling_backends, scalable_targets))
COVERED_CLASSES = tuple(bd.backend for bd, _ in COVERED)


def covered_now():
    """-> [(account, region, TaggedResource)] of every covered resource, every account and
    Region, as they are now (no backend is created)."""
    for attempt in range(5):
        try:
            return [(account, region, res)
                    for bd, listing in COVERED
                    for account, per_account in list(dict.items(bd))
                    for _key, be in list(dict.items(per_account))
                    for region, res in listing(be)]
        except RuntimeError:  # a dict moto changes in another request thread; read again
            if attempt == 4:
                raise
            time.sleep(0.01)


# ------------------------------------------------------------ tag history (tagging_lag_seconds)
def snapshot(now=None):
    """Record the tag set of every covered ARN that differs from its last record (a new resource,
    a tag change), and that an ARN is gone (None), at `now`: called after every call that may
    change tags and by GetResources itself (read-through)."""
    now = time.time() if now is None else now
    with LOCK:
        seen = set()
        for account, region, res in covered_now():
            seen.add(res.arn)
            h = TAG_HISTORY.get(res.arn)
            if h is None:
                h = TAG_HISTORY[res.arn] = {"account": account, "region": region,
                                            "type": res.resource_type,
                                            "entries": deque(maxlen=HISTORY_LEN)}
            if not h["entries"] or h["entries"][-1][1] != res.tags:
                h["entries"].append((now, dict(res.tags)))
        for arn, h in TAG_HISTORY.items():
            if arn not in seen and h["entries"] and h["entries"][-1][1] is not None:
                h["entries"].append((now, None))


def lagged(account, region, as_of):
    """Covered resources of `account` in `region` with their tags as recorded at `as_of`: one
    created later is not there yet, one deleted since is still there."""
    for arn, h in TAG_HISTORY.items():
        if h["account"] != account or h["region"] != region:
            continue
        tags = next((t for at, t in reversed(h["entries"]) if at <= as_of), None)
        if tags is not None:
            yield TaggedResource(arn=arn, tags=dict(tags), resource_type=h["type"])


# Calls after which the middleware takes a snapshot: every call that is not a read (Describe,
# List, Get, ...) of the services whose types are covered, and the S3 bucket-level calls that
# create or delete a bucket or change its tags (not object calls: they never change them).
SNAPSHOT_SERVICES = {"sagemaker", "ecr", "application-autoscaling", "cloudformation",
                     "monitoring", "tag"}
SNAPSHOT_S3 = {"s3:CreateBucket", "s3:DeleteBucket", "s3:PutBucketTagging",
               "s3:DeleteBucketTagging"}


def after_call(api, is_read):
    if is_read or not (api in SNAPSHOT_S3 or api.split(":", 1)[0] in SNAPSHOT_SERVICES):
        return
    try:
        snapshot()
    except Exception as err:  # noqa: BLE001 - a bookkeeping bug must not fail the call
        print(f"sdop-local-aws: tag snapshot after {api} failed: {err!r}", file=sys.stderr,
              flush=True)


# ------------------------------------------------------------ GetResources
def resources(account, region):
    """What GetResources lists before its filters: the covered types as they are now or, with
    tagging_lag_seconds > 0, as they were that many seconds ago; every other TaggableResourcesMixin
    backend of moto as it is now (the knob covers sdop's types only)."""
    now = time.time()
    lag = float(CONFIG.get("tagging_lag_seconds") or 0.0)
    snapshot(now)  # read-through: a tag set first seen now counts from now
    out = [res for be in iter_taggable_backends(account, region)
           if not isinstance(be, COVERED_CLASSES) for res in be.iter_tagged_resources()]
    if lag > 0:
        out += list(lagged(account, region, now - lag))
    else:
        out += [res for acc, reg, res in covered_now() if (acc, reg) == (account, region)]
    return out


@patch(ResourceGroupsTaggingAPIBackend, "_get_resources_generator")
def _get_resources_generator(self, orig, tag_filters=None, resource_type_filters=None,
                             resource_arn_list=None):
    # moto's filters (moto/resourcegroupstaggingapi/models.py), over the list above, taken whole
    # at the first page (moto pages through it with its PaginationToken).
    matches = make_tag_matcher(tag_filters)
    found = [res for res in resources(self.account_id, self.region_name)
             if (res.tags or res.extra.get("include_untagged"))
             and match_resource_type(res.resource_type, resource_type_filters)
             and matches(res.tags)
             and (not resource_arn_list or res.arn in resource_arn_list)]
    return iter(found)
