//! The request budget of one account and region: a token bucket that every poller of that
//! account and region draws from before it calls AWS.
//!
//! AWS throttles API calls per account and region, and the exporter shares that quota with every
//! deploy tool the team runs; the budget keeps the exporter well below it. Callers wait in arrival
//! order, so when the budget cannot cover every target at its interval, the targets that have
//! waited longest go first and none is starved, and the age of the oldest waiter says how far the
//! schedule has fallen behind.
//!
//! Some calls can wait: a pipeline's state says what is happening now, its execution history and its
//! structure only add detail. Those calls take [`Budget::acquire_deferred`], which lets every
//! waiting state read go first, so that at start-up every pipeline's state is read before any
//! history is seeded, and a burst of events is answered before the history reads it causes.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// A token bucket with FIFO waiters.
pub struct Budget {
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
    /// Held by the caller at the head of the queue; tokio's mutex is fair, so this is the queue.
    turn: tokio::sync::Mutex<()>,
    waiting: Mutex<Waiting>,
    /// Woken when no caller of [`Budget::acquire`] waits any more, for the deferred callers.
    urgent_done: Notify,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Default)]
struct Waiting {
    next_ticket: u64,
    /// Arrival time of every caller still waiting, by ticket.
    since: BTreeMap<u64, Instant>,
    waited: Duration,
    /// Callers of [`Budget::acquire`] still waiting: deferred callers wait until there are none.
    urgent: usize,
}

/// The budget's figures, for the exporter's own metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetStats {
    pub requests_per_second: f64,
    pub waiting: usize,
    /// How long the oldest waiting caller has waited: zero while the budget keeps up.
    pub lag: Duration,
    pub waited: Duration,
}

/// Removes a caller from the waiting list however its wait ends, also when it is cancelled.
struct Ticket<'a> {
    budget: &'a Budget,
    ticket: u64,
    urgent: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut waiting = self.budget.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(since) = waiting.since.remove(&self.ticket) {
            waiting.waited += since.elapsed();
        }
        if self.urgent {
            waiting.urgent -= 1;
            if waiting.urgent == 0 {
                self.budget.urgent_done.notify_waiters();
            }
        }
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
            turn: tokio::sync::Mutex::new(()),
            waiting: Mutex::default(),
            urgent_done: Notify::new(),
        }
    }

    /// Waits for one token, in arrival order.
    pub async fn acquire(&self) {
        let ticket = self.ticket(true);
        self.wait_for_token(ticket).await;
    }

    /// Waits for one token once no caller of [`Budget::acquire`] waits, then in arrival order.
    pub async fn acquire_deferred(&self) {
        let ticket = self.ticket(false);
        loop {
            let done = self.urgent_done.notified();
            tokio::pin!(done);
            // Registered before the count is read, so that the last urgent caller's wake-up is
            // not missed between the two.
            done.as_mut().enable();
            if self.waiting.lock().unwrap_or_else(|e| e.into_inner()).urgent == 0 {
                break;
            }
            done.await;
        }
        self.wait_for_token(ticket).await;
    }

    /// Registers a waiting caller, counted in the lag from now.
    fn ticket(&self, urgent: bool) -> Ticket<'_> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.next_ticket += 1;
        let ticket = waiting.next_ticket;
        waiting.since.insert(ticket, Instant::now());
        if urgent {
            waiting.urgent += 1;
        }
        Ticket { budget: self, ticket, urgent }
    }

    async fn wait_for_token(&self, _ticket: Ticket<'_>) {
        let _turn = self.turn.lock().await;
        while let Some(wait) = self.take() {
            tokio::time::sleep(wait).await;
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
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        BudgetStats {
            requests_per_second: self.rate,
            waiting: waiting.since.len(),
            lag: waiting.since.values().next().map(Instant::elapsed).unwrap_or_default(),
            waited: waiting.waited,
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
            budget.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst is free");
        for _ in 0..4 {
            budget.acquire().await;
        }
        assert_eq!(start.elapsed().as_millis(), 2000, "four more at two a second");
    }

    #[tokio::test(start_paused = true)]
    async fn deferred_callers_wait_until_no_urgent_caller_does() {
        let budget = std::sync::Arc::new(Budget::new(1.0, 1));
        budget.acquire().await;
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // A deferred caller arrives while no urgent one waits, and takes its turn; then urgent ones,
        // and a deferred one that waits until the urgent ones are served, even one after it.
        for (i, urgent) in [(0, false), (1, true), (2, true), (3, false), (4, true)] {
            let (budget, order) = (budget.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                if urgent {
                    budget.acquire().await;
                } else {
                    budget.acquire_deferred().await;
                }
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 4, 3]);
        assert_eq!(budget.stats().waiting, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_arrival_order_and_reported() {
        let budget = std::sync::Arc::new(Budget::new(1.0, 1));
        budget.acquire().await;
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (budget, order) = (budget.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                budget.acquire().await;
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stats = budget.stats();
        assert_eq!(stats.waiting, 3);
        assert_eq!(stats.lag.as_millis(), 500);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
        assert_eq!(budget.stats().waiting, 0);
        assert_eq!(budget.stats().lag, Duration::ZERO);
    }
}
