//! The AWS side: configured clients, the one place SDK errors are classified, ownership tags,
//! and one adapter per AWS object type (read one; create; update with a delta; delete).

pub mod adapters;
pub mod audit;
pub mod autoscaling_endpoint;
pub mod dynamodb_registration;
pub mod ecr_repository;
pub mod model_evaluation;
pub mod model_registry;
pub mod s3_bucket;
pub mod s3_model_archive;
pub mod s3_object;
pub mod sagemaker_endpoint;
pub mod sagemaker_smoke_check;
pub mod sagemaker_training_job;
pub mod stack;
pub mod sweep;
pub mod transport;

use std::collections::{BTreeMap, BTreeSet};

use aws_config::{BehaviorVersion, Region};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::engine::plan::FieldChange;
use crate::error::Error;
use crate::manifest::ResourceId;

/// Tag keys sdop puts on everything it creates.
pub const TAG_MANAGED_BY: &str = "sdop.io/managed-by";
pub const TAG_RESOURCE: &str = "sdop.io/resource";
pub const TAG_SPEC_HASH: &str = "sdop.io/spec-hash";
pub const MANAGED_BY: &str = "sdop";

/// Where to reach AWS: the standard credential chain, with optional overrides.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
}

/// What no retry can fix, found before the first call: no region, no credentials, an
/// endpoint URL nothing answers on. One line each, saying how to set it.
async fn preflight(config: &aws_types::SdkConfig, connection: &Connection) -> Result<(), Error> {
    use aws_sdk_s3::config::ProvideCredentials;
    if config.region().is_none() {
        return Err(Error::Terminal(
            "no AWS region: pass --region or set AWS_REGION (or a region in your AWS profile)"
                .into(),
        ));
    }
    let Some(provider) = config.credentials_provider() else {
        return Err(Error::Terminal(NO_CREDENTIALS.into()));
    };
    match tokio::time::timeout(PREFLIGHT_TIMEOUT, provider.provide_credentials()).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) | Err(_) => return Err(Error::Terminal(NO_CREDENTIALS.into())),
    }
    if let Some(url) = &connection.endpoint_url {
        let address = endpoint_address(url).ok_or_else(|| {
            Error::Terminal(format!(
                "--endpoint-url {url:?} is not an http(s) URL (e.g. http://127.0.0.1:5000)"
            ))
        })?;
        let reached =
            tokio::time::timeout(PREFLIGHT_TIMEOUT, tokio::net::TcpStream::connect(&address)).await;
        if !matches!(reached, Ok(Ok(_))) {
            return Err(Error::Terminal(format!(
                "nothing answers at --endpoint-url {url} ({address}): start the service or fix the URL"
            )));
        }
    }
    Ok(())
}

const PREFLIGHT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const NO_CREDENTIALS: &str = "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, pass --profile (or AWS_PROFILE), or run with an IAM role; `sdop plan --offline` needs none";

/// `host:port` of an http(s) URL (default ports 80 and 443).
fn endpoint_address(url: &str) -> Option<String> {
    let (rest, port) = if let Some(rest) = url.strip_prefix("http://") {
        (rest, 80)
    } else {
        (url.strip_prefix("https://")?, 443)
    };
    let host = rest.split('/').next().filter(|h| !h.is_empty())?;
    Some(
        if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_string()
        } else {
            format!("{host}:{port}")
        },
    )
}

/// Configured clients for every service sdop uses.
#[derive(Clone)]
pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub ecr: aws_sdk_ecr::Client,
    pub cloudformation: aws_sdk_cloudformation::Client,
    pub sagemaker: aws_sdk_sagemaker::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub autoscaling: aws_sdk_applicationautoscaling::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub sagemaker_runtime: aws_sdk_sagemakerruntime::Client,
    /// The Resource Groups Tagging API: every owned object's tags in one listing.
    pub tagging: aws_sdk_resourcegroupstagging::Client,
    pub region: String,
    /// Set when talking to an emulator or a custom endpoint (S3 is then path-style).
    pub endpoint_url: Option<String>,
    /// Multipart uploads in flight, so a shutdown can abort what it interrupts.
    pub uploads: std::sync::Arc<crate::package::multipart::ActiveUploads>,
    /// What the clients were built from (for [`Clients::in_region`]).
    config: aws_types::SdkConfig,
}

impl Clients {
    pub async fn connect(connection: &Connection) -> Result<Clients, Error> {
        Self::connect_through(connection, None).await
    }

