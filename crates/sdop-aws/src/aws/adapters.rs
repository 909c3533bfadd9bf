//! The per-object-type contract (after ACK): read one (not found is `Ok(None)`), create,
//! update with a delta, delete. One adapter per AWS object type, found by `aws_type`.

use async_trait::async_trait;

use super::Clients;
use crate::engine::plan::{DesiredObject, FieldChange, ObjectState, ObservedObject};
use crate::error::Result;
use crate::manifest::ResourceId;
use crate::model::object::AwsType;

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
