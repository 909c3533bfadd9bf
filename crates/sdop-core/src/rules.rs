//! AWS input rules: names, S3 URIs, ARNs, instance types. Pure functions returning a message.

/// Room kept at the end of a SageMaker base name for `-` plus the content-hash suffix.
pub const HASH_SUFFIX_LEN: usize = 1 + crate::model::naming::HASH_LEN;
/// SageMaker names (models, endpoint configs, endpoints, training jobs) are at most 63 characters.
pub const SAGEMAKER_NAME_MAX: usize = 63;

/// A SageMaker name that sdop will suffix with `-<hash>`: `^[a-zA-Z0-9](-*[a-zA-Z0-9])*$`.
pub fn sagemaker_base_name(name: &str) -> Result<(), String> {
    let max = SAGEMAKER_NAME_MAX - HASH_SUFFIX_LEN;
    sagemaker_name_shape(name)?;
    if name.len() > max {
        return Err(format!(
            "SageMaker name {name:?} is {} characters; at most {max} are allowed so that sdop's \
             {HASH_SUFFIX_LEN}-character content-hash suffix fits in SageMaker's {SAGEMAKER_NAME_MAX}",
            name.len()
        ));
    }
    Ok(())
}

/// A SageMaker name used as is (an endpoint name): at most 63 characters.
pub fn sagemaker_name(name: &str) -> Result<(), String> {
    sagemaker_name_shape(name)?;
    if name.len() > SAGEMAKER_NAME_MAX {
        return Err(format!(
            "SageMaker name {name:?} is {} characters; at most {SAGEMAKER_NAME_MAX} are allowed",
            name.len()
        ));
    }
    Ok(())
}

fn sagemaker_name_shape(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "SageMaker name {name:?} must be letters, digits and hyphens, starting and ending with a letter or digit"
        ))
    }
}

/// S3 bucket naming rules (general purpose buckets).
pub fn bucket_name(name: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("S3 bucket name {name:?} {why}"));
    if name.len() < 3 || name.len() > 63 {
        return fail("must be 3 to 63 characters long");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return fail("may contain only lowercase letters, digits, '.' and '-'");
    }
    let first = name.chars().next().unwrap_or('-');
    let last = name.chars().last().unwrap_or('-');
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return fail("must begin and end with a letter or digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return fail("must not contain adjacent periods or a period next to a hyphen");
    }
    if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return fail("must not be formatted as an IP address");
    }
    if name.starts_with("xn--") || name.starts_with("sthree-") || name.starts_with("amzn-s3-demo-")
    {
        return fail("must not start with a reserved prefix (xn--, sthree-, amzn-s3-demo-)");
    }
    if name.ends_with("-s3alias") || name.ends_with("--ol-s3") || name.ends_with("--x-s3") {
        return fail("must not end with a reserved suffix (-s3alias, --ol-s3, --x-s3)");
    }
    Ok(())
}

/// ECR image tags: 1-128 characters of `[a-zA-Z0-9_.-]`, not starting with '.' or '-'.
pub fn image_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !tag.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "image tag {tag:?} must be 1 to 128 characters of letters, digits, '_', '.', '-', not starting with '.' or '-'"
        ))
    }
}

/// CloudFormation stack names: a letter, then letters, digits and hyphens; at most 128 characters.
pub fn stack_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "CloudFormation stack name {name:?} must start with a letter and contain only letters, digits and hyphens (at most 128)"
        ))
    }
}

/// A parsed `s3://bucket/key` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Uri {
    pub bucket: String,
    pub key: String,
}

impl S3Uri {
    /// True when the URI names a prefix (ends with `/` or is the bucket root).
    pub fn is_prefix(&self) -> bool {
        self.key.is_empty() || self.key.ends_with('/')
    }
}

impl std::fmt::Display for S3Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

pub fn s3_uri(uri: &str) -> Result<S3Uri, String> {
    let Some(rest) = uri.strip_prefix("s3://") else {
        return Err(format!(
            "{uri:?} is not an S3 URI (expected s3://BUCKET/KEY)"
        ));
    };
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    bucket_name(bucket).map_err(|e| format!("in S3 URI {uri:?}: {e}"))?;
    if key.contains("//") {
        return Err(format!("S3 URI {uri:?} has an empty path segment ('//')"));
    }
    if key.len() > 1024 {
        return Err(format!("S3 URI {uri:?} has a key longer than 1024 bytes"));
    }
    Ok(S3Uri {
        bucket: bucket.to_string(),
        key: key.to_string(),
    })
}

/// An S3 URI that must name one object (not a prefix).
pub fn s3_object_uri(uri: &str) -> Result<S3Uri, String> {
    let parsed = s3_uri(uri)?;
    if parsed.is_prefix() {
        return Err(format!("S3 URI {uri:?} must name an object, not a prefix"));
    }
    Ok(parsed)
}

/// An S3 URI that must name a prefix (ends with `/`).
pub fn s3_prefix_uri(uri: &str) -> Result<S3Uri, String> {
    let parsed = s3_uri(uri)?;
    if !parsed.is_prefix() {
        return Err(format!(
            "S3 URI {uri:?} must name a prefix and end with '/'"
        ));
    }
    Ok(parsed)
}

/// An SSM parameter name (AWS: `a-zA-Z0-9_.-/`, at most 2048 characters).
pub fn ssm_parameter_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 2048
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
}