    /// As [`Clients::connect`], with every call passing through `transport` (rate limits,
    /// leader gate, call metrics). The clients keep the SDK's default retries (standard mode:
    /// up to 3 attempts of a throttled, 5xx or dropped call, with backoff); a multipart
    /// upload's parts turn them off and retry on their own (`package::multipart`).
    pub async fn connect_through(
        connection: &Connection,
        transport: Option<&std::sync::Arc<transport::Transport>>,
    ) -> Result<Clients, Error> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &connection.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &connection.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &connection.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(transport) = transport {
            loader = loader.http_client(transport.http_client());
        }
        let config = loader.load().await;
        preflight(&config, connection).await?;
        Ok(Clients::from_config(
            &config,
            connection.endpoint_url.clone(),
        ))
    }

    pub fn from_config(config: &aws_types::SdkConfig, endpoint_url: Option<String>) -> Clients {
        let s3_config = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(endpoint_url.is_some())
            .interceptor(transport::OperationName)
            .build();
        let ecr = aws_sdk_ecr::config::Builder::from(config)
            .interceptor(transport::OperationName)
            .build();
        let cloudformation = aws_sdk_cloudformation::config::Builder::from(config)
            .interceptor(transport::OperationName)
            .build();
        let sagemaker = aws_sdk_sagemaker::config::Builder::from(config)
            .interceptor(transport::OperationName)
            .build();
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(config)
            .interceptor(transport::OperationName)
            .build();
        let ssm = aws_sdk_ssm::config::Builder::from(config)
            .interceptor(transport::OperationName)
            .build();
        let autoscaling = aws_sdk_applicationautoscaling::config::Builder::from(config)
            .interceptor(transport::OperationName)
            .build();
        let cloudwatch = aws_sdk_cloudwatch::config::Builder::from(config)
            .interceptor(transport::OperationName)
            .build();
        let sagemaker_runtime = aws_sdk_sagemakerruntime::config::Builder::from(config)
            .interceptor(transport::OperationName)
            .build();
        let tagging = aws_sdk_resourcegroupstagging::config::Builder::from(config)
            .interceptor(transport::OperationName)
            .build();
        Clients {
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            ecr: aws_sdk_ecr::Client::from_conf(ecr),
            cloudformation: aws_sdk_cloudformation::Client::from_conf(cloudformation),
            sagemaker: aws_sdk_sagemaker::Client::from_conf(sagemaker),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
            ssm: aws_sdk_ssm::Client::from_conf(ssm),
            autoscaling: aws_sdk_applicationautoscaling::Client::from_conf(autoscaling),
            cloudwatch: aws_sdk_cloudwatch::Client::from_conf(cloudwatch),
            sagemaker_runtime: aws_sdk_sagemakerruntime::Client::from_conf(sagemaker_runtime),
            tagging: aws_sdk_resourcegroupstagging::Client::from_conf(tagging),
            region: config
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "us-east-1".into()),
            endpoint_url,
            uploads: Default::default(),
            config: config.clone(),
        }
    }

    /// The same clients for `region` (a resource's `spec.region`); uploads stay shared.
    pub fn in_region(&self, region: Option<&str>) -> Clients {
        match region {
            Some(region) if region != self.region => {
                let config = self
                    .config
                    .to_builder()
                    .region(Region::new(region.to_string()))
                    .build();
                Clients {
                    uploads: self.uploads.clone(),
                    ..Clients::from_config(&config, self.endpoint_url.clone())
                }
            }
            _ => self.clone(),
        }
    }

    /// The HTTP(S) URL of an S3 object, as CloudFormation's TemplateURL wants it.
    pub fn s3_object_url(&self, bucket: &str, key: &str) -> String {
        match &self.endpoint_url {
            // The emulator resolves TemplateURL only with host `localhost`.
            Some(url) => format!(
                "{}/{bucket}/{key}",
                url.trim_end_matches('/').replace("127.0.0.1", "localhost")
            ),
            None => format!("https://{bucket}.s3.{}.amazonaws.com/{key}", self.region),
        }
    }
}

/// Ownership tags for objects of `resource` at `spec_hash`, plus the user's tags.
pub fn ownership_tags(
    resource: &ResourceId,
    spec_hash: &str,
    user: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut tags = user.clone();
    tags.insert(TAG_MANAGED_BY.into(), MANAGED_BY.into());
    tags.insert(TAG_RESOURCE.into(), resource.to_string());
    tags.insert(TAG_SPEC_HASH.into(), spec_hash.chars().take(16).collect());
    tags
}

