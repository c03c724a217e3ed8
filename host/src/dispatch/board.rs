//! The dispatcher's memory: leased jobs queued per subscription, the workers running them,
//! the subscriptions being disabled right now, and the leases to give back. Short critical
//! sections only; the leaser and the workers share it behind a mutex.
//!
//! A subscription has at most `cap` workers (`max_in_flight_per_subscription`), each running
//! one attempt at a time and then taking the next job of the same subscription; a tenant has at
//! most `tenant_cap` workers over all its subscriptions (`max_in_flight_per_tenant`), so one
//! tenant's backlog or slow receivers leave the other slots to the other tenants. Workers hold
//! no global slot between attempts: the gates (`gate`) share the plugin and delivery slots at
//! the moment an attempt needs one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::store::{Event, LeaseRef, Leased};

/// A leased delivery and its event, waiting for or running its attempt.
#[derive(Debug)]
pub(super) struct Job {
    pub leased: Leased,
    pub event: Option<Arc<Event>>,
}

#[derive(Debug, Default)]
pub(super) struct Board {
    /// A subscription with this many jobs queued is left out of leases.
    full: usize,
    /// A full subscription's queue went below `full`: the leaser may lease for it again.
    refill: bool,
    /// Leased jobs not started yet, per subscription.
    queues: HashMap<String, VecDeque<Job>>,
    queued: usize,
    /// Workers per subscription.
    workers: HashMap<String, usize>,
    /// Workers per tenant, at most `tenant_cap`.
    tenant_workers: HashMap<String, usize>,
    tenant_cap: usize,
    /// The per-subscription cap of the last [`Board::starts`].
    sub_cap: usize,
    /// The tenant of each subscription holding jobs.
    tenant_of: HashMap<String, String>,
    /// Where the next [`Board::starts`] begins going round the queues.
    rotation: usize,
    /// Leases of the jobs being attempted (released at shutdown if still unfinished).
    running: HashSet<LeaseRef>,
    /// Subscriptions being disabled right now: nothing more of theirs starts.
    parking: HashSet<String>,
    /// Leases to give back (jobs that will not be attempted now).
    to_release: Vec<LeaseRef>,
}

impl Board {
    /// A board that calls a subscription full at `full` queued jobs and runs at most
    /// `tenant_cap` attempts of one tenant at once.
    pub(super) fn new(full: usize, tenant_cap: usize) -> Self {
        Self {
            full: full.max(1),
            tenant_cap: tenant_cap.max(1),
            ..Self::default()
        }
    }

    /// Jobs held per tenant, and the tenants to leave out of the next lease: those holding
    /// their `share` of the buffer.
    pub(super) fn tenant_holdings(&self, share: usize) -> (HashMap<String, usize>, Vec<String>) {
        let (per_subscription, _) = self.holdings(usize::MAX);
        let mut held: HashMap<String, usize> = HashMap::new();
        for (sub, n) in per_subscription {
            if let Some(tenant) = self.tenant_of.get(&sub) {
                *held.entry(tenant.clone()).or_default() += n;
            }
        }
        let exclude = held
            .iter()
            .filter(|(_, n)| **n >= share)
            .map(|(t, _)| t.clone())
            .collect();
        (held, exclude)
    }

    /// Tenants holding jobs.
    pub(super) fn tenants_holding(&self) -> usize {
        let tenants: HashSet<&String> = self.tenant_of.values().collect();
        tenants.len()
    }

    /// Subscriptions holding jobs, per tenant.
    fn subscriptions_per_tenant(&self) -> HashMap<String, usize> {
        let mut per: HashMap<String, usize> = HashMap::new();
        for tenant in self.tenant_of.values() {
            *per.entry(tenant.clone()).or_default() += 1;
        }
        per
    }

    /// Whether a subscription of `tenant` other than `sub` waits below its floor: queued jobs
    /// and fewer workers than `floor`. One pass over the subscriptions holding jobs.
    fn sibling_waits(&self, tenant: &str, sub: &str, floor: usize) -> bool {
        self.tenant_of.iter().any(|(other, t)| {
            t == tenant
                && other != sub
                && self.queues.contains_key(other)
                && self.workers.get(other).copied().unwrap_or(0) < floor
        })
    }

