//! The one retry and next-run policy (after kube-rs controller-rs's `error_policy`): what comes
//! after a pass, for `sdop apply` and the daemon alike, decided in this one place from the
//! decision's [`Next`] or the error's class ([`crate::error::Error::class`]). The callers only
//! say how long a poll or a backoff is (apply: its wait loop and a bounded retry; the daemon:
//! its adaptive poll and per-resource backoff).

use super::decide::Next;
use super::execute::{PassOutcome, Report};
use crate::error::{Error, ErrorClass, Result};
use crate::state::{Phase, ResourceStatus};

/// When a resource is looked at again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Something is in progress in AWS (or was just acted on): look again after a poll.
    Poll,
    /// A retryable error, or waiting on values: back off, then try again.
    Backoff,
    /// Nothing happens until something changes: a file, a dependency, the resync. A terminal
    /// error waits here: it is retried when the spec changes.
    WhenWoken,
}

/// After a failed pass: retryable errors back off; terminal ones wait for a change.
pub fn after_error(err: &Error) -> After {
    match err.class() {
        ErrorClass::Retryable => After::Backoff,
        ErrorClass::Terminal => After::WhenWoken,
    }
}

/// AWS operations whose callers retry them with backoff themselves, each attempt sending a
/// body: a multipart upload's parts (`sdop_aws::package::multipart`). Their error has spent
/// its retries, and repeating the pass would start the whole upload again.
pub const RETRIED_BY_THE_CALLER: &[&str] = &["s3:UploadPart"];

/// Whether a failed pass is tried again at once (`sdop apply`'s few quick retries): what backs
/// off, unless the failed call was already retried with backoff by its caller
/// ([`RETRIED_BY_THE_CALLER`]). Such a resource stays Pending and is tried again on the next
/// pass (`apply --wait`'s poll, the daemon's backoff), as any retryable error is.
pub fn retry_pass_now(err: &Error) -> bool {
    after_error(err) == After::Backoff
        && !matches!(err, Error::Aws { operation, .. } if RETRIED_BY_THE_CALLER.contains(&operation.as_str()))
}

/// After a pass: its decision's next step, or its error's.
pub fn after_pass(result: &Result<PassOutcome>) -> After {
    match result {
        Err(err) => after_error(err),
        Ok(outcome) => match outcome.next {
            Next::ActThenLook | Next::Poll => After::Poll,
            Next::Backoff => After::Backoff,
            Next::WhenWoken => After::WhenWoken,
        },
    }
}

/// Records a pass's error in the status, by the same policy: terminal fails the resource until
/// its spec or a file it reads changes (`failure_key`) or a retry is requested; retryable
/// leaves it Pending for the next try.
pub fn record_error(
    status: &mut ResourceStatus,
    failure_key: &str,
    err: &Error,
    report: Report<'_>,
) {
    status.set_error(err);
    status.event(format!("error: {err}"));
    match after_error(err) {
        After::WhenWoken => {
            report(format!(
                "x {} failed: {err}{}",
                status.id(),
                retry_hint(&status.id())
            ));
            status.failed_spec_hash = Some(failure_key.to_string());
            status.set_phase(
                Phase::Failed,
                "TerminalError",
                format!("{err}{}", retry_hint(&status.id())),
            );
        }
        After::Backoff | After::Poll => {
            status.set_phase(
                Phase::Pending,
                "RetryableError",
                format!("will retry: {err}"),
            );
        }
    }
}

/// How a Failed resource is retried, for its message (plan, get and the log show it).
pub fn retry_hint(id: &crate::manifest::ResourceId) -> String {
    format!(
        " (not retried until the spec or a file it reads changes; after fixing the cause elsewhere, retry now with `sdop reconcile {id}`)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::resource::ResourceId;

    fn aws(retryable: bool) -> Error {
        Error::Aws {
            operation: "sagemaker:CreateModel".into(),
            code: None,
            message: "m".into(),
            retryable,
        }
    }

    #[test]
    fn errors_back_off_or_wait_for_a_change_by_their_class() {
        assert_eq!(after_pass(&Err(aws(true))), After::Backoff);
        assert_eq!(after_pass(&Err(aws(false))), After::WhenWoken);
        let mut status = ResourceStatus::new(&ResourceId::new("Endpoint", "e"));
        record_error(&mut status, "h", &aws(false), &|_| {});
        assert_eq!(
            (status.phase, status.failed_spec_hash.as_deref()),
            (Phase::Failed, Some("h"))
        );
        let mut status = ResourceStatus::new(&ResourceId::new("Endpoint", "e"));
        record_error(&mut status, "h", &aws(true), &|_| {});
        assert_eq!(
            (status.phase, status.failed_spec_hash),
            (Phase::Pending, None)
        );
    }

    #[test]
    fn a_pass_is_retried_at_once_unless_its_call_was_retried_by_its_caller() {
        assert!(retry_pass_now(&aws(true)));
        assert!(!retry_pass_now(&aws(false)));
        let part = Error::Aws {
            operation: "s3:UploadPart".into(),
            code: Some("InternalError".into()),
            message: "m".into(),
            retryable: true,
        };
        assert!(!retry_pass_now(&part));
        // Still retryable: the resource stays Pending and the next pass tries again.
        assert_eq!(after_error(&part), After::Backoff);
    }

    #[test]
    fn a_decision_says_what_comes_after_it() {
        let outcome = |next| {
            Ok(PassOutcome {
                actions: Vec::new(),
                mutated: false,
                next,
                capacity: None,
            })
        };
        assert_eq!(after_pass(&outcome(Next::ActThenLook)), After::Poll);
        assert_eq!(after_pass(&outcome(Next::Poll)), After::Poll);
        assert_eq!(after_pass(&outcome(Next::Backoff)), After::Backoff);
        assert_eq!(after_pass(&outcome(Next::WhenWoken)), After::WhenWoken);
    }
}
