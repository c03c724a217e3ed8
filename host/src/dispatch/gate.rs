//! A fair gate: at most `capacity` holders at once, shared between groups (plugins, or
//! subscriptions) and, inside a group, between members (subscriptions), by the time each has
//! held slots lately — a fair queue over slot time.
//!
//! Plain FIFO permits let one busy group take every slot and keep it: a plugin that runs into
//! its deadline on every call held all sixteen plugin slots, and subscriptions through it held
//! every delivery slot, while a subscription without a plugin waited seconds for a turn.
//! Counting slots held is not enough either: a subscription whose calls take 1 ms and one whose
//! calls take 100 ms both hold none at the moment a slot frees, and taking turns would give the
//! fast one a ninth of the turns beside eight slow ones. So here:
//! - every take is charged the time the taker's slots are usually held (a moving average), and
//!   corrected to the real time when the slot comes back; a freed slot goes to the waiting group
//!   charged least, and inside it to the waiting member charged least (ties: served longest
//!   ago). This is start-time fair queueing: a group or member that becomes busy again starts
//!   no lower than the least charged of those busy now (the gate's virtual time), so an idle
//!   spell earns no credit, and one that was just served keeps what it was charged;
//! - a group holds at most `group_cap` slots at once;
//! - the last `reserve` slots only go to groups holding none, so a newcomer gets a slot at once
//!   even while others fill the rest.
//!
//! Waiting is async and cancellable: a waiter dropped before or after its turn came gives the
//! slot back.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

/// Shape of a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shape {
    /// Holders at once, in all.
    pub capacity: usize,
    /// Holders at once per group.
    pub group_cap: usize,
    /// Slots kept for groups that hold none.
    pub reserve: usize,
}

/// The gate. Cheap to share (`Arc`).
pub(super) struct Gate {
    shape: Shape,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    held: usize,
    groups: HashMap<Arc<str>, Group>,
    /// Advances with every turn given: "served longest ago" is the smallest `last_turn`.
    turn: u64,
    /// The least charge of the busy groups, never going back.
    vtime: u64,
}

/// What a group or a member has been charged, and how long its slots are usually held.
#[derive(Default, Clone, Copy)]
struct Account {
    /// Slot time charged so far (ns).
    charged: u64,
    /// Moving average of how long one of its slots is held (ns).
    typical: u64,
    last_turn: u64,
}

impl Account {
    /// Charges a take its typical time; returns the charge (to correct later).
    fn take(&mut self, turn: u64) -> u64 {
        self.charged = self.charged.saturating_add(self.typical);
        self.last_turn = turn;
        self.typical
    }

    /// Corrects a take's charge to the time the slot was really held.
    fn give_back(&mut self, charge: u64, held_ns: u64) {
        self.charged = self.charged.saturating_sub(charge).saturating_add(held_ns);
        self.typical = (self.typical.saturating_mul(7).saturating_add(held_ns)) / 8;
    }

    fn key(&self) -> (u64, u64) {
        (self.charged, self.last_turn)
    }
}

#[derive(Default)]
struct Group {
    held: usize,
    waiting: usize,
    account: Account,
    /// The least charge of the busy members, never going back.
    vtime: u64,
    members: HashMap<Arc<str>, Member>,
}

impl Group {
    fn busy(&self) -> bool {
        self.held > 0 || self.waiting > 0
    }
}

#[derive(Default)]
struct Member {
    held: usize,
    account: Account,
    waiters: VecDeque<oneshot::Sender<Taken>>,
}

impl Member {
    fn busy(&self) -> bool {
        self.held > 0 || !self.waiters.is_empty()
    }
}

/// What a take was charged, for the correction when the slot comes back.
#[derive(Debug, Clone, Copy)]
struct Taken {
    at: Instant,
    group_charge: u64,
    member_charge: u64,
}

/// A slot; given back when dropped.
pub(super) struct Permit {
    gate: Arc<Gate>,
    group: Arc<str>,
    member: Arc<str>,
    taken: Taken,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.give_back(&self.group, &self.member, self.taken);
    }
}

/// A waiter's place in the queue; if dropped after its turn came, it gives the slot back.
struct Waiting {
    gate: Arc<Gate>,
    group: Arc<str>,
    member: Arc<str>,
    turn: Option<oneshot::Receiver<Taken>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut turn) = self.turn.take() {
            turn.close();
            if let Ok(taken) = turn.try_recv() {
                self.gate.give_back(&self.group, &self.member, taken);
            }
        }
    }
}

