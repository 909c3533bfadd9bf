//! The resource graph: edges from references (hard) and claims (soft), a topological order,
//! and the diagnostics a graph can have: dangling and wrong-kind references, undeclared outputs,
//! cycles.

use std::collections::{BTreeMap, HashMap};

use crate::diagnostics::Diagnostic;
use crate::kinds::{self, Claim};
use crate::manifest::{Manifest, ResourceId};

use crate::model::outputs::output_is_declared;

#[derive(Debug, Default, Clone)]
pub struct Graph {
    /// `dependencies[i]`: indices of manifests that manifest `i` waits for.
    dependencies: Vec<Vec<usize>>,
    /// Topological order (dependencies first); resources in a cycle are left out.
    order: Vec<usize>,
}

impl Graph {
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    pub fn dependencies(&self, index: usize) -> &[usize] {
        &self.dependencies[index]
    }

    /// Groups of resources that can proceed in parallel: each wave depends only on earlier ones.
    pub fn waves(&self) -> Vec<Vec<usize>> {
        let mut depth = vec![0usize; self.dependencies.len()];
        let mut waves: Vec<Vec<usize>> = Vec::new();
        for &i in &self.order {
            let d = self.dependencies[i]
                .iter()
                .map(|&dep| depth[dep] + 1)
                .max()
                .unwrap_or(0);
            depth[i] = d;
            if waves.len() <= d {
                waves.resize(d + 1, Vec::new());
            }
            waves[d].push(i);
        }
        waves
    }
}

