//! The endpoints of a balancer and which of them are ready.
//!
//! Endpoints live in a dense vector (an index is what pickers and hash tables
//! store); two dense lists with back-pointers say which are ready and which must
//! be polled, so moving an endpoint between them, and picking a uniformly random
//! ready one, are O(1). A service that returned `Ready` stays in the ready list
//! until it is called (tower's contract lets it be called once); then it moves
//! to the unready list and is polled again on the balancer's next `poll_ready`.
//! So the balancer polls only the endpoints it used or that are genuinely not
//! ready, never all of them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use mesh_core::{BoxError, Endpoint};
use tower::Service;

use crate::stats::EndpointStats;

const NONE: u32 = u32::MAX;

pub(crate) struct Slot<S> {
    pub(crate) endpoint: Endpoint,
    pub(crate) svc: S,
    pub(crate) stats: Arc<EndpointStats>,
    ready_pos: u32,
    unready_pos: u32,
}

pub(crate) struct ReadySet<S> {
    slots: Vec<Slot<S>>,
    by_addr: HashMap<SocketAddr, usize>,
    ready: Vec<u32>,
    unready: Vec<u32>,
    default_rtt: Duration,
}

impl<S> ReadySet<S> {
    pub(crate) fn new(default_rtt: Duration) -> Self {
        ReadySet {
            slots: Vec::new(),
            by_addr: HashMap::new(),
            ready: Vec::new(),
            unready: Vec::new(),
            default_rtt,
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    pub(crate) fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// The slot index of the `j`th ready endpoint.
    #[inline]
    pub(crate) fn ready_at(&self, j: usize) -> usize {
        self.ready[j] as usize
    }

    #[inline]
    pub(crate) fn is_ready(&self, i: usize) -> bool {
        self.slots[i].ready_pos != NONE
    }

    #[inline]
    pub(crate) fn slot(&self, i: usize) -> &Slot<S> {
        &self.slots[i]
    }

    #[inline]
    pub(crate) fn slot_mut(&mut self, i: usize) -> &mut Slot<S> {
        &mut self.slots[i]
    }

    pub(crate) fn index_of(&self, addr: &SocketAddr) -> Option<usize> {
        self.by_addr.get(addr).copied()
    }

    /// Adds an endpoint, or replaces the service and metadata of the one at the
    /// same address (its load figures stay). The new service starts unready.
    pub(crate) fn insert(&mut self, endpoint: Endpoint, svc: S) {
        let addr = endpoint.addr();
        if let Some(&i) = self.by_addr.get(&addr) {
            self.set_unready(i);
            let slot = &mut self.slots[i];
            slot.endpoint = endpoint;
            slot.svc = svc;
            return;
        }
        let i = self.slots.len();
        self.slots.push(Slot {
            endpoint,
            svc,
            stats: Arc::new(EndpointStats::new(self.default_rtt)),
            ready_pos: NONE,
            unready_pos: NONE,
        });
        self.by_addr.insert(addr, i);
        self.set_unready(i);
    }

    /// Removes the endpoint at `addr`. Requests in flight to it finish: their
    /// futures own what they need.
    pub(crate) fn remove(&mut self, addr: &SocketAddr) -> bool {
        let Some(i) = self.by_addr.remove(addr) else {
            return false;
        };
        self.remove_index(i);
        true
    }

    fn remove_index(&mut self, i: usize) {
        self.leave_ready(i);
        self.leave_unready(i);
        let last = self.slots.len() - 1;
        self.slots.swap_remove(i);
        if i != last {
            // The last slot moved into `i`: repoint everything that named it.
            let moved = &self.slots[i];
            self.by_addr.insert(moved.endpoint.addr(), i);
            if moved.ready_pos != NONE {
                self.ready[moved.ready_pos as usize] = i as u32;
            }
            if moved.unready_pos != NONE {
                self.unready[moved.unready_pos as usize] = i as u32;
            }
        }
    }

    fn leave_ready(&mut self, i: usize) {
        let pos = self.slots[i].ready_pos;
        if pos == NONE {
            return;
        }
        self.ready.swap_remove(pos as usize);
        if let Some(&moved) = self.ready.get(pos as usize) {
            self.slots[moved as usize].ready_pos = pos;
        }
        self.slots[i].ready_pos = NONE;
    }

    fn leave_unready(&mut self, i: usize) {
        let pos = self.slots[i].unready_pos;
        if pos == NONE {
            return;
        }
        self.unready.swap_remove(pos as usize);
        if let Some(&moved) = self.unready.get(pos as usize) {
            self.slots[moved as usize].unready_pos = pos;
        }
        self.slots[i].unready_pos = NONE;
    }

    fn set_ready(&mut self, i: usize) {
        self.leave_unready(i);
        if self.slots[i].ready_pos == NONE {
            self.slots[i].ready_pos = self.ready.len() as u32;
            self.ready.push(i as u32);
        }
    }

    /// Marks an endpoint as needing a poll before its next use (after a call).
    pub(crate) fn set_unready(&mut self, i: usize) {
        self.leave_ready(i);
        if self.slots[i].unready_pos == NONE {
            self.slots[i].unready_pos = self.unready.len() as u32;
            self.unready.push(i as u32);
        }
    }

    /// Polls every endpoint that is not known to be ready. Endpoints whose
    /// `poll_ready` fails are removed (tower's rule: a failed service is
    /// gone); returns whether any was.
    pub(crate) fn poll_unready<Req>(&mut self, cx: &mut Context<'_>) -> bool
    where
        S: Service<Req>,
        S::Error: Into<BoxError>,
    {
        let mut removed = false;
        let mut j = 0;
        while j < self.unready.len() {
            let i = self.unready[j] as usize;
            match self.slots[i].svc.poll_ready(cx) {
                Poll::Pending => j += 1,
                // `set_ready` swap-removes position j: the next one moved in.
                Poll::Ready(Ok(())) => self.set_ready(i),
                Poll::Ready(Err(err)) => {
                    let err: BoxError = err.into();
                    tracing::debug!(endpoint = %self.slots[i].endpoint.addr(), error = %err, "endpoint failed; removing it");
                    let addr = self.slots[i].endpoint.addr();
                    self.by_addr.remove(&addr);
                    self.remove_index(i);
                    removed = true;
                }
            }
        }
        removed
    }

    /// Iterates over the endpoints by slot index.
    pub(crate) fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.slots.iter().map(|s| &s.endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::service_fn;

    fn ep(port: u16) -> Endpoint {
        Endpoint::new(([127, 0, 0, 1], port).into())
    }

    type Svc = tower::util::ServiceFn<fn(()) -> std::future::Ready<Result<(), Infallible>>>;

    fn svc() -> Svc {
        service_fn(|()| std::future::ready(Ok(())))
    }

    fn check<S>(set: &ReadySet<S>) {
        for (i, slot) in set.slots.iter().enumerate() {
            assert_eq!(set.by_addr[&slot.endpoint.addr()], i);
            assert!(
                (slot.ready_pos == NONE) != (slot.unready_pos == NONE),
                "a slot is in exactly one list"
            );
            if slot.ready_pos != NONE {
                assert_eq!(set.ready[slot.ready_pos as usize] as usize, i);
            } else {
                assert_eq!(set.unready[slot.unready_pos as usize] as usize, i);
            }
        }
        assert_eq!(set.ready.len() + set.unready.len(), set.slots.len());
    }

    #[test]
    fn lists_stay_consistent_through_churn() {
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut set = ReadySet::new(Duration::ZERO);
        for p in 1..=6 {
            set.insert(ep(p), svc());
        }
        check(&set);
        assert!(!set.poll_unready::<()>(&mut cx));
        assert_eq!(set.ready_len(), 6);
        set.set_unready(2);
        set.remove(&ep(1).addr());
        check(&set);
        set.insert(ep(3), svc()); // replace: back to unready
        check(&set);
        set.remove(&ep(6).addr());
        set.remove(&ep(99).addr());
        check(&set);
        assert!(!set.poll_unready::<()>(&mut cx));
        assert_eq!(set.ready_len(), 4);
        check(&set);
    }
}
