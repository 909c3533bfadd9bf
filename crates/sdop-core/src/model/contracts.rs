//! The typed contract of each AWS object type whose fields AWS reports back: what a kind wants
//! (`...Desired`, each field `None` until known after apply) and what the adapter sends and
//! reads back (`...Fields`, every field). Both are generated from one list by [`contract!`], so
//! they have the same fields by construction; an adapter builds its `...Fields` with a struct
//! literal, so a field it does not read back is a compile error. The engine diffs them as the
//! field maps they turn into ([`super::object::DesiredObject::fields`]): the plan shows each
//! changed field, old and new.
//!
//! Objects named by their content (models, endpoint configs, training jobs, smoke checks, model
//! archives) have no contract here: their name is a hash of what was sent, so nothing is read
//! back (`DesiredObject::content_named`).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::object::{AwsType, DesiredObject, ObjectKey, ObservedObject, Ownership};

/// A resource's own tags, as sent and read back (sdop's ownership tags apart).
pub type Tags = BTreeMap<String, String>;

fn to_value<T: Serialize>(value: &T) -> Value {
    // Plain data (strings, numbers, maps of strings): serializing cannot fail.
    serde_json::to_value(value).expect("contract field serializes")
}

fn from_value<T: DeserializeOwned>(
    object: &DesiredObject,
    wire: &str,
) -> Result<T, crate::error::Error> {
    let value = object
        .fields
        .get(wire)
        .ok_or_else(|| {
            crate::error::Error::Terminal(format!(
                "{} {}: no field {wire}",
                object.aws_type,
                object.name.display()
            ))
        })?
        .as_ref()
        .ok_or_else(|| {
            crate::error::Error::Terminal(format!(
                "{} {}: {wire} is not known yet",
                object.aws_type,
                object.name.display()
            ))
        })?;
    serde_json::from_value(value.clone()).map_err(|e| {
        crate::error::Error::Terminal(format!(
            "{} {}: {wire}: {e}",
            object.aws_type,
            object.name.display()
        ))
    })
}

/// What a kind wants of one AWS object type: its compared fields.
pub trait DesiredContract {
    const AWS_TYPE: AwsType;
    fn into_fields(self) -> BTreeMap<String, Option<Value>>;
}

