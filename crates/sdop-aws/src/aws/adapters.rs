//! The per-object-type contract (after ACK): read one (not found is `Ok(None)`), create,
//! update with a delta, delete. One adapter per AWS object type, found by `aws_type`.

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::sweep::Sweep;
use super::Clients;
use crate::engine::plan::{DesiredObject, FieldChange, ObjectState, ObservedObject};
use crate::error::Result;
use crate::manifest::ResourceId;
use crate::model::object::AwsType;

/// How AWS says a call is not allowed (IAM), across services.
const ACCESS_DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnauthorizedException",
];

/// What an adapter knows about the resource it acts for.
pub struct ObjectContext<'a> {
    pub clients: &'a Clients,
    pub resource: &'a ResourceId,
    pub spec_hash: &'a str,
    /// sdop's state says it created this object for this resource: adapters may skip the
    /// extra call that reads ownership tags.
    pub owned_per_state: bool,
    /// The outputs the resource recorded when it was last read.
    pub recorded_outputs: Option<&'a std::collections::BTreeMap<String, String>>,
    /// The sweep whose listings reads share (`None`: every read alone, as in the daemon).
    pub sweep: Option<&'a Sweep>,
    /// Set when a read used the Tagging API's eventually consistent tags: the cloud seam then
    /// keeps the read only if it confirms the object as desired (see [`super::sweep`]).
    pub used_shared_tags: AtomicBool,
}

impl ObjectContext<'_> {
    /// The answer of a listing shared by the sweep, made by `load` the first time; `None`
    /// without a sweep (the caller reads its one object instead). `what` names the listing
    /// (API and scope); the region is added here.
    pub async fn shared<T, F, Fut>(&self, what: &str, load: F) -> Result<Option<Arc<T>>>
    where
        T: Any + Send + Sync,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let Some(sweep) = self.sweep else {
            return Ok(None);
        };
        // A listing the operator's policy does not allow (a policy written before sdop shared
        // reads, or scoped tighter than `sdop iam-policy`) is not available, once a sweep:
        // each object is read on its own, as without a sweep.
        let answer: Arc<Option<Arc<T>>> = sweep
            .shared(format!("{} {what}", self.clients.region), || async {
                match load().await {
                    Ok(listed) => Ok(Some(Arc::new(listed))),
                    Err(err) if super::is_not_found(&err, ACCESS_DENIED) => {
                        tracing::warn!(listing = what, error = %err, "not allowed: reading each object on its own (see `sdop iam-policy`)");
                        Ok(None)
                    }
                    Err(err) => Err(err),
                }
            })
            .await?;
        Ok(answer.as_ref().clone())
    }

    /// The tags of `arn` from the sweep's Tagging API listing, if it has them; `None` means
    /// "read them with the service's own call". Marks the read as one to confirm.
    pub async fn shared_tags(&self, arn: &str) -> Result<Option<BTreeMap<String, String>>> {
        Ok(self
            .shared_tagged(|listed| listed == arn)
            .await?
            .map(|(_, tags)| tags))
    }

    /// The ARN and tags of the object the sweep's Tagging API listing has under an ARN that
    /// `matches` (for a caller that does not know the ARN: it holds the account id). Marks
    /// the read as one to confirm: the listing lags, so it may show an object just deleted or
    /// retagged, which the cloud seam's confirmation and the next sweep see.
    pub async fn shared_tagged(
        &self,
        matches: impl Fn(&str) -> bool,
    ) -> Result<Option<(String, BTreeMap<String, String>)>> {
        let clients = self.clients;
        let Some(index) = self
            .shared("tag:GetResources", || super::sweep::tag_index(clients))
            .await?
        else {
            return Ok(None);
        };
        let found = index
            .as_ref()
            .as_ref()
            .and_then(|index| index.iter().find(|(arn, _)| matches(arn)))
            .map(|(arn, tags)| (arn.clone(), tags.clone()));
        if found.is_some() {
            self.used_shared_tags.store(true, Ordering::SeqCst);
        }
        Ok(found)
    }
}

#[async_trait]
pub trait Adapter: Send + Sync {
    fn aws_type(&self) -> crate::model::object::AwsType;
    /// Completes a desired object with facts only AWS has (an archive's source ETags), before
    /// it is read and compared. Most objects need nothing.
    async fn resolve(
        &self,
        _ctx: &ObjectContext<'_>,
        object: DesiredObject,
    ) -> Result<DesiredObject> {
        Ok(object)
    }
    /// Reads one object (`desired`, when known, says what to look for, e.g. an image tag).
    /// Not found is `Ok(None)`.
    async fn read(
        &self,
        ctx: &ObjectContext<'_>,
        name: &str,
        desired: Option<&DesiredObject>,
    ) -> Result<Option<ObservedObject>>;
    /// Creates the object, tagged as owned; returns its state right after.
    async fn create(&self, ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<ObjectState>;
    /// Converges the changed fields of an existing object.
    async fn update(
        &self,
        ctx: &ObjectContext<'_>,
        object: &DesiredObject,
        changes: &[FieldChange],
    ) -> Result<ObjectState>;
    /// Deletes (or, for training jobs, stops) the object. Already gone is success.
    async fn delete(&self, ctx: &ObjectContext<'_>, name: &str) -> Result<()>;
}

/// The adapter of each AWS object type: an exhaustive match, so a new type without one is a
/// compile error.
pub fn adapter(aws_type: AwsType) -> &'static dyn Adapter {
    match aws_type {
        AwsType::S3Bucket => &super::s3_bucket::BucketAdapter,
        AwsType::EcrRepository => &super::ecr_repository::RepositoryAdapter,
        AwsType::S3Object => &super::s3_object::TemplateObjectAdapter,
        AwsType::CloudFormationStack => &super::stack::StackAdapter,
        AwsType::SageMakerModel => &super::sagemaker_endpoint::ModelAdapter,
        AwsType::SageMakerEndpointConfig => &super::sagemaker_endpoint::EndpointConfigAdapter,
        AwsType::SageMakerEndpoint => &super::sagemaker_endpoint::EndpointAdapter,
        AwsType::SageMakerTrainingJob => &super::sagemaker_training_job::TrainingJobAdapter,
        AwsType::S3ModelArchive => &super::s3_model_archive::ModelArchiveAdapter,
        AwsType::DynamoDbEndpointRegistration => &super::dynamodb_registration::RegistrationAdapter,
        AwsType::EndpointScaling => &super::autoscaling_endpoint::EndpointScalingAdapter,
        AwsType::SageMakerSmokeCheck => &super::sagemaker_smoke_check::SmokeCheckAdapter,
        AwsType::ModelPackageGroup => &super::model_registry::GroupAdapter,
        AwsType::ModelPackageVersion => &super::model_registry::VersionAdapter,
        AwsType::ModelApproval => &super::model_registry::ApprovalAdapter,
        AwsType::ModelEvaluation => &super::model_evaluation::EvaluationAdapter,
        AwsType::EvidenceBundle => &super::model_evaluation::EvidenceAdapter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each adapter says it is the one for its type (a copy-paste slip in the match above).
    #[test]
    fn every_type_has_its_own_adapter() {
        for aws_type in AwsType::ALL {
            assert_eq!(adapter(aws_type).aws_type(), aws_type);
        }
    }
}
