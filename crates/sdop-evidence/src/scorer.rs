//! The hook for a model-based score of an image against its prompt.
//!
//! A CLIP-style score (how well the image matches the prompt, or an aesthetic score) needs model
//! weights that sdop cannot ship, and a fake score would be worse than none: an evidence record
//! must only hold what was measured. So no scorer is implemented here and none is registered by
//! default; a deployment that has a model implements [`Scorer`], registers it, and its scores
//! land in each [`CaseRecord::scores`] and, averaged, in the record's `scores`. The verdict does
//! not use scores yet: a threshold on a score belongs with the first real scorer.

use crate::record::CaseRecord;
use crate::EvidenceError;

/// Scores one image against the prompt it was made from.
pub trait Scorer: Send + Sync {
    /// The key of its scores in the record: stable, say `clip-vit-b32`.
    fn name(&self) -> &str;
    /// The score of `png` for `prompt`, or why there is none. A score that is not a finite
    /// number is recorded as an error (JSON has no NaN).
    fn score(&self, prompt: &str, png: &[u8]) -> Result<f64, String>;
}

/// The registered scorers, run in registration order.
#[derive(Default)]
pub struct Scorers {
    scorers: Vec<Box<dyn Scorer>>,
}

impl std::fmt::Debug for Scorers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Scorers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a scorer; its name must be new.
    pub fn register(&mut self, scorer: Box<dyn Scorer>) -> Result<(), EvidenceError> {
        if self.names().any(|n| n == scorer.name()) {
            return Err(EvidenceError::DuplicateScorer(scorer.name().to_string()));
        }
        self.scorers.push(scorer);
        Ok(())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.scorers.iter().map(|s| s.name())
    }

    pub fn is_empty(&self) -> bool {
        self.scorers.is_empty()
    }

    /// Runs every scorer on the case's image into its `scores`, or `score_errors` for a scorer
    /// that fails. A case whose image did not decode is not scored. Call before
    /// [`crate::EvidenceRecord::new`], which averages the scores.
    pub fn score_into(&self, case: &mut CaseRecord, png: &[u8]) {
        if !case.measurement.decoded {
            return;
        }
        for scorer in &self.scorers {
            let name = scorer.name().to_string();
            match scorer.score(&case.prompt, png) {
                Ok(score) if score.is_finite() => {
                    case.scores.insert(name, score);
                }
                Ok(score) => {
                    case.score_errors
                        .insert(name, format!("not a finite score: {score}"));
                }
                Err(error) => {
                    case.score_errors.insert(name, error);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Evaluation, EvidenceRecord};
    use crate::test_support::{case, gradient};
    use crate::Thresholds;

    /// A test double, not a score of anything: the length of the prompt.
    struct PromptLength;
    impl Scorer for PromptLength {
        fn name(&self) -> &str {
            "promptLength"
        }
        fn score(&self, prompt: &str, _png: &[u8]) -> Result<f64, String> {
            Ok(prompt.len() as f64)
        }
    }

    struct Failing(&'static str, Result<f64, String>);
    impl Scorer for Failing {
        fn name(&self) -> &str {
            self.0
        }
        fn score(&self, _: &str, _: &[u8]) -> Result<f64, String> {
            self.1.clone()
        }
    }

    #[test]
    fn scores_land_in_the_cases_and_their_mean_in_the_record() {
        let mut scorers = Scorers::new();
        assert!(scorers.is_empty());
        scorers.register(Box::new(PromptLength)).expect("register");
        scorers
            .register(Box::new(Failing("model", Err("no weights".into()))))
            .expect("register");
        scorers
            .register(Box::new(Failing("nan", Ok(f64::NAN))))
            .expect("register");
        assert_eq!(
            scorers.register(Box::new(PromptLength)),
            Err(EvidenceError::DuplicateScorer("promptLength".into()))
        );
        assert_eq!(
            scorers.names().collect::<Vec<_>>(),
            ["promptLength", "model", "nan"]
        );

        let png = gradient(64, 64);
        let mut cases = vec![
            CaseRecord::with_image(case("ab", 1), &png, None, None, None),
            CaseRecord::with_image(case("abcd", 2), &png, None, None, None),
            CaseRecord::with_image(case("garbage", 3), b"garbage", None, None, None),
        ];
        for c in &mut cases {
            scorers.score_into(c, &png);
        }
        assert_eq!(cases[0].scores.get("promptLength"), Some(&2.0));
        assert_eq!(
            cases[0].score_errors.get("model").map(String::as_str),
            Some("no weights")
        );
        assert_eq!(
            cases[0].score_errors.get("nan").map(String::as_str),
            Some("not a finite score: NaN")
        );
        assert!(
            cases[2].scores.is_empty() && cases[2].score_errors.is_empty(),
            "undecoded: not scored"
        );

        let evaluation = Evaluation {
            candidate: "c".into(),
            baseline: None,
            endpoint: "e".into(),
            instance_type: "ml.g5.xlarge".into(),
            price_per_hour_usd: None,
        };
        let record = EvidenceRecord::new(evaluation, cases, Thresholds::default());
        assert_eq!(
            record.scores.into_iter().collect::<Vec<_>>(),
            [("promptLength".to_string(), 3.0)]
        );
    }
}
