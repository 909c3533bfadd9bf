//! What billable capacity costs per hour: the price table shipped in the repo
//! (`src/cost/prices.json`, with its source and date) and the arithmetic on it. Pure; at the
//! bottom of the layers with `model`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct PriceTable {
    pub source: String,
    pub recorded: String,
    /// Region → instance type → USD per instance-hour.
    pub regions: BTreeMap<String, BTreeMap<String, f64>>,
}

pub static PRICES: LazyLock<PriceTable> = LazyLock::new(|| {
    serde_json::from_str(include_str!("prices.json")).expect("src/cost/prices.json is valid")
});

static KNOWN: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut all: Vec<&'static str> = PRICES
        .regions
        .values()
        .flat_map(|types| types.keys().map(String::as_str))
        .collect();
    all.sort();
    all.dedup();
    all
});

/// Every instance type the table knows (in any region), sorted: what validation accepts.
pub fn known_instance_types() -> &'static [&'static str] {
    &KNOWN
}

/// USD per hour of `count` instances of `instance_type` in `region`; `None`: not in the table.
pub fn hourly(instance_type: &str, count: u32, region: &str) -> Option<f64> {
    PRICES
        .regions
        .get(region)?
        .get(instance_type)
        .map(|price| price * f64::from(count))
}

/// Billable capacity: `count` instances of `instance_type` (an endpoint's variant, a training
/// job while it runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    pub instance_type: String,
    pub instance_count: u32,
    /// Billed only while it runs (a training job), not every hour it exists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub while_running: bool,
}

/// The hourly cost an action changes: before and after, in one region.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CostChange {
    pub region: String,
    pub before: Option<Capacity>,
    pub after: Option<Capacity>,
    /// Autoscaling an action sets up: the bill moves between its bounds (shown, not summed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaled: Option<Autoscaled>,
}

/// Capacity that autoscaling moves between `min` and `max` instances of `instance_type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Autoscaled {
    pub instance_type: String,
    pub min: u32,
    pub max: u32,
}

/// A cost paid once, not by the hour: an evaluation's staging instance time (shown in the plan,
/// not in the hourly totals).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OneOff {
    pub what: String,
    /// The instance type that does the work, when known.
    pub instance_type: Option<String>,
    /// The instance time it takes, estimated.
    pub seconds: u64,
}

impl OneOff {
    /// `evaluation: 6 images on the staging endpoint, about 2 min of ml.g4dn.2xlarge (~$0.03
    /// once, plus start-up if it scaled to zero)`.
    pub fn describe(&self, region: &str) -> String {
        let minutes = self.seconds.div_ceil(60);
        match &self.instance_type {
            Some(instance) => match hourly(instance, 1, region) {
                Some(price) => format!(
                    "{}, about {minutes} min of {instance} (~${:.2} once at ${price:.3}/h in {region}; plus start-up if it scaled to zero)",
                    self.what,
                    price * self.seconds as f64 / 3600.0
                ),
                None => format!(
                    "{}, about {minutes} min of {instance} (no price for it in {region} in sdop's price table)",
                    self.what
                ),
            },
            None => format!("{}, about {minutes} min of instance time", self.what),
        }
    }
}

/// A price, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum Price {
    Hourly(f64),
    Unknown(String),
}

impl Price {
    fn of(capacity: &Option<Capacity>, region: &str) -> Price {
        match capacity {
            None => Price::Hourly(0.0),
            Some(c) => match hourly(&c.instance_type, c.instance_count, region) {
                Some(price) => Price::Hourly(price),
                None => Price::Unknown(format!(
                    "no price for {} in {region} in sdop's price table",
                    c.instance_type
                )),
            },
        }
    }
}

impl CostChange {
    pub fn before_price(&self) -> Price {
        Price::of(&self.before, &self.region)
    }

    pub fn after_price(&self) -> Price {
        Price::of(&self.after, &self.region)
    }

