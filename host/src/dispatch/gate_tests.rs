use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};

use futures::task::noop_waker_ref;

use super::*;

fn key(s: &str) -> Arc<str> {
    Arc::from(s)
}

/// Polls once: `Some` if the future is ready now.
fn now<F: Future>(future: std::pin::Pin<&mut F>) -> Option<F::Output> {
    match future.poll(&mut Context::from_waker(noop_waker_ref())) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

fn gate(capacity: usize, group_cap: usize, reserve: usize) -> Arc<Gate> {
    Gate::new(Shape {
        capacity,
        group_cap,
        reserve,
    })
}

#[tokio::test]
async fn at_most_capacity_at_once() {
    let g = gate(2, 2, 0);
    let (a, x) = (key("a"), key("x"));
    let one = g.acquire(&a, &x).await;
    let _two = g.acquire(&a, &x).await;
    let mut third = pin!(g.acquire(&a, &x));
    assert!(now(third.as_mut()).is_none(), "full");
    drop(one);
    let third_got = now(third.as_mut());
    assert!(third_got.is_some(), "a slot was given back");
    assert_eq!(g.held(), 2);
}

/// The case in small: one group fills every slot and keeps asking; a newcomer gets
/// the next free slot, not the busy group's next waiter.
#[tokio::test]
async fn a_freed_slot_goes_to_the_group_holding_the_fewest() {
    let g = gate(4, 4, 0);
    let (slow, fast, s) = (key("slow"), key("fast"), key("s"));
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(g.acquire(&slow, &s).await);
    }
    let mut slow_next = pin!(g.acquire(&slow, &s));
    assert!(now(slow_next.as_mut()).is_none());
    let mut fast_next = pin!(g.acquire(&fast, &s));
    assert!(now(fast_next.as_mut()).is_none());
    held.pop();
    let fast_next_got = now(fast_next.as_mut());
    assert!(fast_next_got.is_some(), "the group holding none goes first");
    assert!(now(slow_next.as_mut()).is_none(), "though it asked earlier");
    held.pop();
    let slow_next_got = now(slow_next.as_mut());
    assert!(slow_next_got.is_some());
}

/// Inside a group, members (subscriptions) take turns the same way.
#[tokio::test]
async fn inside_a_group_the_member_holding_the_fewest_goes_first() {
    let g = gate(2, 2, 0);
    let (plugin, busy, quiet) = (key("p"), key("busy"), key("quiet"));
    let first = g.acquire(&plugin, &busy).await;
    let _second = g.acquire(&plugin, &busy).await;
    let mut busy_next = pin!(g.acquire(&plugin, &busy));
    assert!(now(busy_next.as_mut()).is_none());
    let mut quiet_next = pin!(g.acquire(&plugin, &quiet));
    assert!(now(quiet_next.as_mut()).is_none());
    drop(first);
    let quiet_next_got = now(quiet_next.as_mut());
    assert!(quiet_next_got.is_some());
    assert!(now(busy_next.as_mut()).is_none());
}

/// A group never holds more than its cap, and the reserve is kept for groups holding none:
/// with eight slots, a cap of four and a reserve of two, two busy groups hold six, and a
/// newcomer still gets a slot at once.
#[tokio::test]
async fn a_group_cap_and_a_reserve_leave_room_for_newcomers() {
    let g = gate(8, 4, 2);
    let m = key("m");
    let (a, b, c) = (key("a"), key("b"), key("c"));
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(g.acquire(&a, &m).await);
    }
    let mut a_more = pin!(g.acquire(&a, &m));
    assert!(now(a_more.as_mut()).is_none(), "a is at its cap");
    held.push(g.acquire(&b, &m).await);
    held.push(g.acquire(&b, &m).await);
    let mut b_more = pin!(g.acquire(&b, &m));
    assert!(
        now(b_more.as_mut()).is_none(),
        "the last two slots are the reserve"
    );
    assert_eq!(g.held(), 6);
    let first_c = g.acquire(&c, &m).await;
    let mut c_more = pin!(g.acquire(&c, &m));
    assert!(
        now(c_more.as_mut()).is_none(),
        "c holds one now: not in the reserve"
    );
    drop(first_c);
    let c_more_got = now(c_more.as_mut());
    assert!(c_more_got.is_some(), "holding none again, c gets it");
}

/// A waiter dropped before or after its turn came never keeps a slot.
#[tokio::test]
async fn a_waiter_that_gives_up_leaks_no_slot() {
    let g = gate(1, 1, 0);
    let (a, m) = (key("a"), key("m"));
    let held = g.acquire(&a, &m).await;
    {
        let mut before = pin!(g.acquire(&a, &m));
        assert!(now(before.as_mut()).is_none());
    } // dropped while waiting
    let mut after = Box::pin(g.acquire(&a, &m));
    assert!(now(after.as_mut()).is_none());
    drop(held); // the turn goes to `after`...
    drop(after); // ...which is dropped before it ran
    assert_eq!(g.held(), 0, "the slot came back");
    let _again = g.acquire(&a, &m).await;
    assert_eq!(g.held(), 1);
}

/// Many tasks through a small gate: never more than the capacity at once, and all finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_contention_the_bound_holds_and_everyone_gets_through() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let g = gate(3, 2, 1);
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (g, inside, most) = (g.clone(), inside.clone(), most.clone());
            tokio::spawn(async move {
                let group = key(&format!("g{}", i % 4));
                let member = key(&format!("m{}", i % 7));
                let _slot = g.acquire(&group, &member).await;
                let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(most.load(Ordering::SeqCst) <= 3);
    assert_eq!(g.held(), 0);
}

/// The case: with every slot busy, slots free one at a time and whoever is waiting
/// holds none at that moment. Turns by count would give the fast member a fifth of them beside
/// four slow ones; by slot time it gets a turn whenever it wants one, and the slow ones share
/// the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_quick_turns_goes_ahead_of_members_with_long_ones() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    let g = gate(1, 1, 0);
    let plugin = key("p");
    // Each member has as many tasks asking as a subscription has workers (a few here).
    let run = |member: &'static str, hold: Duration| {
        let turns = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (g, plugin, counted) = (g.clone(), plugin.clone(), turns.clone());
                tokio::spawn(async move {
                    let member = key(member);
                    loop {
                        let _slot = g.acquire(&plugin, &member).await;
                        counted.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(hold).await;
                    }
                })
            })
            .collect();
        (tasks, turns)
    };
    let slow: Vec<_> = ["s1", "s2", "s3", "s4"]
        .into_iter()
        .map(|m| run(m, Duration::from_millis(20)))
        .collect();
    let (fast_tasks, fast) = run("fast", Duration::from_micros(100));
    tokio::time::sleep(Duration::from_millis(600)).await;
    for task in slow.iter().flat_map(|(tasks, _)| tasks).chain(&fast_tasks) {
        task.abort();
    }
    let slow_turns: Vec<usize> = slow
        .iter()
        .map(|(_, turns)| turns.load(Ordering::SeqCst))
        .collect();
    let fast_turns = fast.load(Ordering::SeqCst);
    let mean_slow = slow_turns.iter().sum::<usize>() / slow_turns.len();
    eprintln!("fast {fast_turns} turns, slow {slow_turns:?}");
    assert!(
        fast_turns >= 3 * mean_slow.max(1),
        "fast {fast_turns} turns, slow {slow_turns:?}"
    );
    assert!(
        slow_turns.iter().all(|n| *n > 0),
        "the slow ones still get turns: {slow_turns:?}"
    );
}
