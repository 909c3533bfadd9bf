//! Issue #23's reads: a sweep (one pass of `apply` over the graph) reads many objects with one
//! listing (crate::aws::sweep), and the Tagging API's lagging listing only ever confirms.

use std::time::Duration;

use sdop::manifest::ResourceId;
use serde_json::json;

use crate::apply::{bucket, endpoint};
use crate::support::env::Env;
use crate::support::local_aws::CallCounts;

fn repository(name: &str, extra: &str) -> String {
    format!("apiVersion: sdop/v1alpha1\nkind: ImageRepository\nmetadata: {{name: {name}}}\nspec:\n  repositoryName: sd-{name}\n  imageTag: latest\n{extra}---\n")
}

/// Converges `env`, then applies again: that apply's calls, which mutated nothing.
async fn converged_reapply(env: &Env) -> CallCounts {
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    env.aws.reset_calls();
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let calls = env.aws.calls();
    assert_eq!(calls.mutations(), 0, "{lines:#?} {:?}", calls.0);
    calls
}

#[tokio::test]
async fn a_converged_reapply_reads_shared_listings_not_one_call_per_object() {
    let env = Env::new();
    env.write("bucket.yaml", &bucket("assets", "sdop-it-reads", ""));
    let repos: String = ["a", "b", "c", "d"]
        .iter()
        .map(|n| repository(n, ""))
        .collect();
    env.write("repos.yaml", &repos);
    let calls = converged_reapply(&env).await;
    // Before: per repository DescribeRepositories, ListTagsForResource and DescribeImages
    // (12), per bucket GetBucketTagging, GetBucketLocation, GetPublicAccessBlock and
    // GetBucketEncryption (4): 16 reads for 5 resources.
    assert_eq!(calls.of("tag:GetResources"), 1, "{:?}", calls.0);
    assert_eq!(calls.of("ecr:DescribeRepositories"), 1, "{:?}", calls.0);
    assert_eq!(calls.of("ecr:ListTagsForResource"), 0, "{:?}", calls.0);
    assert_eq!(calls.of("s3:GetBucketTagging"), 0, "{:?}", calls.0);
    assert_eq!(calls.of("s3:GetBucketLocation"), 0, "{:?}", calls.0);
    // The followed tag's digest is read per repository (ECR answers for one at a time).
    assert_eq!(calls.of("ecr:DescribeImages"), 4, "{:?}", calls.0);
    assert_eq!(calls.reads(), 8, "{:?}", calls.0);
}

#[tokio::test]
async fn a_lagging_tag_listing_never_makes_sdop_act_and_drift_is_still_undone() {
    let env = Env::new();
    // The Tagging API is eventually consistent (deploy/local-aws/README.md): here its
    // GetResources answers with the tags of 2 seconds ago.
    let lag = Duration::from_secs(2);
    env.aws.configure(json!({"tagging_lag_seconds": 2}));
    env.write("repo.yaml", &repository("lag", "  tags: {team: ml}\n"));
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let ecr = env.aws.ecr().await;
    let arn = ecr
        .describe_repositories()
        .repository_names("sd-lag")
        .send()
        .await
        .unwrap()
        .repositories()[0]
        .repository_arn()
        .unwrap()
        .to_string();
    let team = || async {
        let tags = ecr
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .unwrap();
        tags.tags()
            .iter()
            .find(|t| t.key() == "team")
            .map(|t| t.value().to_string())
    };
    let retag = |value: &'static str| {
        let ecr = ecr.clone();
        let arn = arn.clone();
        async move {
            ecr.tag_resource()
                .resource_arn(arn)
                .tags(
                    aws_sdk_ecr::types::Tag::builder()
                        .key("team")
                        .value(value)
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
        }
    };

    // Once the listing has caught up with a drifted tag: apply puts it back.
    let tag_drift_is_undone = || async {
        let (summary, lines) = env.apply().await;
        assert!(summary.converged(), "{lines:#?}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("~ ImageRepository/lag ecr:repository sd-lag")),
            "{lines:#?}"
        );
        assert_eq!(team().await.as_deref(), Some("ml"));
    };

    // A tag changed behind sdop's back, once the listing shows it: seen and put back.
    tokio::time::sleep(lag + Duration::from_millis(500)).await;
    retag("other").await;
    tokio::time::sleep(lag + Duration::from_millis(500)).await;
    tag_drift_is_undone().await;

    // Right after, the listing still shows the drifted tag: never acted on, the repository
    // is read again on its own and found as desired.
    env.aws.reset_calls();
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let calls = env.aws.calls();
    assert_eq!(calls.mutations(), 0, "{lines:#?} {:?}", calls.0);
    assert_eq!(calls.of("ecr:ListTagsForResource"), 1, "{:?}", calls.0);

    // The cost of the lag, bounded by it: a change made within it may be confirmed away by
    // the stale listing, and is seen by the first sweep after the listing catches up.
    tokio::time::sleep(lag + Duration::from_millis(500)).await;
    retag("third").await;
    let (_, lines) = env.apply().await;
    assert!(
        lines.iter().all(|l| !l.starts_with('~')),
        "the listing still shows the old tags: {lines:#?}"
    );
    tokio::time::sleep(lag + Duration::from_millis(500)).await;
    tag_drift_is_undone().await;
}

