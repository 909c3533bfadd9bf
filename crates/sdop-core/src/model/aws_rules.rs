//! AWS's own rules for the values sdop sends: the constraints of AWS's API models
//! ([`super::aws_models`], generated from botocore's service models by
//! `scripts/gen-aws-models.py`) and the limits AWS documents that the models do not encode
//! ([`documented`], each citing its page). `sdop validate` checks every spec value that reaches
//! AWS against them, so a value AWS would refuse is reported at its position instead of failing
//! a CreateEndpoint at apply. The local AWS validates every request against the same models.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// A string member's constraints (length in characters, pattern, enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StringShape {
    /// `service ShapeName` as the model names it, or the documented type.
    pub shape: &'static str,
    pub min: Option<usize>,
    pub max: Option<usize>,
    /// A Java regular expression the whole value must match (AWS's `pattern` trait).
    pub pattern: Option<&'static str>,
    /// The enum's values; empty when the member is not an enum.
    pub values: &'static [&'static str],
}

/// An integer member's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberShape {
    pub shape: &'static str,
    pub min: Option<i64>,
    pub max: Option<i64>,
}

/// A list's or map's number of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountShape {
    pub shape: &'static str,
    pub min: Option<usize>,
    pub max: Option<usize>,
}

/// Patterns in words, for the messages (the pattern itself is printed too).
fn pattern_in_words(pattern: &str) -> Option<&'static str> {
    Some(match pattern {
        r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)" => "letters, digits, spaces and _ . : / = + - @ only",
        "[a-zA-Z_][a-zA-Z0-9_]*" => "an ASCII letter or _, then ASCII letters, digits or _",
        r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*" => {
            "lowercase letters and digits, separated by '.', '_', '__' or hyphens, in components separated by '/'"
        }
        "[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}" => {
            "ASCII letters and digits, with single or repeated - between them"
        }
        _ => return None,
    })
}

/// Compiled patterns, anchored: AWS matches the whole value.
static COMPILED: LazyLock<Mutex<HashMap<&'static str, regex::Regex>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn matches(pattern: &'static str, value: &str) -> bool {
    let mut compiled = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    let regex = compiled.entry(pattern).or_insert_with(|| {
        // Every pattern of the table compiles (unit test `every_pattern_compiles`).
        regex::Regex::new(&format!("^(?:{pattern})$")).expect("AWS pattern compiles")
    });
    regex.is_match(value)
}

impl StringShape {
    /// Checks `value`; the error says which rule, in words, and whose rule it is.
    pub fn check(&self, what: &str, value: &str) -> Result<(), String> {
        let length = value.chars().count();
        if let Some(min) = self.min.filter(|min| length < *min) {
            return Err(if min == 1 {
                format!("{what} must not be empty ({})", self.shape)
            } else {
                format!(
                    "{what} {value:?} has {length} characters; {} needs at least {min}",
                    self.shape
                )
            });
        }
        if let Some(max) = self.max.filter(|max| length > *max) {
            let shown: String = value.chars().take(40).collect();
            return Err(format!(
                "{what} {shown:?}... has {length} characters; {} allows at most {max}",
                self.shape
            ));
        }
        if !self.values.is_empty() && !self.values.contains(&value) {
            let listed = if self.values.len() > 12 {
                format!(
                    "{}, ... ({} in all)",
                    self.values[..12].join(", "),
                    self.values.len()
                )
            } else {
                self.values.join(", ")
            };
            return Err(format!(
                "{what} {value:?} is not one of {}'s values: {listed}",
                self.shape
            ));
        }
        if let Some(pattern) = self.pattern {
            if !matches(pattern, value) {
                let words = pattern_in_words(pattern)
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default();
                return Err(format!(
                    "{what} {value:?} does not match {}'s pattern {pattern}{words}",
                    self.shape
                ));
            }
        }
        Ok(())
    }
}

impl NumberShape {
    pub fn check(&self, what: &str, value: i64) -> Result<(), String> {
        let low = self.min.is_some_and(|min| value < min);
        let high = self.max.is_some_and(|max| value > max);
        if !(low || high) {
            return Ok(());
        }
        let range = match (self.min, self.max) {
            (Some(min), Some(max)) => format!("{min} to {max}"),
            (Some(min), None) => format!("at least {min}"),
            (None, Some(max)) => format!("at most {max}"),
            (None, None) => unreachable!("a bound was crossed"),
        };
        Err(format!(
            "{what} {value} is out of {}'s range: {range}",
            self.shape
        ))
    }
}

impl CountShape {
    pub fn check(&self, what: &str, count: usize) -> Result<(), String> {
        if let Some(max) = self.max.filter(|max| count > *max) {
            return Err(format!(
                "{what} has {count} entries; {} allows at most {max}",
                self.shape
            ));
        }
        if let Some(min) = self.min.filter(|min| count < *min) {
            return Err(format!(
                "{what} has {count} entries; {} needs at least {min}",
                self.shape
            ));
        }
        Ok(())
    }
}

