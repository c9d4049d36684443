//! The request budget of one account and region: a token bucket that every poller of that
//! account and region draws from before it calls AWS.
//!
//! AWS throttles API calls per account and region, and the exporter shares that quota with every
//! deploy tool the team runs; the budget keeps the exporter well below it. When the budget cannot
//! cover every target at its interval, callers queue, and the queue has three classes:
//!
//! - [`Class::Urgent`]: state reads that an event asked for, and every target's first state read.
//!   They go before anything else, so an event reaches `/metrics` in about one token's time, and at
//!   start-up every state is published before any structure or history is read.
//! - [`Class::Scheduled`]: state reads at a target's interval.
//! - [`Class::Deferred`]: what follows a state read (structure, history, run anatomy, lead time).
//!   While scheduled reads wait too, one token in [`DEFERRED_SHARE`] goes to a deferred call, so
//!   that history is read however saturated the budget, without holding up state reads more than
//!   that.
//!
//! A caller already waiting moves to the urgent class when `promote` says so: a target that an
//! event names while its scheduled poll waits goes ahead with that poll. Within a class, callers
//! are served in arrival order, and the age of the oldest waiter says how far the schedule has
//! fallen behind.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// What a call is for, which decides its place in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    Urgent = 0,
    Scheduled = 1,
    Deferred = 2,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Urgent, Class::Scheduled, Class::Deferred];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Urgent => "urgent",
            Class::Scheduled => "scheduled",
            Class::Deferred => "deferred",
        }
    }
}

/// While scheduled calls wait too, every this many tokens one goes to a deferred call.
pub const DEFERRED_SHARE: u32 = 4;

/// What makes a waiting call urgent: `urgent` says whether it is, and `changed` is notified
/// (`notify_waiters`) when that may have changed.
pub struct Promote {
    pub urgent: Box<dyn Fn() -> bool + Send + Sync>,
    pub changed: Arc<Notify>,
}

/// A token bucket with prioritised waiters.
pub struct Budget {
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
    queue: Mutex<Queue>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Default)]
struct Queue {
    next_ticket: u64,
    /// Tickets waiting, by class, in arrival order.
    waiting: [VecDeque<u64>; 3],
    /// Arrival time of every caller still waiting, by ticket.
    since: BTreeMap<u64, Instant>,
    /// Time spent waiting, by class.
    waited: [Duration; 3],
    /// Scheduled calls served since the last deferred one.
    scheduled_in_a_row: u32,
    /// Each waiter's wake-up: only the head is woken when the head changes, not every waiter.
    wakes: BTreeMap<u64, Arc<Notify>>,
}

impl Queue {
    /// The ticket whose turn it is.
    fn head(&self) -> Option<u64> {
        let [urgent, scheduled, deferred] = &self.waiting;
        if let Some(ticket) = urgent.front() {
            return Some(*ticket);
        }
        match (scheduled.front(), deferred.front()) {
            (Some(_), Some(d)) if self.scheduled_in_a_row + 1 >= DEFERRED_SHARE => Some(*d),
            (Some(s), _) => Some(*s),
            (None, d) => d.copied(),
        }
    }

    fn remove(&mut self, class: Class, ticket: u64) {
        self.waiting[class as usize].retain(|t| *t != ticket);
        self.wakes.remove(&ticket);
        if let Some(since) = self.since.remove(&ticket) {
            self.waited[class as usize] += since.elapsed();
        }
    }

    /// Wakes the waiter whose turn it is; a wake-up it was not waiting for yet is kept for it.
    fn wake_head(&self) {
        if let Some(wake) = self.head().and_then(|ticket| self.wakes.get(&ticket)) {
            wake.notify_one();
        }
    }
}

/// The budget's figures, for the exporter's own metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetStats {
    pub requests_per_second: f64,
    pub waiting: usize,
    /// How long the oldest waiting caller has waited: zero while the budget keeps up.
    pub lag: Duration,
    /// Time callers of each class ([`Class::ALL`]'s order) spent waiting.
    pub waited: [Duration; 3],
}

/// Removes a caller from the queue however its wait ends, also when it is cancelled.
struct Ticket<'a> {
    budget: &'a Budget,
    class: Class,
    ticket: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut queue = self.budget.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.remove(self.class, self.ticket);
        queue.wake_head();
    }
}

impl Budget {
    /// `requests_per_second` tokens a second, at most `burst` saved up; the bucket starts full.
    pub fn new(requests_per_second: f64, burst: u32) -> Budget {
        let burst = f64::from(burst.max(1));
        Budget {
            rate: requests_per_second,
            burst,
            bucket: Mutex::new(Bucket { tokens: burst, updated: Instant::now() }),
            queue: Mutex::default(),
        }
    }

