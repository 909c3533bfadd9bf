//! The work queue (pure: every method takes `now`). At most one reconcile per resource at a
//! time: a resource asked for while it is in flight is marked dirty and runs again right after.
//! A global limit bounds how many run at once; errors back off per resource.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::manifest::ResourceId;

/// First and largest retry delay after errors of one resource.
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
pub struct WorkQueue {
    due: BTreeMap<ResourceId, Instant>,
    in_flight: BTreeSet<ResourceId>,
    dirty: BTreeSet<ResourceId>,
    failures: HashMap<ResourceId, u32>,
}

impl WorkQueue {
    /// Runs `id` at `at` (or earlier if it is already due earlier).
    pub fn schedule(&mut self, id: &ResourceId, at: Instant) {
        self.due
            .entry(id.clone())
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
    }

    /// Runs `id` as soon as it may: now, or right after its reconcile in flight.
    pub fn wake(&mut self, id: &ResourceId, now: Instant) {
        if self.in_flight.contains(id) {
            self.dirty.insert(id.clone());
        } else {
            self.schedule(id, now);
        }
    }

    /// The earliest time something not in flight is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due
            .iter()
            .filter(|(id, _)| !self.in_flight.contains(*id))
            .map(|(_, t)| *t)
            .min()
    }

    /// Takes the due resources, earliest first, up to `limit` in flight in all; marks them in flight.
    pub fn take_due(&mut self, now: Instant, limit: usize) -> Vec<ResourceId> {
        let room = limit.saturating_sub(self.in_flight.len());
        let mut due: Vec<(Instant, ResourceId)> = self
            .due
            .iter()
            .filter(|(id, t)| **t <= now && !self.in_flight.contains(*id))
            .map(|(id, t)| (*t, id.clone()))
            .collect();
        due.sort();
        due.truncate(room);
        due.into_iter()
            .map(|(_, id)| {
                self.due.remove(&id);
                self.in_flight.insert(id.clone());
                id
            })
            .collect()
    }

    /// A reconcile of `id` finished; a wake-up that came meanwhile runs it again now.
    pub fn finished(&mut self, id: &ResourceId, now: Instant) {
        self.in_flight.remove(id);
        if self.dirty.remove(id) {
            self.schedule(id, now);
        }
    }

    /// Records an error of `id`; returns how long to wait (exponential, with jitter in
    /// `[0.5, 1.0)` of the step given by `jitter`).
    pub fn backoff(&mut self, id: &ResourceId, jitter: f64) -> Duration {
        let n = self.failures.entry(id.clone()).or_insert(0);
        *n += 1;
        let step = MIN_BACKOFF.saturating_mul(1u32 << (*n - 1).min(16));
        step.min(MAX_BACKOFF)
            .mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    pub fn succeeded(&mut self, id: &ResourceId) {
        self.failures.remove(id);
    }

    /// Drops everything about `id` (its manifest is gone); a reconcile in flight finishes.
    pub fn forget(&mut self, id: &ResourceId) {
        self.due.remove(id);
        self.dirty.remove(id);
        self.failures.remove(id);
    }

    pub fn is_in_flight(&self, id: &ResourceId) -> bool {
        self.in_flight.contains(id)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Resources waiting to run (scheduled, not in flight).
    pub fn depth(&self) -> usize {
        self.due
            .keys()
            .filter(|id| !self.in_flight.contains(*id))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ResourceId {
        ResourceId::new("Bucket", name)
    }

    #[test]
    fn one_reconcile_per_resource_and_a_wake_in_flight_runs_it_again() {
        let now = Instant::now();
        let mut q = WorkQueue::default();
        q.wake(&id("a"), now);
        assert_eq!(q.take_due(now, 8), [id("a")]);
        q.wake(&id("a"), now);
        assert!(q.take_due(now, 8).is_empty(), "never twice at once");
        assert_eq!(q.next_due(), None);
        q.finished(&id("a"), now);
        assert_eq!(q.take_due(now, 8), [id("a")], "the wake-up is not lost");
        q.finished(&id("a"), now);
        assert!(q.take_due(now, 8).is_empty());
    }

    #[test]
    fn the_global_limit_and_due_order_hold() {
        let now = Instant::now();
        let mut q = WorkQueue::default();
        q.schedule(&id("late"), now + Duration::from_secs(5));
        q.schedule(&id("b"), now);
        q.schedule(&id("a"), now - Duration::from_secs(1));
        q.schedule(&id("c"), now);
        assert_eq!(q.take_due(now, 2), [id("a"), id("b")]);
        assert!(q.take_due(now, 2).is_empty(), "limit reached");
        q.finished(&id("a"), now);
        assert_eq!(q.take_due(now, 2), [id("c")]);
        assert_eq!(q.next_due(), Some(now + Duration::from_secs(5)));
        // Scheduling earlier wins; later does not postpone.
        q.schedule(&id("late"), now + Duration::from_secs(9));
        assert_eq!(q.next_due(), Some(now + Duration::from_secs(5)));
        q.schedule(&id("late"), now + Duration::from_secs(1));
        assert_eq!(q.next_due(), Some(now + Duration::from_secs(1)));
        assert_eq!(q.depth(), 1);
    }

    #[test]
    fn backoff_grows_per_resource_up_to_the_cap_and_resets() {
        let mut q = WorkQueue::default();
        let delays: Vec<Duration> = (0..12).map(|_| q.backoff(&id("a"), 1.0)).collect();
        assert_eq!(delays[0], Duration::from_secs(1));
        assert_eq!(delays[1], Duration::from_secs(2));
        assert_eq!(delays[4], Duration::from_secs(16));
        assert_eq!(*delays.last().unwrap(), MAX_BACKOFF);
        assert_eq!(
            q.backoff(&id("b"), 0.0),
            Duration::from_millis(500),
            "other resources unaffected; jitter halves at most"
        );
        q.succeeded(&id("a"));
        assert_eq!(q.backoff(&id("a"), 1.0), Duration::from_secs(1));
    }

    #[test]
    fn forgetting_drops_schedule_and_wakeups() {
        let now = Instant::now();
        let mut q = WorkQueue::default();
        q.wake(&id("a"), now);
        q.forget(&id("a"));
        assert!(q.take_due(now, 8).is_empty());
    }
}