/// The user's tag keys a change of the `tags` field removes (in AWS before, not in the spec):
/// the tagging APIs upsert, so these are untagged explicitly.
pub fn removed_tag_keys(change: &FieldChange) -> Vec<String> {
    let keys = |value: &Option<serde_json::Value>| -> BTreeSet<String> {
        value
            .as_ref()
            .and_then(serde_json::Value::as_object)
            .map(|tags| tags.keys().cloned().collect())
            .unwrap_or_default()
    };
    let wanted = keys(&change.after);
    keys(&change.before)
        .into_iter()
        .filter(|key| !wanted.contains(key) && !key.starts_with("sdop.io/"))
        .collect()
}

/// Splits tags read from AWS into the ownership they express and the user's tags.
pub fn read_ownership(
    tags: &BTreeMap<String, String>,
) -> (Option<ResourceId>, BTreeMap<String, String>) {
    let owner = (tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY))
        .then(|| {
            tags.get(TAG_RESOURCE)
                .and_then(|r| ResourceId::parse_recorded(r))
        })
        .flatten();
    let user = tags
        .iter()
        .filter(|(k, _)| !k.starts_with("sdop.io/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (owner, user)
}

/// Error codes that mean "try again later".
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "SlowDown",
    "RequestThrottled",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// The one classification of AWS SDK errors: retryable or terminal.
pub fn classify<E, R>(operation: &str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    let status = err.raw_response().map(|r| r.status());
    let (code, message) = (
        err.code().map(str::to_string),
        err.message().map(str::to_string),
    );
    let retryable = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        _ => {
            code.as_deref()
                .is_some_and(|c| RETRYABLE_CODES.contains(&c))
                || status.is_some_and(|s| s >= 500 || s == 429)
        }
    };
    let message = message.unwrap_or_else(|| {
        let mut text = aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
        text.truncate(300);
        text
    });
    Error::Aws {
        operation: operation.to_string(),
        code,
        message,
        retryable,
    }
}

/// The HTTP status of a raw response, for classification.
pub trait HttpStatus {
    fn status(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

/// "Not found is a value": `Ok(None)` when `missing` says the error means the object is not
/// there. The one place each adapter's not-found rule is applied.
pub fn absent_if<T>(
    result: Result<T, Error>,
    missing: impl Fn(&Error) -> bool,
) -> Result<Option<T>, Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(err) if missing(&err) => Ok(None),
        Err(err) => Err(err),
    }
}

/// HeadObject with S3's not-found rule: `Ok(None)` when the object (or its bucket) is not there.
pub async fn head_s3_object(
    clients: &Clients,
    bucket: &str,
    key: &str,
) -> Result<Option<aws_sdk_s3::operation::head_object::HeadObjectOutput>, Error> {
    absent_if(
        clients
            .s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify("s3:HeadObject", e)),
        |err| is_not_found(err, &["NotFound", "NoSuchKey", "NoSuchBucket"]),
    )
}

/// Results and records sdop reads whole are at most this large (an async inference's answer,
/// an evaluation record): anything larger is not read.
pub const MAX_READ_BYTES: i64 = 64 * 1024 * 1024;

/// An S3 object read whole by [`get_s3_object`].
#[derive(Debug)]
pub enum S3Read {
    Body(Vec<u8>),
    /// Larger than [`MAX_READ_BYTES`] (its size): not read; each caller says what that means.
    TooLarge(i64),
}

/// GetObject of an object sdop reads whole; `None` when it (or its bucket) does not exist.
pub async fn get_s3_object(
    clients: &Clients,
    bucket: &str,
    key: &str,
) -> Result<Option<S3Read>, Error> {
    let got = absent_if(
        clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify("s3:GetObject", e)),
        |err| is_not_found(err, &["NoSuchKey", "NotFound", "NoSuchBucket"]),
    )?;
    let Some(got) = got else {
        return Ok(None);
    };
    let size = got.content_length().unwrap_or(0);
    if size > MAX_READ_BYTES {
        return Ok(Some(S3Read::TooLarge(size)));
    }
    let bytes = read_s3_body(got.body, &format!("s3://{bucket}/{key}")).await?;
    Ok(Some(S3Read::Body(bytes.to_vec())))
}

/// Reads a GetObject body to the end (a connection cut mid-body is retryable).
pub async fn read_s3_body(
    body: aws_sdk_s3::primitives::ByteStream,
    uri: &str,
) -> Result<bytes::Bytes, Error> {
    body.collect()
        .await
        .map(|b| b.into_bytes())
        .map_err(|e| Error::Aws {
            operation: "s3:GetObject".into(),
            code: None,
            message: format!("reading {uri}: {e}"),
            retryable: true,
        })
}

