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
}

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
