//! The one error type of sdop, and the single place that decides how an error is retried.

use crate::diagnostics::Diagnostic;

/// How the engine treats an error: this classification is the only retry policy input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorClass {
    /// Throttling, 5xx, time-outs, connection resets: retry with backoff.
    Retryable,
    /// Validation, access denied, bad input: do not retry until the spec changes.
    Terminal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Manifests failed to load or validate; every problem is listed.
    #[error("{} invalid manifest problem(s):\n{}", .0.len(), crate::diagnostics::render(.0))]
    Invalid(Vec<Diagnostic>),
    /// An AWS call failed. `retryable` is decided from the service's error code and HTTP status.
    #[error("AWS {operation} failed: {message}")]
    Aws {
        operation: String,
        code: Option<String>,
        message: String,
        retryable: bool,
    },
    /// Reading or writing local files (state, sources) failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A resource's inputs are not usable yet (a referenced resource is not Ready).
    #[error("waiting for {0}")]
    Waiting(String),
    /// Anything else that is a bug in the request rather than a transient condition.
    #[error("{0}")]
    Terminal(String),
}

impl Error {
    /// The single retry decision of sdop.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Aws { retryable, .. } if *retryable => ErrorClass::Retryable,
            Error::Io { .. } | Error::Waiting(_) => ErrorClass::Retryable,
            Error::Aws { .. } | Error::Invalid(_) | Error::Terminal(_) => ErrorClass::Terminal,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let throttled = Error::Aws {
            operation: "DescribeEndpoint".into(),
            code: Some("ThrottlingException".into()),
            message: "Rate exceeded".into(),
            retryable: true,
        };
        assert_eq!(throttled.class(), ErrorClass::Retryable);
        let denied = Error::Aws {
            operation: "CreateModel".into(),
            code: Some("AccessDeniedException".into()),
            message: "no".into(),
            retryable: false,
        };
        assert_eq!(denied.class(), ErrorClass::Terminal);
        assert_eq!(Error::Terminal("x".into()).class(), ErrorClass::Terminal);
    }
}
