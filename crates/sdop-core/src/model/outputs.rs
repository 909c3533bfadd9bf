//! Status outputs of resources, as read by resources that reference them.

use std::collections::BTreeMap;

use super::resource::ResourceId;

/// The status output with the instances an endpoint runs now (autoscaling moves it, down to
/// 0): what `sdop get` and the cost metric price.
pub const CURRENT_INSTANCE_COUNT: &str = "currentInstanceCount";
/// What a person should know about a resource that is otherwise converged (a version waiting
/// for approval): set by an adapter on an observed object, appended to the Ready message; ""
/// clears it.
pub const NOTE: &str = "note";

/// `Kind/name` → output name → value. Missing means "known after apply".
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    by_resource: BTreeMap<ResourceId, BTreeMap<String, String>>,
}

impl Outputs {
    pub fn insert(&mut self, id: ResourceId, outputs: BTreeMap<String, String>) {
        self.by_resource.insert(id, outputs);
    }

    pub fn get(&self, id: &ResourceId, output: &str) -> Option<String> {
        self.by_resource.get(id)?.get(output).cloned()
    }
}

/// True when `output` is one of `declared` (a declared `prefix.*` admits any `prefix.X`).
pub fn output_is_declared(declared: &[&str], output: &str) -> bool {
    declared.iter().any(|d| match d.strip_suffix(".*") {
        Some(prefix) => output
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|rest| !rest.is_empty()),
        None => *d == output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_outputs() {
        let declared = ["bucketName", "outputs.*"];
        assert!(output_is_declared(&declared, "bucketName"));
        assert!(output_is_declared(&declared, "outputs.WebUIPortalUrl"));
        assert!(!output_is_declared(&declared, "outputs."));
        assert!(!output_is_declared(&declared, "arn"));
    }
}
