//! `ModelArchive`: the `model.tar.gz` the inference container loads (workshop steps 5 and 11),
//! built from S3 objects, local files, or the newest checkpoint of a `DreamboothJob`.

use crate::model::object::AwsType;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::dreambooth_job::DreamboothJob;
use super::{Checks, Claim, DeletionPolicy, DesiredContext, Kind, Reference};
use crate::model::object::{DesiredObject, Mutability, ObjectName};
use crate::model::resource::ResourceId;
use crate::rules;

pub struct ModelArchive;

/// Top-level folders the all-in-one-ai inference container reads from `/opt/ml/model`.
pub const ARCHIVE_FOLDERS: &[&str] = &["Stable-diffusion", "ControlNet", "Lora"];

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum ArchiveFormat {
    /// One gzip-compressed tar archive at `output` (SageMaker `ModelDataUrl`).
    #[default]
    #[serde(rename = "tar.gz")]
    TarGz,
    /// Files laid out under the `output` prefix (SageMaker `ModelDataSource`, no compression).
    #[serde(rename = "uncompressed")]
    Uncompressed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArchiveSource {
    /// An S3 object, or a prefix ending in `/` (every object under it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<String>,
    /// A local file or directory, relative to this manifest's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    /// The newest checkpoint (`.ckpt`/`.safetensors` plus `.yaml`) of this `DreamboothJob`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dreambooth_job: Option<String>,
    /// Folder in the archive, e.g. `Stable-diffusion/`.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelArchiveSpec {
    /// `s3://BUCKET/KEY.tar.gz` for `tar.gz`; `s3://BUCKET/PREFIX/` for `uncompressed`.
    pub output: String,
    #[serde(default)]
    pub format: ArchiveFormat,
    /// gzip level 0-9. Default 0 (stored blocks, still gzip): checkpoints barely compress, so
    /// higher levels cost CPU time for a few percent (see the README's measurements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_level: Option<u32>,
    pub sources: Vec<ArchiveSource>,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// `true`: sdop reads the resource and reports drift, and changes nothing (as Flux's
    /// `spec.suspend`); `false` (default) resumes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    #[serde(default)]
    pub adopt: bool,
}

/// Default gzip level: 0, stored blocks (still gzip, as SageMaker requires). Measured
/// (docs/performance.md, benches/package_vs_workshop.sh): real float weights shrink only to 0.915 at level 6,
/// at 39 MB/s per core; level 1 of zlib-rs even grows them (1.048) at 90 MB/s; level 0 runs at
/// about 1.8 GB/s, so packaging is bound by S3 and not the CPU.
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 0;

pub const AWS_TYPE: AwsType = AwsType::S3ModelArchive;

fn check_archive_path(path: &str) -> Result<(), String> {
    let first = path.split('/').next().unwrap_or_default();
    if path.starts_with('/') || path.split('/').any(|p| p == ".." || p == ".") {
        return Err(format!(
            "archive path {path:?} must be relative, without '.' or '..'"
        ));
    }
    if !ARCHIVE_FOLDERS.contains(&first) {
        return Err(format!(
            "archive path {path:?} must start with one of {} (the folders the inference container reads)",
            ARCHIVE_FOLDERS.iter().map(|f| format!("{f}/")).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(())
}

impl Kind for ModelArchive {
    const KIND: &'static str = "ModelArchive";
    const OUTPUTS: &'static [&'static str] = &["s3Uri", "identity", "format"];
    type Spec = ModelArchiveSpec;

    fn check(spec: &ModelArchiveSpec, checks: &mut Checks) {
        match spec.format {
            ArchiveFormat::TarGz => {
                if let Some(uri) = checks.check("spec.output", rules::s3_object_uri(&spec.output)) {
                    if !uri.key.ends_with(".tar.gz") {
                        checks.error(
                            "spec.output",
                            format!(
                                "a tar.gz archive's output {:?} must end with .tar.gz",
                                spec.output
                            ),
                        );
                    }
                }
            }
            ArchiveFormat::Uncompressed => {
                checks.check("spec.output", rules::s3_prefix_uri(&spec.output));
            }
        }
        if let Some(level) = spec.compression_level {
            if level > 9 {
                checks.error(
                    "spec.compressionLevel",
                    format!("compression level {level} is out of range 0-9"),
                );
            }
            if spec.format == ArchiveFormat::Uncompressed {
                checks.error(
                    "spec.compressionLevel",
                    "compressionLevel applies only to format tar.gz",
                );
            }
        }
        if spec.sources.is_empty() {
            checks.error("spec.sources", "an archive needs at least one source");
        }
        for (i, source) in spec.sources.iter().enumerate() {
            let at = format!("spec.sources[{i}]");
            let set = [
                source.s3.is_some(),
                source.local.is_some(),
                source.dreambooth_job.is_some(),
            ];
            if set.iter().filter(|&&s| s).count() != 1 {
                checks.error(&at, "set exactly one of `s3`, `local` or `dreamboothJob`");
            }
            if let Some(uri) = &source.s3 {
                checks.check(format!("{at}.s3"), rules::s3_uri(uri));
            }
            checks.check(format!("{at}.path"), check_archive_path(&source.path));
        }
    }

    fn references(spec: &ModelArchiveSpec) -> Vec<Reference> {
        spec.sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.dreambooth_job.as_ref().map(|job| {
                    Reference::to(
                        format!("spec.sources[{i}].dreamboothJob"),
                        DreamboothJob::KIND,
                        job,
                    )
                })
            })
            .collect()
    }

    fn claims(spec: &ModelArchiveSpec) -> Vec<(&'static str, Claim)> {
        vec![(
            "spec.output",
            Claim::Unique(format!("archive output {}", spec.output)),
        )]
    }

    fn spec_outputs(spec: &ModelArchiveSpec) -> BTreeMap<String, String> {
        let format = match spec.format {
            ArchiveFormat::TarGz => "tar.gz",
            ArchiveFormat::Uncompressed => "uncompressed",
        };
        // Not `s3Uri`: the archive's key carries its identity, known once it is built.
        [("format".to_string(), format.to_string())].into()
    }

    fn local_paths(spec: &ModelArchiveSpec) -> Vec<(String, String)> {
        spec.sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.local
                    .clone()
                    .map(|l| (format!("spec.sources[{i}].local"), l))
            })
            .collect()
    }

    /// The archive's identity (a hash of its inputs, including the S3 sources' ETags) is
    /// completed by the AWS adapter; here go the sources, resolved as far as possible without I/O.
    /// Only S3, on the buckets its URIs name (added for every kind).
    fn permissions(_spec: &ModelArchiveSpec) -> (Vec<super::iam::Grant>, Vec<String>) {
        (Vec::new(), Vec::new())
    }

    fn facts(spec: &ModelArchiveSpec) -> super::SpecFacts {
        super::SpecFacts {
            adopt: spec.adopt,
            deletion_policy: spec.deletion_policy,
            suspend: spec.suspend,
        }
    }

    fn desired(spec: &ModelArchiveSpec, ctx: &DesiredContext) -> Vec<DesiredObject> {
        let mut sources = Vec::new();
        let mut known = true;
        for source in &spec.sources {
            if let Some(uri) = &source.s3 {
                sources.push(json!({"path": source.path, "s3": uri}));
            } else if let Some(local) = &source.local {
                match ctx.local_files.get(local) {
                    Some(file) => {
                        sources.push(json!({"path": source.path, "local": file.resolved}))
                    }
                    None => known = false,
                }
            } else if let Some(job) = &source.dreambooth_job {
                let job = ResourceId::new(DreamboothJob::KIND, job);
                match ctx.outputs.get(&job, "latestCheckpoint") {
                    Some(checkpoint) => {
                        sources.push(json!({"path": source.path, "s3": checkpoint}));
                        if let Some(yaml) = ctx.outputs.get(&job, "latestCheckpointYaml") {
                            sources
                                .push(json!({"path": source.path, "s3": yaml, "optional": true}));
                        }
                    }
                    None => known = false,
                }
            }
        }
        let format = match spec.format {
            ArchiveFormat::TarGz => "tar.gz",
            ArchiveFormat::Uncompressed => "uncompressed",
        };
        // Content-addressed: the adapter names the object once the identity is known
        // (`.../<identity>/model.tar.gz`), so a model's data never changes under it.
        let output = spec.output.trim_start_matches("s3://").to_string();
        let mut object = DesiredObject::new(
            AWS_TYPE,
            ObjectName::AfterApply {
                base: output.clone(),
            },
            Mutability::Replace,
        )
        .field("packageIdentity", None)
        .input("output", json!(output))
        .input("format", json!(format))
        .input(
            "compressionLevel",
            json!(spec.compression_level.unwrap_or(DEFAULT_COMPRESSION_LEVEL)),
        );
        if known {
            object = object.input("sources", json!(sources));
        }
        vec![DesiredObject {
            content_named: true,
            ..object
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths() {
        assert!(check_archive_path("Stable-diffusion/").is_ok());
        assert!(check_archive_path("Lora/styles/").is_ok());
        assert!(check_archive_path("models/").is_err());
        assert!(check_archive_path("Stable-diffusion/../x").is_err());
        assert!(check_archive_path("/Stable-diffusion").is_err());
    }
}