    /// Forgets `sub`'s tenant once it holds nothing.
    fn forget_if_idle(&mut self, sub: &str) {
        if !self.queues.contains_key(sub) && !self.workers.contains_key(sub) {
            self.tenant_of.remove(sub);
        }
    }

    /// Jobs queued or being attempted.
    pub(super) fn held(&self) -> usize {
        self.queued + self.running.len()
    }

    /// Jobs `sub` holds, queued or being attempted.
    pub(super) fn held_by(&self, sub: &str) -> usize {
        self.workers.get(sub).copied().unwrap_or(0) + self.queues.get(sub).map_or(0, VecDeque::len)
    }

    /// A subscription's share of a `buffer` of jobs: an equal part for each subscription
    /// holding jobs, with room for one more, and at least enough for `cap` workers and two
    /// rounds queued — so many slow subscriptions cannot fill the buffer and keep the others'
    /// deliveries waiting, while one alone may take whole batches.
    pub(super) fn share(&self, buffer: usize, cap: usize) -> usize {
        (buffer / (self.subscriptions_holding() + 1)).max(cap.saturating_mul(3))
    }

    /// Subscriptions holding jobs (queued or being attempted).
    pub(super) fn subscriptions_holding(&self) -> usize {
        self.workers.len()
            + self
                .queues
                .keys()
                .filter(|sub| !self.workers.contains_key(*sub))
                .count()
    }

    /// Jobs held per subscription (queued or being attempted), and the subscriptions to leave
    /// out of the next lease: those with enough queued already, or holding their `share` of
    /// the buffer.
    pub(super) fn holdings(&self, share: usize) -> (HashMap<String, usize>, Vec<String>) {
        let mut held: HashMap<String, usize> = self
            .workers
            .iter()
            .map(|(sub, n)| (sub.clone(), *n))
            .collect();
        for (sub, queue) in &self.queues {
            *held.entry(sub.clone()).or_default() += queue.len();
        }
        let exclude = held
            .iter()
            .filter(|(sub, n)| {
                **n >= share || self.queues.get(*sub).is_some_and(|q| q.len() >= self.full)
            })
            .map(|(sub, _)| sub.clone())
            .collect();
        (held, exclude)
    }

    /// Queues leased jobs; a subscription being disabled gets none (they go back).
    pub(super) fn enqueue(&mut self, jobs: impl IntoIterator<Item = Job>) {
        for job in jobs {
            if self.parking.contains(&job.leased.subscription_id) {
                self.to_release.push(LeaseRef::from(&job.leased));
                continue;
            }
            self.tenant_of
                .entry(job.leased.subscription_id.clone())
                .or_insert_with(|| job.leased.tenant_id.clone());
            self.queues
                .entry(job.leased.subscription_id.clone())
                .or_default()
                .push_back(job);
            self.queued += 1;
        }
    }

    /// Jobs for new workers: for every subscription with queued jobs, as many as it has jobs,
    /// up to its part of the tenant's cap ([`Parts`]): first every subscription up to its
    /// floor, then up to its ceiling while the tenant has slots. Each call begins one place
    /// further round the queues, so when a tenant has more subscriptions than slots its freed
    /// slots go round them, not always to those the map lists first.
    pub(super) fn starts(&mut self, cap: usize) -> Vec<Job> {
        self.sub_cap = cap;
        let per_tenant = self.subscriptions_per_tenant();
        let mut starts = Vec::new();
        let first = self.rotation % self.queues.len().max(1);
        self.rotation = self.rotation.wrapping_add(1);
        for to_ceiling in [false, true] {
            // From `first` to the end, then those before it.
            for from_first in [true, false] {
                for (i, (sub, queue)) in self.queues.iter_mut().enumerate() {
                    if (i >= first) != from_first {
                        continue;
                    }
                    let before = queue.len();
                    let workers = self.workers.entry(sub.clone()).or_default();
                    let tenant = self.tenant_of.get(sub).cloned().unwrap_or_default();
                    let siblings = per_tenant.get(&tenant).copied().unwrap_or(1);
                    let parts = Parts::new(self.tenant_cap, siblings, cap);
                    let limit = if to_ceiling {
                        parts.ceiling
                    } else {
                        parts.floor
                    };
                    let of_tenant = self.tenant_workers.entry(tenant).or_default();
                    while *workers < limit
                        && *of_tenant < self.tenant_cap
                        && let Some(job) = queue.pop_front()
                    {
                        *workers += 1;
                        *of_tenant += 1;
                        self.queued -= 1;
                        self.running.insert(LeaseRef::from(&job.leased));
                        starts.push(job);
                    }
                    self.refill |= before >= self.full && queue.len() < self.full;
                }
            }
        }
        self.queues.retain(|_, q| !q.is_empty());
        self.workers.retain(|_, n| *n > 0);
        self.tenant_workers.retain(|_, n| *n > 0);
        let (queues, workers) = (&self.queues, &self.workers);
        self.tenant_of
            .retain(|sub, _| queues.contains_key(sub) || workers.contains_key(sub));
        starts
    }

