//! `/-/ready`: whether the first round of discovery and polls has reached a published scrape body.
//!
//! Readiness is about the store's generations, so it lives beside them rather than in the
//! scheduler: the scheduler hands out a [`ReadyToken`] for every piece of the first round, and the
//! HTTP server only asks [`Readiness::is_ready`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::store::Store;

/// Counts what must happen before `/-/ready` answers 200: every collector's first discovery and
/// every target's first poll, whether it succeeded or not. Once that is done, readiness waits for
/// the store's assembler to publish a body that includes it, so a ready exporter never serves a
/// partial first scrape. Readiness then stays on.
pub struct Readiness {
    pending: AtomicUsize,
    /// The store's generation when the first round was done: the first body to include it.
    first_round: OnceLock<u64>,
    ready: AtomicBool,
    store: Arc<Store>,
}

/// One piece of the first round; it counts as done when dropped, also when its task is aborted.
pub struct ReadyToken(Option<Arc<Readiness>>);

impl Readiness {
    pub fn new(store: Arc<Store>) -> Readiness {
        Readiness { pending: AtomicUsize::new(0), first_round: OnceLock::new(), ready: AtomicBool::new(false), store }
    }

    pub fn is_ready(&self) -> bool {
        if self.ready.load(Ordering::Acquire) {
            return true;
        }
        let ready = self.first_round.get().is_some_and(|round| self.store.exposition().generation() >= *round);
        if ready {
            self.ready.store(true, Ordering::Release);
        }
        ready
    }

    /// A piece of the first round that readiness waits for.
    pub fn token(self: &Arc<Self>) -> ReadyToken {
        self.pending.fetch_add(1, Ordering::AcqRel);
        ReadyToken(Some(self.clone()))
    }
}

impl ReadyToken {
    /// Counts this piece as done; later calls do nothing.
    pub fn done(&mut self) {
        if let Some(readiness) = self.0.take()
            && readiness.pending.fetch_sub(1, Ordering::AcqRel) == 1
            && readiness.first_round.set(readiness.store.generation()).is_ok()
        {
            // The assembler builds the body off the async workers; readiness waits for it.
            readiness.store.wake();
        }
    }
}

impl Drop for ReadyToken {
    fn drop(&mut self) {
        self.done();
    }
}