/// Limits AWS documents that its API models do not encode, each with its page.
pub mod documented {
    use super::{CountShape, StringShape};

    /// "Length Constraints: Minimum length of 1. Maximum length of 128."
    /// <https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_Tag.html>
    pub const CLOUDFORMATION_TAG_KEY: StringShape = StringShape {
        shape: "CloudFormation Tag.Key (API_Tag)",
        min: Some(1),
        max: Some(128),
        pattern: None,
        values: &[],
    };
    /// "Length Constraints: Minimum length of 1. Maximum length of 256." (an empty value is
    /// refused) <https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_Tag.html>
    pub const CLOUDFORMATION_TAG_VALUE: StringShape = StringShape {
        shape: "CloudFormation Tag.Value (API_Tag)",
        min: Some(1),
        max: Some(256),
        pattern: None,
        values: &[],
    };
    /// "Tag keys can have a maximum character length of 128 characters, and tag values can
    /// have a maximum length of 256 characters."
    /// <https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_Tag.html>
    pub const ECR_TAG_KEY: StringShape = StringShape {
        shape: "ECR Tag.Key (API_Tag)",
        min: Some(1),
        max: Some(128),
        pattern: None,
        values: &[],
    };
    pub const ECR_TAG_VALUE: StringShape = StringShape {
        shape: "ECR Tag.Value (API_Tag)",
        min: Some(0),
        max: Some(256),
        pattern: None,
        values: &[],
    };
    /// "A tag key can be up to 128 Unicode characters in length, and tag values can be up to
    /// 256 Unicode characters in length"; at most 50 tags on a bucket.
    /// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/tagging-managing.html>,
    /// <https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketTagging.html>
    pub const S3_TAG_KEY: StringShape = StringShape {
        shape: "S3 Tag.Key (bucket tagging)",
        min: Some(1),
        max: Some(128),
        pattern: None,
        values: &[],
    };
    pub const S3_TAG_VALUE: StringShape = StringShape {
        shape: "S3 Tag.Value (bucket tagging)",
        min: Some(0),
        max: Some(256),
        pattern: None,
        values: &[],
    };
    /// "Maximum number of tags per resource: 50" (CloudFormation stacks and ECR repositories
    /// alike) <https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html>
    pub const TAGS_PER_RESOURCE: CountShape = CountShape {
        shape: "AWS tagging (50 tags per resource)",
        min: None,
        max: Some(50),
    };
    /// "The name must be unique in the Region in which you are creating the stack. A stack
    /// name can contain only alphanumeric characters (case-sensitive) and hyphens. It must
    /// start with an alphabetic character and can't be longer than 128 characters."
    /// <https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStack.html>
    pub const CLOUDFORMATION_STACK_NAME: StringShape = StringShape {
        shape: "CloudFormation StackName (API_CreateStack)",
        min: Some(1),
        max: Some(128),
        pattern: Some("[a-zA-Z][-a-zA-Z0-9]*"),
        values: &[],
    };
}

/// How many tags sdop adds to a resource's own (`sdop.io/managed-by`, `sdop.io/resource`,
/// `sdop.io/spec-hash`; `aws::ownership_tags`, whose test holds it to this number).
pub const OWNERSHIP_TAG_COUNT: usize = 3;

/// Which service a resource's tags go to: each has its own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagRules {
    S3,
    Ecr,
    CloudFormation,
    SageMaker,
    /// A scalable target's tags (Application Auto Scaling), besides SageMaker's.
    ApplicationAutoScaling,
}

impl TagRules {
    pub fn key_and_value(self) -> (StringShape, StringShape) {
        use super::aws_models as m;
        match self {
            TagRules::S3 => (documented::S3_TAG_KEY, documented::S3_TAG_VALUE),
            TagRules::Ecr => (documented::ECR_TAG_KEY, documented::ECR_TAG_VALUE),
            TagRules::CloudFormation => (
                documented::CLOUDFORMATION_TAG_KEY,
                documented::CLOUDFORMATION_TAG_VALUE,
            ),
            TagRules::SageMaker => (m::SAGEMAKER_TAG_KEY, m::SAGEMAKER_TAG_VALUE),
            TagRules::ApplicationAutoScaling => (
                m::APPLICATION_AUTOSCALING_TAG_KEY,
                m::APPLICATION_AUTOSCALING_TAG_VALUE,
            ),
        }
    }