    /// A worker of `sub` finished `done` (recorded or released): its next job, or `None` and
    /// the worker ends.
    pub(super) fn next_for(&mut self, sub: &str, done: &LeaseRef) -> Option<Job> {
        self.running.remove(done);
        // Past its ceiling (siblings came since it started), past its floor while a sibling
        // waits below its own, or its tenant has more subscriptions than slots: the worker
        // ends, and the slot goes round.
        let within = {
            let tenant = self.tenant_of.get(sub).map_or("", String::as_str);
            let siblings = self.tenant_of.values().filter(|t| *t == tenant).count();
            let workers = self.workers.get(sub).copied().unwrap_or(0);
            let parts = Parts::new(self.tenant_cap, siblings, self.sub_cap);
            siblings <= self.tenant_cap
                && (workers <= parts.floor
                    || (workers <= parts.ceiling && !self.sibling_waits(tenant, sub, parts.floor)))
        };
        if within
            && !self.parking.contains(sub)
            && let Some(queue) = self.queues.get_mut(sub)
            && let Some(job) = queue.pop_front()
        {
            self.queued -= 1;
            self.refill |= queue.len() + 1 == self.full;
            if queue.is_empty() {
                self.queues.remove(sub);
            }
            self.running.insert(LeaseRef::from(&job.leased));
            return Some(job);
        }
        if let Some(n) = self.workers.get_mut(sub) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.workers.remove(sub);
            }
            if let Some(tenant) = self.tenant_of.get(sub)
                && let Some(n) = self.tenant_workers.get_mut(tenant)
            {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.tenant_workers.remove(tenant);
                }
            }
        }
        self.forget_if_idle(sub);
        None
    }

    /// Stops everything of `sub` that has not started: its queued jobs go back, and nothing
    /// more of it is queued or started until [`Board::unpark`].
    pub(super) fn park(&mut self, sub: &str) {
        self.parking.insert(sub.to_owned());
        if let Some(queue) = self.queues.remove(sub) {
            self.queued -= queue.len();
            self.to_release
                .extend(queue.iter().map(|job| LeaseRef::from(&job.leased)));
        }
        self.forget_if_idle(sub);
    }

    /// Ends [`Board::park`] (the subscription's state is now in the store and its cache).
    pub(super) fn unpark(&mut self, sub: &str) {
        self.parking.remove(sub);
    }

    /// Whether `sub` is being disabled right now.
    pub(super) fn parking(&self, sub: &str) -> bool {
        self.parking.contains(sub)
    }

    /// A lease to give back.
    pub(super) fn release(&mut self, lease: LeaseRef) {
        self.to_release.push(lease);
    }

    /// Whether leases wait to be given back.
    pub(super) fn has_releases(&self) -> bool {
        !self.to_release.is_empty()
    }

    /// Whether a full subscription's queue went below full (not taken yet).
    pub(super) fn refill_asked(&self) -> bool {
        self.refill
    }

    /// Whether a full subscription's queue went below full since the last call.
    pub(super) fn take_refill(&mut self) -> bool {
        std::mem::take(&mut self.refill)
    }

    /// Shutdown, first step: the queued jobs' leases (nothing queued starts any more).
    pub(super) fn take_queued(&mut self) -> Vec<LeaseRef> {
        let mut all = Vec::with_capacity(self.queued);
        for (_, queue) in self.queues.drain() {
            all.extend(queue.iter().map(|job| LeaseRef::from(&job.leased)));
        }
        self.queued = 0;
        all
    }

    /// The leases to give back, taken.
    pub(super) fn take_releases(&mut self) -> Vec<LeaseRef> {
        std::mem::take(&mut self.to_release)
    }

    /// Shutdown: every lease held, queued or running, and forgets the queues.
    pub(super) fn drain(&mut self) -> Vec<LeaseRef> {
        let mut all = self.take_releases();
        all.extend(self.take_queued());
        all.extend(self.running.drain());
        all
    }
}

