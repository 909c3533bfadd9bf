//! What every AWS call passes through on its way out, in one place: a per-API rate limit, the
//! leader gate (only the leader mutates AWS), and call accounting (metrics by API and outcome,
//! bytes of multipart parts). It wraps the SDK's default HTTPS client, so nothing above it
//! (adapters, packaging) knows it exists; the operation's name reaches it through a request
//! extension set by [`OperationName`], an SDK interceptor.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, Metadata};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// `service:Operation`, e.g. `sagemaker:DescribeEndpoint`, carried on each HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiName(pub Arc<str>);

impl ApiName {
    /// Reads (Describe/List/Get/Head/BatchGet) never change AWS; everything else mutates.
    pub fn is_read(&self) -> bool {
        let op = self.0.split_once(':').map_or(&*self.0, |(_, op)| op);
        ["Describe", "List", "Get", "Head", "BatchGet"]
            .iter()
            .any(|p| op.starts_with(p))
    }
}

/// The interceptor that names each request's operation for the transport.
#[derive(Debug, Default)]
pub struct OperationName;

impl Intercept for OperationName {
    fn name(&self) -> &'static str {
        "sdop::OperationName"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            let name = format!("{}:{}", service_prefix(meta.service()), meta.name());
            // `RUST_LOG=sdop::aws=debug` lists every attempt under the resource that made it.
            tracing::debug!(target: "sdop::aws", api = %name, "call");
            context.request_mut().add_extension(ApiName(name.into()));
        }
        Ok(())
    }
}

/// The SDK's service names (`S3`, `SageMaker`, `ECR`, `CloudFormation`) in the short form
/// AWS uses in IAM actions and the emulator's call counter.
fn service_prefix(service: &str) -> String {
    let short = service.to_ascii_lowercase().replace(' ', "");
    // IAM's prefixes where they differ from the SDK's names (Service Authorization Reference).
    match short.as_str() {
        "applicationautoscaling" => "application-autoscaling".into(),
        "sagemakerruntime" => "sagemaker".into(),
        "resourcegroupstaggingapi" => "tag".into(),
        _ => short,
    }
}

/// How one HTTP attempt ended, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    Ok,
    ClientError,
    Throttled,
    ServerError,
    TransportError,
    /// Refused before sending: this process is not the leader.
    NotLeader,
}

impl CallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::ClientError => "client_error",
            CallOutcome::Throttled => "throttled",
            CallOutcome::ServerError => "server_error",
            CallOutcome::TransportError => "transport_error",
            CallOutcome::NotLeader => "not_leader",
        }
    }

    /// From the HTTP status and, for the JSON protocols (SageMaker, ECR) that throttle with a
    /// 400, the `x-amzn-ErrorType` header.
    fn from_response(status: u16, error_type: Option<&str>) -> CallOutcome {
        if error_type.is_some_and(|t| t.starts_with("Throttling")) {
            return CallOutcome::Throttled;
        }
        match status {
            200..=399 => CallOutcome::Ok,
            429 | 503 => CallOutcome::Throttled,
            500.. => CallOutcome::ServerError,
            _ => CallOutcome::ClientError,
        }
    }
}

/// Where call accounting goes (the daemon's metrics; nothing for one-shot commands).
pub trait CallObserver: Send + Sync {
    fn call(&self, api: &str, outcome: CallOutcome, upload_bytes: u64);
}

/// Who may mutate AWS right now. Without leader election, always this process.
pub trait MutationGate: Send + Sync {
    fn may_mutate(&self) -> bool;
}

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Takes a token if one is there (`None`), else says how long until one is (pure in `now`).
    pub fn take(&mut self, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// Calls per second allowed for an API: SageMaker's List* APIs are limited by AWS to a few per
/// second per account; other control-plane APIs allow more. A `(rate, burst)` pair.
pub fn rate_limit_of(api: &str) -> (f64, f64) {
    let (service, op) = api.split_once(':').unwrap_or(("", api));
    match service {
        "sagemaker" if op.starts_with("List") => (2.0, 2.0),
        "sagemaker" if op.starts_with("Describe") => (10.0, 10.0),
        "sagemaker" | "cloudformation" | "ecr" => (5.0, 5.0),
        // S3 object traffic (parts of a package) is not throttled here.
        "s3" => (500.0, 500.0),
        _ => (10.0, 10.0),
    }
}

/// Shared by every client of one process.
pub struct Transport {
    buckets: Mutex<HashMap<Arc<str>, TokenBucket>>,
    gate: Option<Arc<dyn MutationGate>>,
    observer: Option<Arc<dyn CallObserver>>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("gated", &self.gate.is_some())
            .finish()
    }
}

/// The error a refused mutation surfaces as (classified retryable: DispatchFailure).
#[derive(Debug)]
pub struct NotLeader(pub String);

impl fmt::Display for NotLeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} refused: this sdop is not the leader (standby)",
            self.0
        )
    }
}

impl std::error::Error for NotLeader {}

