//! The request budget of one account and region: a token bucket that every poller of that
//! account and region draws from before it calls AWS.
//!
//! AWS throttles API calls per account and region, and the exporter shares that quota with every
//! deploy tool the team runs; the budget keeps the exporter well below it. Callers wait in arrival
//! order, so when the budget cannot cover every target at its interval, the targets that have
//! waited longest go first and none is starved, and the age of the oldest waiter says how far the
//! schedule has fallen behind.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket with FIFO waiters.
pub struct Budget {
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
    /// Held by the caller at the head of the queue; tokio's mutex is fair, so this is the queue.
    turn: tokio::sync::Mutex<()>,
    waiting: Mutex<Waiting>,
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
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut waiting = self.budget.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(since) = waiting.since.remove(&self.ticket) {
            waiting.waited += since.elapsed();
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
        }
    }

    /// Waits for one token.
    pub async fn acquire(&self) {
        let _ticket = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            waiting.next_ticket += 1;
            let ticket = waiting.next_ticket;
            waiting.since.insert(ticket, Instant::now());
            Ticket { budget: self, ticket }
        };
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