/// A subscription's part of its tenant's `tenant_cap` workers beside `siblings` subscriptions
/// holding jobs (itself included), each at least one and at most `cap` (the per-subscription
/// cap): so one busy subscription cannot take the whole tenant's slots from its siblings.
///
/// Two bounds, because an equal part is rarely a whole number. Every subscription may have its
/// floor (`tenant_cap / siblings`: the floors never add up to more than the cap); one may go
/// up to its ceiling (rounded up) only while no sibling waits below its floor, so the slots the
/// floors leave over are used but never kept from a sibling. With the ceiling alone, eight busy
/// subscriptions at ⌈64/9⌉ = 8 workers held all 64 slots while a ninth waited until one of
/// their queues ran empty; with the floor alone, 4 subscriptions used 4 of a cap of 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parts {
    floor: usize,
    ceiling: usize,
}

impl Parts {
    fn new(tenant_cap: usize, siblings: usize, cap: usize) -> Self {
        let siblings = siblings.max(1);
        let cap = cap.max(1);
        Self {
            floor: (tenant_cap / siblings).clamp(1, cap),
            ceiling: tenant_cap.div_ceil(siblings).clamp(1, cap),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(sub: &str, id: &str) -> Job {
        job_of("t", sub, id)
    }

    fn job_of(tenant: &str, sub: &str, id: &str) -> Job {
        Job {
            leased: Leased {
                id: id.into(),
                event_id: "evt".into(),
                subscription_id: sub.into(),
                tenant_id: tenant.into(),
                attempts: 0,
                created_at: 0,
                lease_token: 1,
                lease_until: 0,
            },
            event: None,
        }
    }

    fn lease(id: &str) -> LeaseRef {
        LeaseRef {
            id: id.into(),
            lease_token: 1,
        }
    }

    #[test]
    fn a_subscription_gets_up_to_cap_workers_and_they_run_its_queue() {
        let mut board = Board::new(2, 100);
        board.enqueue((0..5).map(|i| job("a", &format!("a{i}"))));
        board.enqueue([job("b", "b0")]);
        let started = board.starts(2);
        assert_eq!(started.len(), 3, "two for a, one for b");
        assert_eq!(board.held(), 6);
        assert!(board.starts(2).is_empty(), "a is at its cap, b has no more");
        let a = started
            .iter()
            .find(|j| j.leased.subscription_id == "a")
            .unwrap();
        let next = board.next_for("a", &LeaseRef::from(&a.leased)).unwrap();
        assert_eq!(next.leased.subscription_id, "a");
        assert!(
            board.next_for("b", &lease("b0")).is_none(),
            "b's worker ends"
        );
        assert_eq!(board.held(), 4);
    }

    #[test]
    fn parking_gives_the_queue_back_and_starts_nothing_more() {
        let mut board = Board::new(2, 100);
        board.enqueue((0..4).map(|i| job("a", &format!("a{i}"))));
        let started = board.starts(1);
        board.park("a");
        assert!(board.parking("a"));
        let released = board.take_releases();
        assert_eq!(released.len(), 3, "the three not started go back");
        assert!(
            board
                .next_for("a", &LeaseRef::from(&started[0].leased))
                .is_none(),
            "the running worker takes nothing more"
        );
        board.enqueue([job("a", "late")]);
        assert_eq!(
            board.take_releases(),
            vec![lease("late")],
            "a late lease goes back too"
        );
        board.unpark("a");
        board.enqueue([job("a", "after")]);
        assert_eq!(board.starts(1).len(), 1);
        assert_eq!(board.held(), 1);
    }

    #[test]
    fn a_full_queue_going_below_full_asks_for_a_refill() {
        let mut board = Board::new(2, 100);
        board.enqueue((0..4).map(|i| job("a", &format!("a{i}"))));
        let (held, full) = board.holdings(100);
        assert_eq!((held["a"], full), (4, vec!["a".to_owned()]));
        let first = board.starts(1).pop().unwrap();
        assert!(!board.take_refill(), "3 queued: still full");
        let second = board.next_for("a", &LeaseRef::from(&first.leased)).unwrap();
        assert!(!board.take_refill(), "2 queued: still full");
        board
            .next_for("a", &LeaseRef::from(&second.leased))
            .unwrap();
        assert!(board.take_refill(), "1 queued: room for more");
        assert!(!board.take_refill(), "asked once");
    }

    #[test]
    fn a_subscription_holding_its_share_is_left_out() {
        let mut board = Board::new(10, 100);
        board.enqueue((0..6).map(|i| job("a", &format!("a{i}"))));
        board.enqueue((0..2).map(|i| job("b", &format!("b{i}"))));
        board.starts(2);
        assert_eq!(board.subscriptions_holding(), 2);
        let (held, exclude) = board.holdings(5);
        assert_eq!((held["a"], held["b"]), (6, 2), "queued and running count");
        assert_eq!(exclude, vec!["a".to_owned()]);
    }

    #[test]
    fn drain_returns_every_lease_held() {
        let mut board = Board::new(2, 100);
        board.enqueue((0..3).map(|i| job("a", &format!("a{i}"))));
        board.starts(1);
        board.release(lease("x"));
        let mut all: Vec<String> = board.drain().into_iter().map(|l| l.id).collect();
        all.sort();
        assert_eq!(all, ["a0", "a1", "a2", "x"]);
        assert_eq!(board.held(), 0);
    }

    /// One tenant's many subscriptions cannot take more than the tenant cap of workers; another
    /// tenant's job starts beside them, and a freed slot of the tenant goes to its waiting jobs.
    #[test]
    fn a_tenant_gets_at_most_its_cap_of_workers() {
        let mut board = Board::new(10, 3);
        for sub in ["a1", "a2", "a3", "a4"] {
            board.enqueue((0..2).map(|i| job_of("A", sub, &format!("{sub}-{i}"))));
        }
        board.enqueue([job_of("B", "b1", "b1-0")]);
        let started = board.starts(1);
        let of = |t: &str| started.iter().filter(|j| j.leased.tenant_id == t).count();
        assert_eq!(
            (of("A"), of("B")),
            (3, 1),
            "A at its cap of 3, B not delayed"
        );
        assert!(board.starts(1).is_empty(), "A stays at its cap");
        let (held, exclude) = board.tenant_holdings(9);
        assert_eq!((held["A"], held["B"]), (8, 1));
        assert!(exclude.is_empty());
        assert_eq!(board.tenant_holdings(8).1, vec!["A".to_owned()]);
        assert_eq!(board.tenants_holding(), 2);
        // More of A's subscriptions than slots: a worker of A yields after each attempt, and
        // the freed slot goes to one of A's waiting jobs.
        let first_a = started.iter().find(|j| j.leased.tenant_id == "A").unwrap();
        let sub = first_a.leased.subscription_id.clone();
        assert!(
            board
                .next_for(&sub, &LeaseRef::from(&first_a.leased))
                .is_none()
        );
        let again = board.starts(1);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].leased.tenant_id, "A");
        assert!(board.starts(1).is_empty(), "3 of A running again");
    }

