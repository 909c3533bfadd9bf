//! Resource identity and metadata, as written in manifests and recorded in state and tags.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// `Kind/name`, the identity of a resource across manifests, state and AWS tags.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceId {
    pub kind: String,
    pub name: String,
}

impl ResourceId {
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Self {
        ResourceId {
            kind: kind.into(),
            name: name.into(),
        }
    }

    /// Parses `Kind/name`.
    pub fn parse(text: &str) -> Option<Self> {
        let (kind, name) = text.split_once('/')?;
        (!kind.is_empty() && !name.is_empty()).then(|| ResourceId::new(kind, name))
    }

    /// Parses `Kind/name` as an earlier sdop may have recorded it (the `sdop-resource`
    /// metadata and `sdop.io/resource` tag of the AWS objects it made): a renamed kind's
    /// earlier name reads as its current one, so sdop does not take its own objects for
    /// another resource's. Not for manifests, where the earlier name is refused.
    pub fn parse_recorded(text: &str) -> Option<Self> {
        Self::parse(text).map(Self::current)
    }

    /// The same resource under the current name of its kind ([`RENAMED_KINDS`]).
    pub fn current(self) -> Self {
        match RENAMED_KINDS
            .iter()
            .find(|(earlier, _)| *earlier == self.kind)
        {
            Some((_, current)) => ResourceId::new(*current, self.name),
            None => self,
        }
    }

    /// The same resource under the earlier names of its kind, where an earlier sdop stored
    /// its status.
    pub fn earlier(&self) -> impl Iterator<Item = ResourceId> + '_ {
        RENAMED_KINDS
            .iter()
            .filter(|(_, current)| *current == self.kind)
            .map(|(earlier, _)| ResourceId::new(*earlier, self.name.clone()))
    }
}

/// Kinds renamed under `sdop/v1alpha1`, `(earlier, current)`: `ModelPackage`, an S3 model
/// archive, became `ModelArchive` (SageMaker's "model package" is a Model Registry version).
/// What an earlier sdop recorded under the earlier name (status files and shared-state
/// objects, the owner in its AWS objects' metadata) is read as the current kind, so a
/// deployment keeps its resources across the upgrade; a manifest that still says the earlier
/// name is refused, naming the current one (`kinds::renamed_kind`).
pub const RENAMED_KINDS: [(&str, &str); 1] = [("ModelPackage", "ModelArchive")];

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// Name of the resource, unique per kind; lowercase letters, digits and '-'.
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}