#[tokio::test]
async fn an_endpoint_is_described_again_only_when_its_last_modified_time_moves() {
    let env = Env::new();
    env.write("bucket.yaml", &bucket("assets", "sdop-it-assets", ""));
    env.write("endpoint.yaml", &endpoint("ml.g4dn.xlarge", ""));
    let calls = converged_reapply(&env).await;
    assert_eq!(calls.of("sagemaker:ListEndpoints"), 1, "{:?}", calls.0);
    assert_eq!(calls.of("sagemaker:DescribeEndpoint"), 0, "{:?}", calls.0);
    assert_eq!(calls.of("sagemaker:ListTags"), 0, "{:?}", calls.0);

    // Scaled behind sdop's back (what Application Auto Scaling does): LastModifiedTime
    // moves, so the endpoint is described and the count it runs is what `get` prices.
    let sm = env.aws.sagemaker().await;
    sm.update_endpoint_weights_and_capacities()
        .endpoint_name("sd-base")
        .desired_weights_and_capacities(
            aws_sdk_sagemaker::types::DesiredWeightAndCapacity::builder()
                .variant_name("AllTraffic")
                .desired_instance_count(3)
                .build(),
        )
        .send()
        .await
        .unwrap();
    env.aws.reset_calls();
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    assert_eq!(env.aws.calls().of("sagemaker:DescribeEndpoint"), 1);
    let status = env
        .store()
        .load(&ResourceId::new("Endpoint", "base"))
        .unwrap()
        .unwrap();
    assert_eq!(
        status.outputs[sdop::model::outputs::CURRENT_INSTANCE_COUNT],
        "3"
    );
}

#[tokio::test]
async fn a_listing_the_policy_does_not_allow_is_read_object_by_object() {
    let env = Env::new();
    // An operator policy written before sdop shared reads: IAM refuses GetResources.
    env.aws
        .faults(json!({"access_denied": {"tag:GetResources": 1.0}}));
    env.write("bucket.yaml", &bucket("assets", "sdop-it-denied", ""));
    env.write(
        "repos.yaml",
        &format!("{}{}", repository("a", ""), repository("b", "")),
    );
    let calls = converged_reapply(&env).await;
    // Asked once a sweep, then each object's tags with its own service's call.
    assert_eq!(calls.of("tag:GetResources"), 1, "{:?}", calls.0);
    assert_eq!(calls.of("ecr:ListTagsForResource"), 2, "{:?}", calls.0);
    assert_eq!(calls.of("s3:GetBucketTagging"), 1, "{:?}", calls.0);
    assert_eq!(calls.of("s3:GetBucketLocation"), 1, "{:?}", calls.0);
}