    /// Inside a tenant the cap is shared: a busy subscription takes its part, not every slot,
    /// so a sibling that comes later still gets workers.
    #[test]
    fn a_tenants_slots_are_shared_between_its_subscriptions() {
        let mut board = Board::new(100, 4);
        board.enqueue((0..20).map(|i| job_of("A", "busy", &format!("b{i}"))));
        let first = board.starts(32);
        assert_eq!(first.len(), 4, "alone, the busy one may use the tenant's 4");
        board.enqueue((0..5).map(|i| job_of("A", "late", &format!("l{i}"))));
        assert!(board.starts(32).is_empty(), "the tenant is at its cap");
        // The busy one's workers are now past their part (2 of 4): they end after their
        // attempt instead of taking its next job, and the late one gets the slots.
        for job in &first[..2] {
            assert!(
                board
                    .next_for("busy", &LeaseRef::from(&job.leased))
                    .is_none()
            );
        }
        let late = board.starts(32);
        assert_eq!(late.len(), 2);
        assert!(late.iter().all(|j| j.leased.subscription_id == "late"));
        let next = board.next_for("busy", &LeaseRef::from(&first[2].leased));
        assert!(next.is_some(), "at its part (2): it goes on");
    }

    /// Eight busy subscriptions hold all of their tenant's 64 slots; a ninth that gets a job
    /// gets a worker as soon as each busy one has finished an attempt. (Parts rounded up, 8 of
    /// 64 each beside a ninth, kept all eight at their part and the ninth waited until one of
    /// their queues ran empty: 45 s in the slow-plugin fairness test.)
    #[test]
    fn a_ninth_subscription_gets_a_worker_beside_eight_busy_ones() {
        let mut board = Board::new(1000, 64);
        for sub in 0..8 {
            let sub = format!("busy{sub}");
            board.enqueue((0..100).map(|i| job_of("A", &sub, &format!("{sub}-{i}"))));
        }
        let mut running = board.starts(32);
        assert_eq!(running.len(), 64, "eight at 8 workers each");
        board.enqueue([job_of("A", "late", "late-0")]);
        assert!(board.starts(32).is_empty(), "the tenant is at its cap");
        let mut next = Vec::new();
        for job in running.drain(..) {
            let sub = job.leased.subscription_id.clone();
            next.extend(board.next_for(&sub, &LeaseRef::from(&job.leased)));
        }
        let started = board.starts(32);
        assert!(
            started.iter().any(|j| j.leased.subscription_id == "late"),
            "the ninth got a worker"
        );
        assert_eq!(
            next.len() + started.len(),
            64,
            "the whole tenant cap, no more"
        );
    }