    /// How many tags a request may carry, sdop's two ownership tags included.
    pub fn count(self) -> CountShape {
        match self {
            TagRules::SageMaker => super::aws_models::SAGEMAKER_TAG_LIST,
            _ => documented::TAGS_PER_RESOURCE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::aws_models as m;
    use super::*;

    /// Every pattern the table holds compiles with the `regex` crate's syntax.
    #[test]
    fn every_pattern_compiles() {
        let patterns = [
            m::SAGEMAKER_TAG_KEY,
            m::SAGEMAKER_TAG_VALUE,
            m::SAGEMAKER_ENVIRONMENT_KEY,
            m::SAGEMAKER_ENVIRONMENT_VALUE,
            m::SAGEMAKER_ENDPOINT_NAME,
            m::SAGEMAKER_TRAINING_JOB_NAME,
            m::SAGEMAKER_HYPER_PARAMETER_KEY,
            m::SAGEMAKER_HYPER_PARAMETER_VALUE,
            m::SAGEMAKER_S3_URI,
            m::SAGEMAKER_CONTAINER_IMAGE,
            m::SAGEMAKER_ROLE_ARN,
            m::ECR_REPOSITORY_NAME,
            documented::CLOUDFORMATION_STACK_NAME,
        ];
        for shape in patterns {
            let pattern = shape.pattern.expect("has a pattern");
            regex::Regex::new(&format!("^(?:{pattern})$"))
                .unwrap_or_else(|e| panic!("{}: {e}", shape.shape));
        }
    }

    #[test]
    fn the_refused_inputs_of_issue_22_are_refused_in_words() {
        let value = m::SAGEMAKER_TAG_VALUE;
        assert!(value.check("tag", "workshop-1").is_ok());
        assert!(value.check("tag", "Ünïcode letters ok").is_ok());
        for bad in ["R&D", "SD 1.5, workshop"] {
            let err = value.check("tag team", bad).unwrap_err();
            assert!(err.contains("sagemaker TagValue's pattern"), "{err}");
            assert!(err.contains("letters, digits, spaces"), "{err}");
        }
        let key = m::SAGEMAKER_ENVIRONMENT_KEY;
        assert!(key.check("environment name", "api_endpoint").is_ok());
        let err = key.check("environment name", "hf.cache-dir").unwrap_err();
        assert!(err.contains("sagemaker EnvironmentKey"), "{err}");
        let long = "x".repeat(1025);
        let err = m::SAGEMAKER_ENVIRONMENT_VALUE
            .check("environment value", &long)
            .unwrap_err();
        assert!(
            err.contains("1025 characters") && err.contains("at most 1024"),
            "{err}"
        );
        assert!(m::SAGEMAKER_ENVIRONMENT_VALUE
            .check("environment value", &"x".repeat(1024))
            .is_ok());
    }

    #[test]
    fn ranges_counts_and_enums() {
        let timeout =
            m::SAGEMAKER_PRODUCTION_VARIANT_CONTAINER_STARTUP_HEALTH_CHECK_TIMEOUT_IN_SECONDS;
        assert!(timeout.check("t", 60).is_ok());
        assert!(timeout.check("t", 59).unwrap_err().contains("60 to 3600"));
        assert!(m::SAGEMAKER_ENVIRONMENT_MAP.check("env", 101).is_err());
        assert!(m::SAGEMAKER_ENVIRONMENT_MAP.check("env", 100).is_ok());
        assert!(m::ECR_IMAGE_TAG_MUTABILITY.check("m", "IMMUTABLE").is_ok());
        let err = m::ECR_IMAGE_TAG_MUTABILITY
            .check("m", "immutable")
            .unwrap_err();
        assert!(err.contains("MUTABLE, IMMUTABLE"), "{err}");
        let err = documented::CLOUDFORMATION_TAG_VALUE
            .check("tag", "")
            .unwrap_err();
        assert!(err.contains("must not be empty"), "{err}");
    }

    /// The checked-in table is what `scripts/gen-aws-models.py` writes from the pinned
    /// botocore (installed by `deploy/local-aws/up --install-only`, which `scripts/test` runs
    /// first): a moved pin without a regenerated table fails here.
    #[test]
    fn the_table_is_generated_from_the_pinned_models() {
        // The repository root, two levels above the crate.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let python = root.join("deploy/local-aws/.venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run deploy/local-aws/up --install-only (scripts/test does)",
            python.display()
        );
        let out = std::process::Command::new(&python)
            .arg(root.join("scripts/gen-aws-models.py"))
            .arg("--print")
            .output()
            .expect("run scripts/gen-aws-models.py");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let checked_in =
            std::fs::read_to_string(root.join("crates/sdop-core/src/model/aws_models.rs")).unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout) == checked_in,
            "crates/sdop-core/src/model/aws_models.rs is stale: run deploy/local-aws/.venv/bin/python scripts/gen-aws-models.py"
        );
    }
}