impl Gate {
    pub(super) fn new(shape: Shape) -> Arc<Self> {
        Arc::new(Self {
            shape: Shape {
                capacity: shape.capacity.max(1),
                group_cap: shape.group_cap.max(1),
                reserve: shape.reserve.min(shape.capacity.saturating_sub(1)),
            },
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a slot for `member` of `group`.
    pub(super) async fn acquire(self: &Arc<Self>, group: &Arc<str>, member: &Arc<str>) -> Permit {
        let permit = |taken| Permit {
            gate: self.clone(),
            group: group.clone(),
            member: member.clone(),
            taken,
        };
        loop {
            let turn = {
                let mut state = self.lock();
                let state = &mut *state;
                self.wake_up(state, group, member);
                let held = state.groups.get(group).map_or(0, |g| g.held);
                let queued = state
                    .groups
                    .get(group)
                    .and_then(|g| g.members.get(member))
                    .is_some_and(|m| !m.waiters.is_empty());
                if !queued && self.admits(state, held) {
                    return permit(self.take(state, group, member));
                }
                let (tx, rx) = oneshot::channel();
                if let Some(g) = state.groups.get_mut(group)
                    && let Some(m) = g.members.get_mut(member)
                {
                    m.waiters.push_back(tx);
                    g.waiting += 1;
                }
                // Waiters of this member that are gone may stand in front: let them go.
                self.hand_out(state);
                rx
            };
            let mut waiting = Waiting {
                gate: self.clone(),
                group: group.clone(),
                member: member.clone(),
                turn: Some(turn),
            };
            let given = match waiting.turn.as_mut() {
                Some(turn) => turn.await.ok(),
                None => None,
            };
            waiting.turn = None;
            if let Some(taken) = given {
                return permit(taken);
            }
        }
    }

    /// A group or member that was idle becomes busy: it starts no lower than the virtual time
    /// (an idle spell earns no credit).
    fn wake_up(&self, state: &mut State, group: &Arc<str>, member: &Arc<str>) {
        let vtime = state.vtime;
        let g = state.groups.entry(group.clone()).or_default();
        if !g.busy() {
            g.account.charged = g.account.charged.max(vtime);
        }
        let vtime = g.vtime;
        let m = g.members.entry(member.clone()).or_default();
        if !m.busy() {
            m.account.charged = m.account.charged.max(vtime);
        }
    }

    /// Whether a group holding `held` slots may take one more now.
    fn admits(&self, state: &State, held: usize) -> bool {
        let free = self.shape.capacity.saturating_sub(state.held);
        free > 0 && held < self.shape.group_cap && (free > self.shape.reserve || held == 0)
    }

    fn take(&self, state: &mut State, group: &Arc<str>, member: &Arc<str>) -> Taken {
        state.turn += 1;
        state.held += 1;
        let turn = state.turn;
        let g = state.groups.entry(group.clone()).or_default();
        g.held += 1;
        let group_charge = g.account.take(turn);
        let m = g.members.entry(member.clone()).or_default();
        m.held += 1;
        let member_charge = m.account.take(turn);
        Taken {
            at: Instant::now(),
            group_charge,
            member_charge,
        }
    }

    fn give_back(&self, group: &Arc<str>, member: &Arc<str>, taken: Taken) {
        let held_ns = u64::try_from(taken.at.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut state = self.lock();
        state.held = state.held.saturating_sub(1);
        if let Some(g) = state.groups.get_mut(group) {
            g.held = g.held.saturating_sub(1);
            g.account.give_back(taken.group_charge, held_ns);
            if let Some(m) = g.members.get_mut(member) {
                m.held = m.held.saturating_sub(1);
                m.account.give_back(taken.member_charge, held_ns);
            }
        }
        self.tidy(&mut state, group, member);
        self.hand_out(&mut state);
    }

    /// Gives free slots to waiters, least charged first, while the rules allow.
    fn hand_out(&self, state: &mut State) {
        loop {
            let Some(group) = state
                .groups
                .iter()
                .filter(|(_, g)| g.waiting > 0 && self.admits(state, g.held))
                .min_by_key(|(_, g)| g.account.key())
                .map(|(name, _)| name.clone())
            else {
                return;
            };
            let Some(g) = state.groups.get_mut(&group) else {
                return;
            };
            let Some(member) = g
                .members
                .iter()
                .filter(|(_, m)| !m.waiters.is_empty())
                .min_by_key(|(_, m)| m.account.key())
                .map(|(name, _)| name.clone())
            else {
                g.waiting = 0;
                continue;
            };
            let Some(waiter) = g
                .members
                .get_mut(&member)
                .and_then(|m| m.waiters.pop_front())
            else {
                continue;
            };
            g.waiting = g.waiting.saturating_sub(1);
            if waiter.is_closed() {
                self.tidy(state, &group, &member);
                continue;
            }
            // Taken before the waiter runs; a waiter gone by then gives it back (`Waiting`).
            let taken = self.take(state, &group, &member);
            if let Err(taken) = waiter.send(taken) {
                self.untake(state, &group, &member, taken);
            }
        }
    }

    /// Undoes a take whose waiter was gone when it was handed over.
    fn untake(&self, state: &mut State, group: &Arc<str>, member: &Arc<str>, taken: Taken) {
        state.held = state.held.saturating_sub(1);
        if let Some(g) = state.groups.get_mut(group) {
            g.held = g.held.saturating_sub(1);
            g.account.charged = g.account.charged.saturating_sub(taken.group_charge);
            if let Some(m) = g.members.get_mut(member) {
                m.held = m.held.saturating_sub(1);
                m.account.charged = m.account.charged.saturating_sub(taken.member_charge);
            }
        }
        self.tidy(state, group, member);
    }

    /// Moves the virtual times up to the least charge of the busy, and forgets idle members
    /// and groups charged no more than that (they would start there anyway).
    fn tidy(&self, state: &mut State, group: &Arc<str>, member: &Arc<str>) {
        let Some(g) = state.groups.get_mut(group) else {
            return;
        };
        if let Some(least) = g
            .members
            .values()
            .filter(|m| m.busy())
            .map(|m| m.account.charged)
            .min()
        {
            g.vtime = g.vtime.max(least);
        }
        let vtime = g.vtime;
        if g.members
            .get(member)
            .is_some_and(|m| !m.busy() && m.account.charged <= vtime)
        {
            g.members.remove(member);
        }
        if let Some(least) = state
            .groups
            .values()
            .filter(|g| g.busy())
            .map(|g| g.account.charged)
            .min()
        {
            state.vtime = state.vtime.max(least);
        }
        let vtime = state.vtime;
        if state
            .groups
            .get(group)
            .is_some_and(|g| !g.busy() && g.members.is_empty() && g.account.charged <= vtime)
        {
            state.groups.remove(group);
        }
    }

    /// Slots held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().held
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