    /// More subscriptions than the tenant has slots: the slots go round, so every one of them
    /// gets attempts, not only those the map happens to list first.
    #[test]
    fn with_more_subscriptions_than_slots_every_one_gets_turns() {
        let mut board = Board::new(1000, 2);
        let subs: Vec<String> = (0..6).map(|i| format!("s{i}")).collect();
        for sub in &subs {
            board.enqueue((0..50).map(|i| job_of("A", sub, &format!("{sub}-{i}"))));
        }
        let mut turns: HashMap<String, usize> = HashMap::new();
        let mut running = board.starts(32);
        for _ in 0..30 {
            for job in running.drain(..) {
                let sub = job.leased.subscription_id.clone();
                *turns.entry(sub.clone()).or_default() += 1;
                assert!(board.next_for(&sub, &LeaseRef::from(&job.leased)).is_none());
            }
            running = board.starts(32);
            assert_eq!(running.len(), 2, "the tenant's two slots in use");
        }
        for sub in &subs {
            let n = turns.get(sub).copied().unwrap_or(0);
            assert!(n >= 5, "{sub} got {n} of 60 turns: {turns:?}");
        }
    }

    /// Parts that are not whole numbers still use the whole cap: four busy subscriptions of a
    /// tenant capped at 6 run 6 attempts (floors of 1, two of them at their ceiling of 2), and
    /// those at their ceiling go on while no sibling waits below its floor.
    #[test]
    fn uneven_parts_use_the_whole_tenant_cap() {
        let mut board = Board::new(1000, 6);
        for sub in 0..4 {
            let sub = format!("s{sub}");
            board.enqueue((0..10).map(|i| job_of("A", &sub, &format!("{sub}-{i}"))));
        }
        let running = board.starts(4);
        assert_eq!(running.len(), 6, "the tenant's whole cap");
        let mut again = 0;
        for job in &running {
            let sub = job.leased.subscription_id.clone();
            again += usize::from(board.next_for(&sub, &LeaseRef::from(&job.leased)).is_some());
        }
        assert_eq!(
            again, 6,
            "every worker goes on: nobody waits below its floor"
        );
    }
}