/// Builds the graph. Problems are returned as diagnostics at the referencing field.
pub fn build(manifests: &[Manifest]) -> (Graph, Vec<Diagnostic>) {
    let mut problems = Vec::new();
    let by_id: HashMap<&ResourceId, usize> = manifests
        .iter()
        .enumerate()
        .map(|(i, m)| (&m.id, i))
        .collect();
    let mut by_name: HashMap<&str, Vec<&str>> = HashMap::new();
    for m in manifests {
        by_name
            .entry(m.id.name.as_str())
            .or_default()
            .push(m.id.kind.as_str());
    }
    let mut claims: HashMap<Claim, usize> = HashMap::new();
    let mut claimants: HashMap<Claim, Vec<(usize, &'static str)>> = HashMap::new();
    for (i, m) in manifests.iter().enumerate() {
        for (path, claim) in m.handler.claims(m.spec.as_ref()) {
            claims.entry(claim.clone()).or_insert(i);
            claimants.entry(claim).or_default().push((i, path));
        }
    }
    for (claim, owners) in claimants.iter().filter(|(_, owners)| owners.len() > 1) {
        for &(i, path) in owners {
            let m = &manifests[i];
            let others: Vec<String> = owners
                .iter()
                .filter(|(j, _)| *j != i)
                .map(|&(j, other_path)| {
                    let o = &manifests[j];
                    let p = o.origin.position_of(other_path);
                    format!(
                        "{} ({}:{}:{})",
                        o.id,
                        o.origin.file.display(),
                        p.line,
                        p.column
                    )
                })
                .collect();
            problems.push(Diagnostic {
                file: m.origin.file.clone(),
                position: m.origin.position_of(path),
                resource: Some(m.id.to_string()),
                message: format!(
                    "{claim} is also managed by {}; two manifests cannot own one AWS resource",
                    others.join(", ")
                ),
            });
        }
    }

    let mut dependencies = vec![Vec::new(); manifests.len()];
    // (from, to) → the reference path, to report a cycle at the field that closes it.
    let mut edge_path: HashMap<(usize, usize), String> = HashMap::new();
    for (i, m) in manifests.iter().enumerate() {
        let diag = |path: &str, message: String| Diagnostic {
            file: m.origin.file.clone(),
            position: m.origin.position_of(path),
            resource: Some(m.id.to_string()),
            message,
        };
        for reference in m.handler.references(m.spec.as_ref()) {
            let target = &reference.target;
            let Some(target_handler) = kinds::handler(&target.kind) else {
                let message = match kinds::renamed_kind(&target.kind) {
                    Some(renamed) => format!("in reference {target}: {renamed}"),
                    None => format!(
                        "unknown kind {:?} in reference {target} (known kinds: {})",
                        target.kind,
                        kinds::kind_names().join(", ")
                    ),
                };
                problems.push(diag(&reference.path, message));
                continue;
            };
            let Some(&j) = by_id.get(target) else {
                let others: Vec<String> = by_name
                    .get(target.name.as_str())
                    .map(|kinds| {
                        kinds
                            .iter()
                            .map(|k| format!("{k}/{}", target.name))
                            .collect()
                    })
                    .unwrap_or_default();
                let message = if others.is_empty() {
                    format!("reference to {target}, which no manifest defines")
                } else {
                    format!(
                        "reference to {target}, which no manifest defines ({} exists, but a {} is required here)",
                        others.join(", "),
                        target.kind
                    )
                };
                problems.push(diag(&reference.path, message));
                continue;
            };
            if j == i {
                problems.push(diag(&reference.path, format!("{target} refers to itself")));
                continue;
            }
            if let Some(output) = &reference.output {
                if !output_is_declared(target_handler.outputs(), output) {
                    let output_path = match reference.path.strip_suffix(".resource") {
                        Some(prefix) => format!("{prefix}.output"),
                        None => reference.path.clone(),
                    };
                    problems.push(diag(
                        &output_path,
                        format!(
                            "{target} has no output {output:?} (its outputs: {})",
                            target_handler.outputs().join(", ")
                        ),
                    ));
                }
            }
            if let Some((output, value)) = reference.require {
                let target = &manifests[j];
                let actual = target
                    .handler
                    .spec_outputs(target.spec.as_ref())
                    .remove(output);
                if actual.as_deref() != Some(value) {
                    problems.push(diag(
                        &reference.path,
                        format!(
                            "{} has {output} {}; this reference needs {output} {value}",
                            target.id,
                            actual.as_deref().unwrap_or("(unset)")
                        ),
                    ));
                }
            }
            if !dependencies[i].contains(&j) {
                dependencies[i].push(j);
                edge_path.insert((i, j), reference.path.clone());
            }
        }
        if let Some(region) = m.handler.region(m.spec.as_ref()) {
            for (path, claim, why) in m.handler.same_region(m.spec.as_ref()) {
                let Some(&j) = claims.get(&claim) else {
                    continue;
                };
                let owner = &manifests[j];
                let owner_region = owner
                    .handler
                    .spec_outputs(owner.spec.as_ref())
                    .remove("region")
                    .or_else(|| owner.handler.region(owner.spec.as_ref()));
                if let Some(owner_region) = owner_region.filter(|r| *r != region) {
                    problems.push(diag(
                        path,
                        format!(
                            "{claim} ({}) is in {owner_region}, this resource in {region}: {why}",
                            owner.id
                        ),
                    ));
                }
            }
        }
        for claim in referenced_claims(m) {
            if let Some(&j) = claims.get(&claim) {
                if j != i && !dependencies[i].contains(&j) {
                    dependencies[i].push(j);
                }
            }
        }
    }

    let order = topological_order(&dependencies);
    if order.len() < manifests.len() {
        for cycle in cycles(&dependencies, &order) {
            let first = cycle[0];
            let m = &manifests[first];
            let names: Vec<String> = cycle
                .iter()
                .chain(std::iter::once(&first))
                .map(|&k| manifests[k].id.to_string())
                .collect();
            let path = edge_path
                .get(&(first, cycle[1 % cycle.len()]))
                .cloned()
                .unwrap_or_default();
            problems.push(Diagnostic {
                file: m.origin.file.clone(),
                position: m.origin.position_of(&path),
                resource: Some(m.id.to_string()),
                message: format!("reference cycle: {}", names.join(" -> ")),
            });
        }
    }
    (
        Graph {
            dependencies,
            order,
        },
        problems,
    )
}

/// Claims this manifest mentions: S3 URIs in its spec whose bucket another manifest may own.
fn referenced_claims(manifest: &Manifest) -> Vec<Claim> {
    let mut found = manifest.handler.uses(manifest.spec.as_ref());
    for bucket in &manifest.s3_buckets {
        let claim = Claim::S3Bucket(bucket.clone());
        if !found.contains(&claim) {
            found.push(claim);
        }
    }
    let own: Vec<Claim> = manifest
        .handler
        .claims(manifest.spec.as_ref())
        .into_iter()
        .map(|(_, claim)| claim)
        .collect();
    found.retain(|c| !own.contains(c));
    found
}

/// Kahn's algorithm; stable (lower index first among ready nodes).
fn topological_order(dependencies: &[Vec<usize>]) -> Vec<usize> {
    let n = dependencies.len();
    let mut remaining: Vec<usize> = dependencies.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, deps) in dependencies.iter().enumerate() {
        for &d in deps {
            dependents[d].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| remaining[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &dependents[i] {
            remaining[d] -= 1;
            if remaining[d] == 0 {
                ready.insert(d);
            }
        }
    }
    order
}

/// One representative cycle per strongly connected knot among the unordered nodes.
fn cycles(dependencies: &[Vec<usize>], order: &[usize]) -> Vec<Vec<usize>> {
    let ordered: std::collections::HashSet<usize> = order.iter().copied().collect();
    let mut reported: std::collections::HashSet<usize> = std::collections::HashSet::new();
    let mut found = Vec::new();
    for start in 0..dependencies.len() {
        if ordered.contains(&start) || reported.contains(&start) {
            continue;
        }
        // Walk dependencies among unordered nodes until a node repeats: that suffix is a cycle.
        let mut path: Vec<usize> = Vec::new();
        let mut seen_at: BTreeMap<usize, usize> = BTreeMap::new();
        let mut node = start;
        loop {
            if let Some(&at) = seen_at.get(&node) {
                let cycle = path[at..].to_vec();
                if !cycle.iter().any(|c| reported.contains(c)) {
                    found.push(cycle.clone());
                }
                reported.extend(cycle);
                break;
            }
            seen_at.insert(node, path.len());
            path.push(node);
            match dependencies[node].iter().find(|d| !ordered.contains(d)) {
                Some(&next) => node = next,
                None => break,
            }
        }
        reported.insert(start);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topological_order_and_waves() {
        // 0 <- 1 <- 2, 3 independent
        let deps = vec![vec![], vec![0], vec![1], vec![]];
        let order = topological_order(&deps);
        assert_eq!(order, vec![0, 1, 2, 3]);
        let g = Graph {
            dependencies: deps,
            order,
        };
        assert_eq!(g.waves(), vec![vec![0, 3], vec![1], vec![2]]);
    }

    #[test]
    fn cycles_are_found_once() {
        let deps = vec![vec![1], vec![2], vec![0], vec![0]];
        let order = topological_order(&deps);
        assert!(order.is_empty());
        let found = cycles(&deps, &order);
        assert_eq!(found, vec![vec![0, 1, 2]]);
    }
}
