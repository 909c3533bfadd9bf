//! Reads shared by one sweep (issue #23: a converged re-apply must cost few reads).
//!
//! Many AWS read APIs answer for many objects in one call: every repository of a registry in
//! one DescribeRepositories, every scalable target of a namespace in one
//! DescribeScalableTargets, the tags of every object sdop owns in one Resource Groups Tagging
//! API GetResources. A sweep (one pass of `sdop apply` or `sdop plan` over the whole graph)
//! makes each such listing at most once, the first time an adapter needs it, and every other
//! read of the sweep looks its object up in the answer.
//!
//! What keeps this true:
//! - **A sweep's answers never outlive a change.** Any create, update or delete that sdop
//!   makes forgets them all ([`Sweep::forget`], called by the AWS cloud seam), so the read that
//!   follows an object's own create or update asks AWS again, and so does every later one; the
//!   next sweep (the next poll of `apply --wait`) starts empty.
//! - **Only consistent listings stand in for a read.** A DescribeRepositories of every
//!   repository is the same read as one of a single name. The Tagging API is documented as
//!   eventually consistent, so its tags only ever confirm: an adapter uses them
//!   ([`ObjectContext::shared_tags`](super::adapters::ObjectContext::shared_tags)) and the
//!   cloud seam reads the object again on its own whenever what came back is anything but
//!   "owned by this resource and exactly as desired". A stale answer can delay seeing a tag
//!   changed behind sdop's back by one sweep; it can never make sdop act.
//! - **A listing too large to be cheap is not made.** Each has a page limit; past it the
//!   listing answers "not available" and the objects are read one by one, as without a sweep.
//! - The daemon reconciles resources one at a time on their own clocks, so it has no sweep
//!   and reads each object alone.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::error::{Error, Result};

type Answer = Arc<dyn Any + Send + Sync>;

/// The shared answers of one sweep, by listing (each key names its API, region and scope).
#[derive(Default)]
pub struct Sweep {
    answers: Mutex<HashMap<String, Arc<OnceCell<Answer>>>>,
}

impl Sweep {
    /// Forgets every answer: after a change sdop made, and at the start of a sweep. A listing
    /// in flight finishes into a cell nobody looks up again.
    pub fn forget(&self) {
        self.answers.lock().expect("sweep lock").clear();
    }

    /// The answer of listing `key`, made by `load` the first time it is asked for in this
    /// sweep (concurrent askers wait for the one call). A failed listing is not kept.
    pub async fn shared<T, F, Fut>(&self, key: String, load: F) -> Result<Arc<T>>
    where
        T: Any + Send + Sync,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let cell = self
            .answers
            .lock()
            .expect("sweep lock")
            .entry(key.clone())
            .or_default()
            .clone();
        let answer = cell
            .get_or_try_init(|| async { load().await.map(|v| Arc::new(v) as Answer) })
            .await?
            .clone();
        answer
            .downcast::<T>()
            .map_err(|_| Error::Terminal(format!("internal: sweep listing {key} of another type")))
    }
}

/// Follows a paginated listing for at most `max_pages` pages (`page(token)` answers one page
/// and the next token): `Some(everything)`, or `None` when there is more (too large to be a
/// cheap shared listing: the caller reads object by object).
pub async fn all_pages<T, K, F, Fut>(max_pages: usize, mut page: F) -> Result<Option<Vec<T>>>
where
    F: FnMut(Option<K>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<K>)>>,
{
    let mut all = Vec::new();
    let mut token = None;
    for _ in 0..max_pages {
        let (items, next) = page(token.take()).await?;
        all.extend(items);
        match next {
            Some(next) => token = Some(next),
            None => return Ok(Some(all)),
        }
    }
    Ok(None)
}

/// A page token, `None` when empty (the last page).
pub fn next_token(token: Option<&str>) -> Option<String> {
    token.filter(|t| !t.is_empty()).map(str::to_string)
}

/// The tags of every object sdop owns in a region, by ARN, from the Resource Groups Tagging
/// API's GetResources (one call a page of up to 100; pages may hold fewer, as AWS says;
/// `None` past [`TAG_PAGES`] pages). "The
/// GetResources, GetTagKeys, and GetTagValues operations support all resource types"
/// (https://docs.aws.amazon.com/resourcegroupstagging/latest/APIReference/supported-services.html).
pub type TagIndex = Option<HashMap<String, std::collections::BTreeMap<String, String>>>;

/// Pages of GetResources a sweep reads at most (up to 100 resources a page).
pub const TAG_PAGES: usize = 30;

pub async fn tag_index(clients: &super::Clients) -> Result<TagIndex> {
    use aws_sdk_resourcegroupstagging::types::TagFilter;
    let mappings = all_pages(TAG_PAGES, |token| async move {
        let page = clients
            .tagging
            .get_resources()
            .tag_filters(
                TagFilter::builder()
                    .key(super::TAG_MANAGED_BY)
                    .values(super::MANAGED_BY)
                    .build(),
            )
            .resources_per_page(100)
            .set_pagination_token(token)
            .send()
            .await
            .map_err(|e| super::classify("tag:GetResources", e))?;
        Ok((
            page.resource_tag_mapping_list().to_vec(),
            next_token(page.pagination_token()),
        ))
    })
    .await?;
    Ok(mappings.map(|mappings| {
        mappings
            .into_iter()
            .filter_map(|mapping| {
                let tags = mapping
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect();
                Some((mapping.resource_arn?, tags))
            })
            .collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_listing_is_made_once_a_sweep_and_again_after_a_change() {
        let sweep = Sweep::default();
        let calls = AtomicUsize::new(0);
        let load = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(vec![1, 2, 3])
        };
        let (a, b) = tokio::join!(
            sweep.shared("list".into(), load),
            sweep.shared("list".into(), load)
        );
        assert_eq!(a.unwrap(), b.unwrap());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "concurrent askers share one call"
        );
        sweep.forget();
        sweep.shared("list".into(), load).await.unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "a change forgets the answer"
        );
    }

    #[tokio::test]
    async fn pages_are_followed_up_to_the_limit_and_no_further() {
        let pages = |count: usize| {
            move |token: Option<usize>| async move {
                let at = token.unwrap_or(0);
                Ok::<_, Error>((vec![at], (at + 1 < count).then_some(at + 1)))
            }
        };
        assert_eq!(all_pages(3, pages(3)).await.unwrap(), Some(vec![0, 1, 2]));
        assert_eq!(all_pages(3, pages(4)).await.unwrap(), None);
        assert_eq!(all_pages(3, pages(1)).await.unwrap(), Some(vec![0]));
        assert_eq!(next_token(Some("")), None);
        assert_eq!(next_token(Some("t")), Some("t".to_string()));
    }

    #[tokio::test]
    async fn a_failed_listing_is_not_kept() {
        let sweep = Sweep::default();
        let failed: Result<Arc<Vec<u8>>> = sweep
            .shared("list".into(), || async {
                Err(Error::Waiting("throttled".into()))
            })
            .await;
        assert!(failed.is_err());
        let ok = sweep
            .shared("list".into(), || async { Ok::<_, Error>(vec![7u8]) })
            .await
            .unwrap();
        assert_eq!(*ok, vec![7u8]);
    }
}
