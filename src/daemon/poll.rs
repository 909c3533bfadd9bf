//! Adaptive polling of resources in progress (pure). Fast at first; then the interval grows
//! with the time already spent, so a finish is noticed at most ~2.5% late (never a fixed
//! 30 s); and fast again near the finish expected from the durations this daemon has seen for
//! the same kind of change.

use std::collections::HashMap;
use std::time::Duration;

pub const MIN_POLL: Duration = Duration::from_millis(500);
pub const MAX_POLL: Duration = Duration::from_secs(60);
/// The interval is this share of the time spent so far.
const SHARE_OF_ELAPSED: f64 = 0.025;
/// Near the expected finish: from this share of the expected duration on, poll at `MIN_POLL`.
const WINDOW_START: f64 = 0.9;
const WINDOW_END: f64 = 1.5;

/// When to look again at something in progress for `elapsed`, expected to take `expected`.
pub fn next_poll(elapsed: Duration, expected: Option<Duration>) -> Duration {
    let grown = elapsed.mul_f64(SHARE_OF_ELAPSED).clamp(MIN_POLL, MAX_POLL);
    let Some(expected) = expected else {
        return grown;
    };
    let start = expected.mul_f64(WINDOW_START);
    let end = expected.mul_f64(WINDOW_END);
    if elapsed < start {
        // Do not sleep past the start of the window.
        grown.min(start - elapsed).max(MIN_POLL)
    } else if elapsed < end {
        MIN_POLL
    } else {
        grown
    }
}

/// Durations seen per kind of change (`Endpoint Creating`, `DreamboothJob InProgress`...),
/// smoothed: what this daemon expects the next one to take.
#[derive(Debug, Default)]
pub struct Expectations {
    seen: HashMap<String, Duration>,
}

impl Expectations {
    pub fn expected(&self, what: &str) -> Option<Duration> {
        self.seen.get(what).copied()
    }

    pub fn observe(&mut self, what: &str, took: Duration) {
        let next = match self.seen.get(what) {
            Some(before) => before.mul_f64(0.5) + took.mul_f64(0.5),
            None => took,
        };
        self.seen.insert(what.to_string(), next);
    }
}

/// The kind of change a Progressing message describes: its first word (`Creating`,
/// `Updating`, `InProgress`, `CREATE_IN_PROGRESS`), per kind.
pub fn change_key(kind: &str, message: &str) -> String {
    let word = message.split_whitespace().next().unwrap_or("");
    format!("{kind} {word}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn fast_at_first_then_growing_with_elapsed_never_fixed() {
        assert_eq!(next_poll(s(0.0), None), MIN_POLL);
        assert_eq!(next_poll(s(10.0), None), MIN_POLL);
        assert_eq!(next_poll(s(120.0), None), s(3.0));
        assert_eq!(next_poll(s(600.0), None), s(15.0));
        assert_eq!(next_poll(s(7200.0), None), MAX_POLL);
        // Lateness bound: polling at t with interval i notices a finish by t + i <= t * 1.025.
        for t in [30.0, 100.0, 480.0, 1800.0] {
            assert!(next_poll(s(t), None) <= s(t * 0.025).max(MIN_POLL));
        }
    }

    #[test]
    fn fast_again_near_the_expected_finish() {
        let expected = Some(s(600.0));
        // Far from the end: the grown interval, but never sleeping into the window.
        assert_eq!(next_poll(s(300.0), expected), s(7.5));
        assert_eq!(next_poll(s(538.0), expected), s(2.0));
        // In the window [0.9, 1.5] of the expected duration: as fast as allowed.
        assert_eq!(next_poll(s(560.0), expected), MIN_POLL);
        assert_eq!(next_poll(s(850.0), expected), MIN_POLL);
        // Well past it: back to growing.
        assert_eq!(next_poll(s(1200.0), expected), s(30.0));
    }

    #[test]
    fn expectations_learn_a_smoothed_duration_per_change() {
        let mut e = Expectations::default();
        let key = change_key("Endpoint", "Creating");
        assert_eq!(key, "Endpoint Creating");
        assert_eq!(e.expected(&key), None);
        e.observe(&key, s(100.0));
        assert_eq!(e.expected(&key), Some(s(100.0)));
        e.observe(&key, s(200.0));
        assert_eq!(e.expected(&key), Some(s(150.0)));
        assert_eq!(e.expected("Endpoint Updating"), None);
    }
}