/// An IAM role ARN: `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`.
pub fn iam_role_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && matches!(parts[1], "aws" | "aws-cn" | "aws-us-gov")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{arn:?} is not an IAM role ARN (expected arn:aws:iam::123456789012:role/NAME)"
        ))
    }
}

/// SageMaker instance types: `ml.<family>.<size>`, e.g. `ml.g4dn.2xlarge`.
pub fn instance_type(value: &str) -> Result<(), String> {
    let parts: Vec<&str> = value.split('.').collect();
    let ok = parts.len() == 3
        && parts[0] == "ml"
        && parts[1..].iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
    if !ok {
        return Err(format!(
            "{value:?} is not a SageMaker instance type (expected ml.FAMILY.SIZE, e.g. ml.g4dn.2xlarge)"
        ));
    }
    // Every accepted type has a price, so every plan can say what it costs.
    let known = crate::cost::known_instance_types();
    if known.contains(&value) {
        return Ok(());
    }
    let family = value.rsplit_once('.').map_or(value, |(f, _)| f);
    let same_family: Vec<&str> = known
        .iter()
        .copied()
        .filter(|k| k.starts_with(&format!("{family}.")))
        .collect();
    Err(if same_family.is_empty() {
        format!(
            "{value:?} is not an instance type in sdop's price table (src/cost/prices.json, recorded {}); add it there with its price",
            crate::cost::PRICES.recorded
        )
    } else {
        format!(
            "{value:?} is not an instance type in sdop's price table (known {family}: {}); add it to src/cost/prices.json with its price",
            same_family.join(", ")
        )
    })
}

/// AWS region names such as `us-east-1`.
pub fn region(value: &str) -> Result<(), String> {
    let parts: Vec<&str> = value.split('-').collect();
    let ok = parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not an AWS region (expected e.g. us-east-1)"
        ))
    }
}

/// Kubernetes-style resource names (metadata.name): DNS-1123 label, at most 63 characters.
pub fn resource_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "metadata.name {name:?} must be 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit"
        ))
    }
}

/// AWS resource tags: keys 1-128 characters, values at most 256; `aws:` is reserved.
pub fn tag(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 128 {
        return Err(format!("tag key {key:?} must be 1 to 128 characters"));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(format!("tag key {key:?} uses the reserved prefix 'aws:'"));
    }
    if key.starts_with("sdop.io/") {
        return Err(format!(
            "tag key {key:?} uses the prefix 'sdop.io/', which sdop reserves for ownership tags"
        ));
    }
    if value.len() > 256 {
        return Err(format!(
            "tag {key:?} has a value longer than 256 characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        assert!(bucket_name("sdop-demo-assets").is_ok());
        assert!(bucket_name("a.b-c").is_ok());
        for bad in [
            "ab",
            "Upper",
            "-lead",
            "trail-",
            "a..b",
            "192.168.1.1",
            "xn--x",
            "a_b",
        ] {
            assert!(bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sagemaker_names_leave_room_for_the_hash() {
        assert!(sagemaker_base_name("sd-base").is_ok());
        let max = "a".repeat(SAGEMAKER_NAME_MAX - HASH_SUFFIX_LEN);
        assert!(sagemaker_base_name(&max).is_ok());
        assert!(sagemaker_base_name(&format!("{max}a")).is_err());
        assert!(sagemaker_name(&"a".repeat(63)).is_ok());
        assert!(sagemaker_name(&"a".repeat(64)).is_err());
        assert!(sagemaker_name("under_score").is_err());
        assert!(sagemaker_name("-x").is_err());
    }

    #[test]
    fn ecr_names_follow_the_model() {
        let name = crate::model::aws_models::ECR_REPOSITORY_NAME;
        // ECR's model allows repeated hyphens and a double underscore between components.
        for good in [
            "all-in-one-ai-stable-diffusion-webui",
            "team/sd_webui.v2",
            "a--b",
            "a__b",
        ] {
            assert!(name.check("name", good).is_ok(), "{good}");
        }
        for bad in ["A", "Upper/x", "a//b", "a___b", "trailing-", "/lead"] {
            assert!(name.check("name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uris_arns_instances() {
        assert_eq!(
            s3_uri("s3://bucket-1/a/b.tar.gz").unwrap(),
            S3Uri {
                bucket: "bucket-1".into(),
                key: "a/b.tar.gz".into()
            }
        );
        assert!(s3_uri("https://x/y").is_err());
        assert!(s3_uri("s3://Bad/x").is_err());
        assert!(s3_object_uri("s3://bucket/dir/").is_err());
        assert!(s3_prefix_uri("s3://bucket/dir").is_err());
        assert!(iam_role_arn("arn:aws:iam::123456789012:role/SageMakerRole").is_ok());
        assert!(iam_role_arn("arn:aws:iam::12345:role/x").is_err());
        assert!(iam_role_arn("arn:aws:s3:::bucket").is_err());
        assert!(instance_type("ml.g4dn.2xlarge").is_ok());
        assert!(instance_type("g4dn.2xlarge").is_err());
        assert!(region("us-east-1").is_ok());
        assert!(region("useast1").is_err());
        assert!(stack_name("all-in-one-ai-webui").is_ok());
        assert!(stack_name("1stack").is_err());
        assert!(image_tag("latest").is_ok());
        assert!(image_tag("-x").is_err());
        assert!(resource_name("jpstyle").is_ok());
        assert!(resource_name("JP").is_err());
        assert!(tag("aws:x", "").is_err());
        assert!(tag("AWS:Owner", "").is_err());
    }
}
