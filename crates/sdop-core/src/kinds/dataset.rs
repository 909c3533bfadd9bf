//! `Dataset`: a local directory kept in sync with an S3 prefix (workshop step 9: the training
//! images from the build box to S3). Every file is one owned `s3:object` whose metadata carries
//! its fingerprint, so only changed files are uploaded; a file removed from the directory
//! removes the object sdop wrote for it, and objects under the prefix that sdop did not write
//! are never touched (a foreign object at a file's key is a conflict).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::stack::directory_objects;
use super::{Checks, Claim, DeletionPolicy, DesiredContext, Kind, Reference};
use crate::model::object::DesiredObject;
use crate::rules;

pub struct Dataset;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatasetSpec {
    /// The local directory, relative to this manifest (read recursively; hidden files and
    /// editor temp files are skipped).
    pub directory: String,
    /// The S3 prefix it is mirrored to, ending in `/`, e.g. `s3://BUCKET/dataset/jpstyle/`.
    pub s3_uri: String,
    /// Pruning the manifest: `Retain` (default) keeps the uploaded files; `Delete` removes the
    /// objects sdop wrote.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// `true`: sdop reads the resource and reports drift, and changes nothing (as Flux's
    /// `spec.suspend`); `false` (default) resumes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

impl Kind for Dataset {
    const KIND: &'static str = "Dataset";
    const OUTPUTS: &'static [&'static str] = &["s3Uri"];
    type Spec = DatasetSpec;

    fn check(spec: &DatasetSpec, checks: &mut Checks) {
        checks.check("spec.s3Uri", rules::s3_prefix_uri(&spec.s3_uri));
        if spec.directory.trim().is_empty() {
            checks.error("spec.directory", "directory must name a local directory");
        }
    }

    fn references(_spec: &DatasetSpec) -> Vec<Reference> {
        Vec::new()
    }

    fn claims(spec: &DatasetSpec) -> Vec<(&'static str, Claim)> {
        let uri = spec.s3_uri.trim_start_matches("s3://");
        let (bucket, prefix) = uri.split_once('/').unwrap_or((uri, ""));
        vec![("spec.s3Uri", super::s3_prefix_claim(bucket, prefix))]
    }

    fn spec_outputs(spec: &DatasetSpec) -> BTreeMap<String, String> {
        [("s3Uri".to_string(), spec.s3_uri.clone())].into()
    }

    fn local_paths(spec: &DatasetSpec) -> Vec<(String, String)> {
        vec![("spec.directory".to_string(), spec.directory.clone())]
    }

    /// Only S3, on the buckets its URIs name (added for every kind).
    fn permissions(_spec: &DatasetSpec) -> (Vec<super::iam::Grant>, Vec<String>) {
        (Vec::new(), Vec::new())
    }

    fn facts(spec: &DatasetSpec) -> super::SpecFacts {
        super::SpecFacts {
            adopt: false,
            deletion_policy: spec.deletion_policy,
            suspend: spec.suspend,
        }
    }

    fn desired(spec: &DatasetSpec, ctx: &DesiredContext) -> Vec<DesiredObject> {
        let Ok(prefix) = rules::s3_prefix_uri(&spec.s3_uri) else {
            return Vec::new();
        };
        let Some(local) = ctx.local_files.get(&spec.directory) else {
            return Vec::new();
        };
        directory_objects(&prefix.bucket, &prefix.key, local)
    }
}