impl Transport {
    pub fn new(
        gate: Option<Arc<dyn MutationGate>>,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> Arc<Self> {
        Arc::new(Transport {
            buckets: Mutex::new(HashMap::new()),
            gate,
            observer,
        })
    }

    /// Waits for the API's rate limit.
    async fn admit(&self, api: &ApiName) {
        loop {
            let wait = {
                let mut buckets = self.buckets.lock().expect("rate limit lock");
                let now = Instant::now();
                buckets
                    .entry(api.0.clone())
                    .or_insert_with(|| {
                        let (rate, burst) = rate_limit_of(&api.0);
                        TokenBucket::new(rate, burst, now)
                    })
                    .take(now)
            };
            match wait {
                None => return,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    fn record(&self, api: &str, outcome: CallOutcome, bytes: u64) {
        if let Some(observer) = &self.observer {
            observer.call(api, outcome, bytes);
        }
    }

    /// The SDK's default HTTPS client (hyper 1, rustls with aws-lc) wrapped by this transport.
    pub fn http_client(self: &Arc<Self>) -> SharedHttpClient {
        use aws_smithy_http_client::tls;
        let inner = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build_https();
        SharedHttpClient::new(Client {
            inner,
            transport: self.clone(),
        })
    }
}

#[derive(Debug)]
struct Client {
    inner: SharedHttpClient,
    transport: Arc<Transport>,
}

impl HttpClient for Client {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(Connector {
            inner: self.inner.http_connector(settings, components),
            transport: self.transport.clone(),
        })
    }
}

#[derive(Debug)]
struct Connector {
    inner: SharedHttpConnector,
    transport: Arc<Transport>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let api = request
            .extension::<ApiName>()
            .cloned()
            .unwrap_or_else(|| ApiName("unknown:Unknown".into()));
        let transport = self.transport.clone();
        let inner = self.inner.clone();
        let bytes = if api.0.ends_with(":UploadPart") {
            request.body().content_length().unwrap_or(0)
        } else {
            0
        };
        HttpConnectorFuture::new(async move {
            if !api.is_read() {
                if let Some(gate) = &transport.gate {
                    if !gate.may_mutate() {
                        transport.record(&api.0, CallOutcome::NotLeader, 0);
                        return Err(ConnectorError::user(Box::new(NotLeader(api.0.to_string()))));
                    }
                }
            }
            transport.admit(&api).await;
            let response = inner.call(request).await;
            let outcome = match &response {
                Ok(r) => CallOutcome::from_response(
                    r.status().as_u16(),
                    r.headers().get("x-amzn-errortype"),
                ),
                Err(_) => CallOutcome::TransportError,
            };
            let sent = if outcome == CallOutcome::Ok { bytes } else { 0 };
            transport.record(&api.0, outcome, sent);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_mutations() {
        assert!(ApiName("sagemaker:DescribeEndpoint".into()).is_read());
        assert!(ApiName("s3:HeadObject".into()).is_read());
        assert!(ApiName("sagemaker:ListTags".into()).is_read());
        assert!(!ApiName("sagemaker:CreateModel".into()).is_read());
        assert!(!ApiName("s3:PutObject".into()).is_read());
        assert!(!ApiName("s3:UploadPart".into()).is_read());
    }

    #[test]
    fn token_bucket_spaces_calls_at_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2.0, 2.0, start);
        assert_eq!(bucket.take(start), None);
        assert_eq!(bucket.take(start), None);
        let wait = bucket.take(start).expect("burst used up");
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // Half a second later one token is back, and only one.
        let later = start + Duration::from_millis(500);
        assert_eq!(bucket.take(later), None);
        assert!(bucket.take(later).is_some());
        // Never more than the burst saved up.
        let much_later = later + Duration::from_secs(60);
        assert_eq!(bucket.take(much_later), None);
        assert_eq!(bucket.take(much_later), None);
        assert!(bucket.take(much_later).is_some());
    }

    #[test]
    fn sagemaker_list_calls_are_limited_to_a_few_per_second() {
        assert_eq!(rate_limit_of("sagemaker:ListTags"), (2.0, 2.0));
        assert!(rate_limit_of("sagemaker:DescribeEndpoint").0 > 2.0);
        assert!(rate_limit_of("s3:UploadPart").0 >= 100.0);
    }

    #[test]
    fn outcomes_from_http_status() {
        assert_eq!(CallOutcome::from_response(200, None), CallOutcome::Ok);
        assert_eq!(
            CallOutcome::from_response(404, None),
            CallOutcome::ClientError
        );
        assert_eq!(
            CallOutcome::from_response(503, None),
            CallOutcome::Throttled
        );
        assert_eq!(
            CallOutcome::from_response(500, None),
            CallOutcome::ServerError
        );
        assert_eq!(
            CallOutcome::from_response(400, Some("ThrottlingException")),
            CallOutcome::Throttled
        );
        assert_eq!(
            CallOutcome::from_response(400, Some("ValidationException")),
            CallOutcome::ClientError
        );
    }
}