/// One AWS object type's contract: `Desired` and `Fields` structs with the same fields.
macro_rules! contract {
    (
        $(#[$doc:meta])*
        $aws_type:ident: $desired:ident / $fields:ident {
            $( $(#[$fdoc:meta])* $field:ident ($wire:literal): $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$doc])*
        /// What a kind wants: `None` is known after apply.
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct $desired {
            $( $(#[$fdoc])* pub $field: Option<$ty>, )*
        }

        $(#[$doc])*
        /// What is sent and read back: every field.
        #[derive(Debug, Clone, PartialEq)]
        pub struct $fields {
            $( $(#[$fdoc])* pub $field: $ty, )*
        }

        impl $desired {
            /// The fields' names as plans, status and the diff show them.
            pub const FIELDS: &'static [&'static str] = &[$($wire),*];
        }

        impl DesiredContract for $desired {
            const AWS_TYPE: AwsType = AwsType::$aws_type;

            fn into_fields(self) -> BTreeMap<String, Option<Value>> {
                BTreeMap::from([
                    $( ($wire.to_string(), self.$field.as_ref().map(to_value)), )*
                ])
            }
        }

        impl $fields {
            /// The fields an adapter sends, from a desired object every field of which is
            /// known (the engine acts on no other).
            pub fn of(object: &DesiredObject) -> Result<Self, crate::error::Error> {
                debug_assert_eq!(object.aws_type, AwsType::$aws_type);
                Ok($fields {
                    $( $field: from_value(object, $wire)?, )*
                })
            }

            /// The observed object, read back with these fields.
            pub fn observed(self, name: &str, ownership: Ownership) -> ObservedObject {
                ObservedObject::new(
                    ObjectKey::new(AwsType::$aws_type, name),
                    BTreeMap::from([ $( ($wire.to_string(), to_value(&self.$field)), )* ]),
                    ownership,
                )
            }
        }
    };
}

contract! {
    /// An S3 bucket (`s3:bucket`).
    S3Bucket: BucketDesired / BucketFields {
        region ("region"): String,
        tags ("tags"): Tags,
        /// sdop's ownership tags present: a bucket whose create was interrupted after
        /// CreateBucket (a throttled PutBucketTagging, a crash) is finished by an update.
        ownership_tagged ("ownershipTagged"): bool,
        /// All four public access block settings on.
        public_access_blocked ("publicAccessBlocked"): bool,
        /// The default encryption's algorithm (`AES256`), or `none`.
        encryption ("encryption"): String,
    }
}

contract! {
    /// An ECR repository (`ecr:repository`).
    EcrRepository: RepositoryDesired / RepositoryFields {
        scan_on_push ("scanOnPush"): bool,
        /// `MUTABLE`, `IMMUTABLE`, ... (ECR's ImageTagMutability).
        image_tag_mutability ("imageTagMutability"): String,
        tags ("tags"): Tags,
    }
}

contract! {
    /// A file sdop uploads (`s3:object`): a stack's template or artifact, a Dataset's file, a
    /// training job's config.
    S3Object: ObjectDesired / ObjectFields {
        /// The content's fingerprint, kept in the object's metadata (`None`: an object
        /// without it, not written by sdop).
        content_fingerprint ("contentFingerprint"): Option<String>,
    }
}

contract! {
    /// A CloudFormation stack (`cloudformation:stack`). Its template URL is not reported back
    /// by CloudFormation: it is an unobservable value, covered by the fingerprint.
    CloudFormationStack: StackDesired / StackFields {
        /// The fingerprint of its templates (or of its template URL), kept in a tag; `None`:
        /// none recorded.
        template_fingerprint ("templateFingerprint"): Option<String>,
        /// The parameters sdop passes (those left to their template defaults apart).
        parameters ("parameters"): BTreeMap<String, String>,
        /// Sorted.
        capabilities ("capabilities"): Vec<String>,
        tags ("tags"): Tags,
    }
}

contract! {
    /// A SageMaker endpoint (`sagemaker:endpoint`); its model and config are content-named.
    SageMakerEndpoint: EndpointDesired / EndpointFields {
        endpoint_config_name ("endpointConfigName"): String,
        tags ("tags"): Tags,
    }
}

contract! {
    /// The all-in-one-ai endpoint registry's record of an endpoint
    /// (`dynamodb:endpoint-registration`).
    DynamoDbEndpointRegistration: RegistrationDesired / RegistrationFields {
        industrial_model ("industrialModel"): String,
    }
}

contract! {
    /// An endpoint's scalable target and its target-tracking policy
    /// (`application-autoscaling:endpoint-scaling`).
    EndpointScaling: ScalingDesired / ScalingFields {
        min_capacity ("minCapacity"): i32,
        max_capacity ("maxCapacity"): i32,
        /// The target-tracking policy's target, and its cooldowns. `None`: no such policy (a
        /// kill between RegisterScalableTarget and PutScalingPolicy): a difference.
        target_backlog_per_instance ("targetBacklogPerInstance"): Option<f64>,
        scale_in_cooldown_seconds ("scaleInCooldownSeconds"): Option<i32>,
        scale_out_cooldown_seconds ("scaleOutCooldownSeconds"): Option<i32>,
        /// The step scaling policy and its alarm that start an endpoint at zero instances.
        scale_out_from_zero ("scaleOutFromZero"): bool,
        /// The variant's instance type when registered (a tag): a change replaces the target.
        instance_type ("instanceType"): Option<String>,
        tags ("tags"): Tags,
    }
}

contract! {
    /// A SageMaker Model Registry model package group (`sagemaker:model-package-group`). Its
    /// description is set once, by sdop: SageMaker has no call that changes it.
    ModelPackageGroup: ModelPackageGroupDesired / ModelPackageGroupFields {
        tags ("tags"): Tags,
    }
}

/// The compared field names of each AWS object type with a contract; `None`: content-named
/// (nothing read back). An exhaustive match: a new type says which it is.
pub fn fields_of(aws_type: AwsType) -> Option<&'static [&'static str]> {
    match aws_type {
        AwsType::S3Bucket => Some(BucketDesired::FIELDS),
        AwsType::EcrRepository => Some(RepositoryDesired::FIELDS),
        AwsType::S3Object => Some(ObjectDesired::FIELDS),
        AwsType::CloudFormationStack => Some(StackDesired::FIELDS),
        AwsType::SageMakerEndpoint => Some(EndpointDesired::FIELDS),
        AwsType::DynamoDbEndpointRegistration => Some(RegistrationDesired::FIELDS),
        AwsType::EndpointScaling => Some(ScalingDesired::FIELDS),
        AwsType::ModelPackageGroup => Some(ModelPackageGroupDesired::FIELDS),
        AwsType::S3ModelArchive
        | AwsType::SageMakerModel
        | AwsType::SageMakerEndpointConfig
        | AwsType::SageMakerSmokeCheck
        | AwsType::SageMakerTrainingJob
        | AwsType::ModelPackageVersion
        | AwsType::ModelEvaluation
        | AwsType::EvidenceBundle
        | AwsType::ModelApproval => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::object::{Mutability, ObjectName};

    #[test]
    fn desired_fields_round_trip_into_what_an_adapter_sends() {
        let desired = RepositoryDesired {
            scan_on_push: Some(false),
            image_tag_mutability: Some("IMMUTABLE".into()),
            tags: Some(Tags::from([("team".into(), "ml".into())])),
        };
        let object = DesiredObject::new(
            AwsType::EcrRepository,
            ObjectName::Known("r".into()),
            Mutability::InPlace,
        )
        .contract(desired);
        let sent = RepositoryFields::of(&object).unwrap();
        assert!(!sent.scan_on_push);
        assert_eq!(sent.image_tag_mutability, "IMMUTABLE");
        // What is read back has the same fields, so the diff compares them one by one.
        let observed = sent.observed("r", Ownership::Foreign);
        let keys: Vec<&String> = observed.fields.keys().collect();
        let wanted: Vec<&String> = object.fields.keys().collect();
        assert_eq!(keys, wanted);
    }

    #[test]
    fn an_unknown_field_is_an_error_for_an_adapter_not_a_default() {
        let object = DesiredObject::new(
            AwsType::SageMakerEndpoint,
            ObjectName::Known("e".into()),
            Mutability::InPlace,
        )
        .contract(EndpointDesired {
            endpoint_config_name: None,
            tags: Some(Tags::new()),
        });
        let err = EndpointFields::of(&object).unwrap_err().to_string();
        assert!(err.contains("endpointConfigName is not known yet"), "{err}");
    }

    #[test]
    fn every_type_is_contracted_or_content_named() {
        for aws_type in AwsType::ALL {
            if let Some(fields) = fields_of(aws_type) {
                assert!(!fields.is_empty(), "{aws_type}");
            }
        }
    }
}