    /// After minus before, when both are known.
    pub fn delta(&self) -> Price {
        match (self.before_price(), self.after_price()) {
            (Price::Hourly(b), Price::Hourly(a)) => Price::Hourly(a - b),
            (Price::Unknown(why), _) | (_, Price::Unknown(why)) => Price::Unknown(why),
        }
    }

    /// `+$0.94/h`, `-$0.94/h (ml.g4dn.2xlarge x1 -> none)`, `price unknown (...)`.
    pub fn describe(&self) -> String {
        let side = |c: &Option<Capacity>| match c {
            None => "none".to_string(),
            Some(c) => format!(
                "{} x{}{}",
                c.instance_type,
                c.instance_count,
                if c.while_running {
                    " while running"
                } else {
                    ""
                }
            ),
        };
        if let Some(scaled) = &self.autoscaled {
            let at = |count: u32| match hourly(&scaled.instance_type, count, &self.region) {
                Some(price) => format!("${price:.2}/h"),
                None => "price unknown".to_string(),
            };
            return format!(
                "autoscaled between {} at {} and {} at {} x {} (not in the totals)",
                at(scaled.min),
                scaled.min,
                at(scaled.max),
                scaled.max,
                scaled.instance_type
            );
        }
        let what = format!("{} -> {}", side(&self.before), side(&self.after));
        match self.delta() {
            Price::Hourly(d) => format!("{}/h, {what}", dollars_signed(d)),
            Price::Unknown(why) => format!("price unknown: {why}; {what}"),
        }
    }
}

pub fn dollars_signed(amount: f64) -> String {
    let sign = if amount < 0.0 { "-" } else { "+" };
    format!("{sign}${:.2}", amount.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity(t: &str, n: u32) -> Option<Capacity> {
        Some(Capacity {
            instance_type: t.into(),
            instance_count: n,
            while_running: false,
        })
    }

    #[test]
    fn the_table_is_dated_sourced_and_prices_what_the_workshop_uses() {
        assert!(PRICES.source.contains("aws.amazon.com/sagemaker/pricing"));
        assert!(!PRICES.recorded.is_empty());
        assert_eq!(hourly("ml.g4dn.2xlarge", 2, "us-east-1"), Some(1.88));
        assert_eq!(hourly("ml.g4dn.2xlarge", 1, "eu-west-3"), None);
        assert!(known_instance_types().contains(&"ml.g5.xlarge"));
    }

    #[test]
    fn deltas_and_unknowns() {
        let change = CostChange {
            autoscaled: None,
            region: "us-east-1".into(),
            before: capacity("ml.g4dn.xlarge", 1),
            after: capacity("ml.g4dn.2xlarge", 1),
        };
        assert!(
            change.describe().starts_with("+$0.20/h"),
            "{}",
            change.describe()
        );
        let gone = CostChange {
            autoscaled: None,
            after: None,
            ..change.clone()
        };
        assert!(
            gone.describe().starts_with("-$0.74/h"),
            "{}",
            gone.describe()
        );
        let elsewhere = CostChange {
            autoscaled: None,
            region: "eu-west-3".into(),
            ..change
        };
        assert!(
            matches!(elsewhere.delta(), Price::Unknown(why) if why.contains("eu-west-3")),
            "{elsewhere:?}"
        );
    }

    #[test]
    fn autoscaling_shows_its_range_and_adds_nothing() {
        let change = CostChange {
            region: "us-east-1".into(),
            before: None,
            after: None,
            autoscaled: Some(Autoscaled {
                instance_type: "ml.g4dn.2xlarge".into(),
                min: 0,
                max: 2,
            }),
        };
        assert_eq!(change.delta(), Price::Hourly(0.0));
        assert_eq!(
            change.describe(),
            "autoscaled between $0.00/h at 0 and $1.88/h at 2 x ml.g4dn.2xlarge (not in the totals)"
        );
    }
}
