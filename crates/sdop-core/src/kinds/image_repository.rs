//! `ImageRepository`: an ECR repository (workshop step 3) and the image tag it follows.
//! Its status pins the tag to a digest, so consumers deploy reproducibly.

use crate::model::contracts::RepositoryDesired;
use crate::model::object::AwsType;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Checks, Claim, DeletionPolicy, DesiredContext, Kind, Reference};
use crate::model::aws_models;
use crate::model::aws_rules::TagRules;
use crate::model::object::{DesiredObject, Mutability, ObjectName};
use crate::rules;

pub struct ImageRepository;

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum TagMutability {
    #[default]
    Mutable,
    Immutable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageRepositorySpec {
    /// The ECR repository name, e.g. `all-in-one-ai-stable-diffusion-webui-inference`.
    pub repository_name: String,
    /// The image tag to follow; consumers get `REPO@sha256:...` of this tag.
    #[serde(default = "default_tag")]
    pub image_tag: String,
    #[serde(default = "yes")]
    pub scan_on_push: bool,
    #[serde(default)]
    pub image_tag_mutability: TagMutability,
    /// Region of the repository; defaults to the operator's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default)]
    pub tags: super::Tags,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// `true`: sdop reads the resource and reports drift, and changes nothing (as Flux's
    /// `spec.suspend`); `false` (default) resumes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    #[serde(default)]
    pub adopt: bool,
}

fn default_tag() -> String {
    "latest".into()
}

fn yes() -> bool {
    true
}

pub const AWS_TYPE: AwsType = AwsType::EcrRepository;

impl Kind for ImageRepository {
    const KIND: &'static str = "ImageRepository";
    const OUTPUTS: &'static [&'static str] = &[
        "repositoryName",
        "repositoryUri",
        "repositoryArn",
        "imageDigest",
        "imageUri",
    ];
    type Spec = ImageRepositorySpec;

    fn check(spec: &ImageRepositorySpec, checks: &mut Checks) {
        checks.check("spec.imageTag", rules::image_tag(&spec.image_tag));
        if let Some(region) = &spec.region {
            checks.check("spec.region", rules::region(region));
        }
        checks.aws(
            "spec.repositoryName",
            "repository name",
            &aws_models::ECR_REPOSITORY_NAME,
            &spec.repository_name,
        );
        checks.tags("spec.tags", &spec.tags, &[TagRules::Ecr]);
    }

    fn references(spec: &ImageRepositorySpec) -> Vec<Reference> {
        super::tag_references(&spec.tags, "spec.tags")
    }

    fn claims(spec: &ImageRepositorySpec) -> Vec<(&'static str, Claim)> {
        vec![(
            "spec.repositoryName",
            Claim::Unique(format!("ECR repository {:?}", spec.repository_name)),
        )]
    }

    fn spec_outputs(spec: &ImageRepositorySpec) -> BTreeMap<String, String> {
        [("repositoryName".to_string(), spec.repository_name.clone())].into()
    }

    fn region(spec: &ImageRepositorySpec) -> Option<String> {
        spec.region.clone()
    }

    fn permissions(spec: &ImageRepositorySpec) -> (Vec<super::iam::Grant>, Vec<String>) {
        (
            vec![
                super::iam::Grant::new(
                    &[
                        "ecr:CreateRepository",
                        "ecr:DeleteRepository",
                        "ecr:DescribeRepositories",
                        "ecr:DescribeImages",
                        "ecr:ListTagsForResource",
                        "ecr:TagResource",
                        "ecr:UntagResource",
                        "ecr:PutImageTagMutability",
                        "ecr:PutImageScanningConfiguration",
                    ],
                    vec![format!(
                        "arn:aws:ecr:{}:*:repository/{}",
                        spec.region.as_deref().unwrap_or("*"),
                        spec.repository_name
                    )],
                ),
                // A sweep describes every repository of the registry with one call.
                super::iam::Grant::new(
                    &["ecr:DescribeRepositories"],
                    vec![format!(
                        "arn:aws:ecr:{}:*:repository/*",
                        spec.region.as_deref().unwrap_or("*")
                    )],
                ),
            ],
            Vec::new(),
        )
    }

    fn facts(spec: &ImageRepositorySpec) -> super::SpecFacts {
        super::SpecFacts {
            adopt: spec.adopt,
            deletion_policy: spec.deletion_policy,
            suspend: spec.suspend,
        }
    }

    fn desired(spec: &ImageRepositorySpec, ctx: &DesiredContext) -> Vec<DesiredObject> {
        vec![DesiredObject::new(
            AWS_TYPE,
            ObjectName::Known(spec.repository_name.clone()),
            Mutability::InPlace,
        )
        .contract(RepositoryDesired {
            scan_on_push: Some(spec.scan_on_push),
            image_tag_mutability: serde_json::to_value(spec.image_tag_mutability)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string)),
            tags: super::resolve_tags(&spec.tags, ctx.outputs),
        })
        .input("imageTag", json!(spec.image_tag))]
    }
}