/// Deletes an S3 object; already gone (or its bucket) is success.
pub async fn delete_s3_object(clients: &Clients, bucket: &str, key: &str) -> Result<(), Error> {
    absent_if(
        clients
            .s3
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify("s3:DeleteObject", e)),
        |err| is_not_found(err, &["NoSuchKey", "NoSuchBucket", "NotFound"]),
    )
    .map(|_| ())
}

/// An SSM parameter's value (decrypted), `None` when there is no such parameter.
pub async fn ssm_parameter(clients: &Clients, name: &str) -> Result<Option<String>, Error> {
    let found = absent_if(
        clients
            .ssm
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| classify("ssm:GetParameter", e)),
        |err| is_not_found(err, &["ParameterNotFound"]),
    )?;
    Ok(found.and_then(|out| out.parameter().and_then(|p| p.value().map(str::to_string))))
}

/// The SSM parameters `spec` reads, as outputs (`SSMParameter/<name>` → `value`); a missing
/// parameter is left out (known after apply).
pub async fn ssm_outputs(
    clients: &Clients,
    parameters: &std::collections::BTreeSet<String>,
) -> Result<crate::engine::cloud::ExternalValues, Error> {
    let mut found = Vec::new();
    for name in parameters {
        if let Some(value) = ssm_parameter(clients, name).await? {
            found.push((
                crate::kinds::ssm_parameter_id(name),
                [("value".to_string(), value)].into(),
            ));
        }
    }
    Ok(found)
}

/// "Already exists" per service and operation, in one table: (operation or service prefix,
/// error code, message fragment). From the AWS API references: SageMaker's Create{Model,
/// EndpointConfig,Endpoint} answer `ValidationException: Cannot create already existing ...`,
/// CreateTrainingJob `ResourceInUse`; S3 CreateBucket `BucketAlreadyOwnedByYou` (the
/// caller's own; `BucketAlreadyExists` is someone else's and stays an error); ECR
/// `RepositoryAlreadyExistsException`; CloudFormation `AlreadyExistsException`.
const ALREADY_EXISTS: &[(&str, &str, &str)] = &[
    (
        "sagemaker:Create",
        "ValidationException",
        "Cannot create already existing",
    ),
    ("sagemaker:CreateTrainingJob", "ResourceInUse", ""),
    ("s3:CreateBucket", "BucketAlreadyOwnedByYou", ""),
    (
        "ecr:CreateRepository",
        "RepositoryAlreadyExistsException",
        "",
    ),
    ("cloudformation:CreateStack", "AlreadyExistsException", ""),
    // Not in the first row's words: "Model Package Group already exists: ARN" (moto's and
    // AWS's ValidationException for CreateModelPackageGroup).
    (
        "sagemaker:CreateModelPackageGroup",
        "ValidationException",
        "already exists",
    ),
];

/// True when a create failed only because the object is already there (whose it is, is for
/// the caller to read).
pub fn already_exists(err: &Error) -> bool {
    let Error::Aws {
        operation,
        code: Some(code),
        message,
        ..
    } = err
    else {
        return false;
    };
    ALREADY_EXISTS.iter().any(|(op, c, fragment)| {
        operation.starts_with(op) && code == c && message.contains(fragment)
    })
}

/// True when an error means the object does not exist.
pub fn is_not_found(err: &Error, codes: &[&str]) -> bool {
    matches!(err, Error::Aws { code: Some(code), .. } if codes.contains(&code.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_counts_the_ownership_tags_sdop_adds() {
        let user: BTreeMap<String, String> = [("team".to_string(), "ml".to_string())].into();
        let tags = ownership_tags(&ResourceId::new("Endpoint", "base"), "abc", &user);
        assert_eq!(
            tags.len(),
            user.len() + crate::model::aws_rules::OWNERSHIP_TAG_COUNT
        );
    }

    #[test]
    fn a_tag_removed_from_the_spec_is_untagged_and_ownership_tags_never_are() {
        let change = FieldChange {
            field: "tags".into(),
            before: Some(serde_json::json!({"team": "ml", "cost": "a", "sdop.io/resource": "x"})),
            after: Some(serde_json::json!({"team": "ops"})),
        };
        assert_eq!(removed_tag_keys(&change), vec!["cost".to_string()]);
    }
}