    /// Waits for one token, in `class`'s place in the queue, or in the urgent class's once
    /// `promote` says so.
    pub async fn acquire(&self, class: Class, promote: Option<&Promote>) {
        let wake = Arc::new(Notify::new());
        let mut ticket = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.next_ticket += 1;
            let ticket = queue.next_ticket;
            queue.waiting[class as usize].push_back(ticket);
            queue.since.insert(ticket, Instant::now());
            queue.wakes.insert(ticket, wake.clone());
            // A newcomer may go before the waiter at the head, which then sleeps no more.
            queue.wake_head();
            Ticket { budget: self, class, ticket }
        };
        loop {
            // Registered before `urgent` is read, so that a promotion in between is not missed.
            let promotion = promote.filter(|_| ticket.class != Class::Urgent).map(|p| p.changed.notified());
            let mut promotion = std::pin::pin!(promotion);
            if let Some(notified) = promotion.as_mut().as_pin_mut() {
                notified.enable();
            }
            let mut promoted = std::pin::pin!(async move {
                match promotion.as_mut().as_pin_mut() {
                    Some(notified) => notified.await,
                    None => std::future::pending().await,
                }
            });
            let wait = {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                if ticket.class != Class::Urgent && promote.is_some_and(|p| (p.urgent)()) {
                    queue.waiting[ticket.class as usize].retain(|t| *t != ticket.ticket);
                    let urgent = &mut queue.waiting[Class::Urgent as usize];
                    let at = urgent.partition_point(|t| *t < ticket.ticket);
                    urgent.insert(at, ticket.ticket);
                    ticket.class = Class::Urgent;
                    queue.wake_head();
                }
                if queue.head() != Some(ticket.ticket) {
                    None
                } else {
                    match self.take() {
                        None => {
                            queue.scheduled_in_a_row = match ticket.class {
                                Class::Deferred => 0,
                                Class::Scheduled => queue.scheduled_in_a_row + 1,
                                Class::Urgent => queue.scheduled_in_a_row,
                            };
                            // The ticket leaves the queue as it drops, which wakes the next.
                            return;
                        }
                        Some(wait) => Some(wait),
                    }
                }
            };
            match wait {
                Some(wait) => {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = wake.notified() => {}
                        () = &mut promoted => {}
                    }
                }
                None => {
                    tokio::select! {
                        () = wake.notified() => {}
                        () = &mut promoted => {}
                    }
                }
            }
        }
    }

    /// Takes a token if there is one, or says how long until there is.
    fn take(&self) -> Option<Duration> {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }

    pub fn stats(&self) -> BudgetStats {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        BudgetStats {
            requests_per_second: self.rate,
            waiting: queue.since.len(),
            lag: queue.since.values().next().map(Instant::elapsed).unwrap_or_default(),
            waited: queue.waited,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spends_the_burst_then_paces_at_the_rate() {
        let budget = Budget::new(2.0, 3);
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            budget.acquire(Class::Scheduled, None).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst is free");
        for _ in 0..4 {
            budget.acquire(Class::Scheduled, None).await;
        }
        assert_eq!(start.elapsed().as_millis(), 2000, "four more at two a second");
    }

    /// Queues `calls` in order (a task each), then lets a second pass and returns the order they
    /// were served in.
    async fn served(budget: &Arc<Budget>, calls: &[(usize, Class)]) -> Vec<usize> {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, class) in calls.iter().copied() {
            let (budget, order) = (budget.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                budget.acquire(class, None).await;
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        order.lock().unwrap().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_of_a_class_are_served_in_arrival_order_and_reported() {
        let budget = Arc::new(Budget::new(1.0, 1));
        budget.acquire(Class::Scheduled, None).await;
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(
                async move { served(&budget, &[(0, Class::Scheduled), (1, Class::Scheduled), (2, Class::Scheduled)]).await },
            )
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stats = budget.stats();
        assert_eq!(stats.waiting, 3);
        assert_eq!(stats.lag.as_millis(), 500);
        assert_eq!(waiting.await.unwrap(), [0, 1, 2]);
        assert_eq!(budget.stats().waiting, 0);
        assert_eq!(budget.stats().lag, Duration::ZERO);
        assert!(budget.stats().waited[Class::Scheduled as usize] > Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn urgent_calls_go_first_and_deferred_ones_get_their_share() {
        let budget = Arc::new(Budget::new(10.0, 1));
        budget.acquire(Class::Urgent, None).await;
        let mut calls: Vec<(usize, Class)> = (0..6).map(|i| (i, Class::Scheduled)).collect();
        calls.extend((6..9).map(|i| (i, Class::Deferred)));
        calls.push((9, Class::Urgent));
        // The urgent call, queued last, goes first; then three scheduled calls to every deferred
        // one, while both wait; then what is left.
        assert_eq!(served(&budget, &calls).await, [9, 0, 1, 2, 6, 3, 4, 5, 7, 8]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_call_that_becomes_urgent_goes_next() {
        let budget = Arc::new(Budget::new(10.0, 1));
        budget.acquire(Class::Urgent, None).await;
        let promoted = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let changed = Arc::new(Notify::new());
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..4 {
            let (budget, order, promoted, changed) = (budget.clone(), order.clone(), promoted.clone(), changed.clone());
            tasks.push(tokio::spawn(async move {
                let promote = Promote {
                    urgent: Box::new(move || i == 3 && promoted.load(std::sync::atomic::Ordering::SeqCst)),
                    changed: changed.clone(),
                };
                budget.acquire(Class::Scheduled, Some(&promote)).await;
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
        }
        promoted.store(true, std::sync::atomic::Ordering::SeqCst);
        changed.notify_waiters();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [3, 0, 1, 2], "the call promoted while all four wait goes first");
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_deferred_goes_before_an_urgent_call() {
        let budget = Arc::new(Budget::new(10.0, 1));
        budget.acquire(Class::Urgent, None).await;
        let calls = [(0, Class::Deferred), (1, Class::Urgent), (2, Class::Deferred), (3, Class::Urgent)];
        assert_eq!(served(&budget, &calls).await, [1, 3, 0, 2]);
    }
}
