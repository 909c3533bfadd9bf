//! The per-object-type contract (after ACK): read one (not found is `Ok(None)`), create,
//! update with a delta, delete. One adapter per AWS object type, found by `aws_type`.

use async_trait::async_trait;

use super::Clients;
use crate::engine::plan::{DesiredObject, FieldChange, ObjectState, ObservedObject};
use crate::error::Result;
use crate::manifest::ResourceId;

/// What an adapter knows about the resource it acts for.
pub struct ObjectContext<'a> {
    pub clients: &'a Clients,
    pub resource: &'a ResourceId,
    pub spec_hash: &'a str,
    /// sdop's state says it created this object for this resource: adapters may skip the
    /// extra call that reads ownership tags.
    pub owned_per_state: bool,
}

#[async_trait]
pub trait Adapter: Send + Sync {
    fn aws_type(&self) -> &'static str;
    /// Completes a desired object with facts only AWS has (a package's source ETags), before
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

static ADAPTERS: &[&dyn Adapter] = &[
    &super::s3_bucket::BucketAdapter,
    &super::ecr_repository::RepositoryAdapter,
    &super::s3_object::TemplateObjectAdapter,
    &super::stack::StackAdapter,
    &super::sagemaker_endpoint::ModelAdapter,
    &super::sagemaker_endpoint::EndpointConfigAdapter,
    &super::sagemaker_endpoint::EndpointAdapter,
    &super::sagemaker_training_job::TrainingJobAdapter,
    &super::s3_model_package::ModelPackageAdapter,
    &super::dynamodb_registration::RegistrationAdapter,
    &super::autoscaling_endpoint::EndpointScalingAdapter,
    &super::sagemaker_smoke_check::SmokeCheckAdapter,
];

pub fn adapter(aws_type: &str) -> Option<&'static dyn Adapter> {
    ADAPTERS.iter().copied().find(|a| a.aws_type() == aws_type)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_object_type_a_kind_may_emit_has_its_adapter() {
        for aws_type in crate::kinds::OBJECT_TYPES {
            let found = super::adapter(aws_type).map(|a| a.aws_type());
            assert_eq!(found, Some(*aws_type), "no adapter for {aws_type}");
        }
    }
}
