//! The lookup table of a hash balancer (ring or Maglev), rebuilt off the
//! request path.
//!
//! A table names endpoints by address, not by slot, so it stays valid while
//! the set changes: a pick maps the address back to a slot and walks past
//! endpoints that are gone or not ready. When membership changes, the new
//! table is built on tokio's blocking pool and swapped in whole when done;
//! until then picks use the previous table (new endpoints get no hashed
//! traffic for that moment, removed ones are skipped). The first table, and
//! any table built outside a runtime, is built in place.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::task::JoinHandle;

use super::maglev;
use super::ring_hash::Ring;
use crate::config;
use crate::ready_set::ReadySet;

/// An endpoint as a table sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Member {
    pub(crate) addr: SocketAddr,
    pub(crate) weight: u32,
}

/// Which table to build.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Ring(config::RingHash),
    Maglev(u64),
}

#[derive(Debug)]
enum Lookup {
    Ring(Ring),
    Maglev(maglev::Table),
}

/// A built table and the addresses its entries name.
#[derive(Debug)]
pub(crate) struct Built {
    lookup: Lookup,
    members: Vec<SocketAddr>,
}

impl Built {
    fn new(kind: &Kind, members: &[Member]) -> Built {
        let lookup = match kind {
            Kind::Ring(c) => Lookup::Ring(Ring::build(c, members)),
            Kind::Maglev(size) => Lookup::Maglev(maglev::Table::build(*size, members)),
        };
        Built {
            lookup,
            members: members.iter().map(|m| m.addr).collect(),
        }
    }
}

/// A hash balancer's table, with the next one possibly on its way.
#[derive(Debug)]
pub(crate) struct HashTable {
    kind: Kind,
    current: Option<Arc<Built>>,
    pending: Option<JoinHandle<Built>>,
}

impl HashTable {
    pub(crate) fn new(kind: Kind) -> Self {
        HashTable {
            kind,
            current: None,
            pending: None,
        }
    }

    /// Starts building the table for the set's endpoints now.
    pub(crate) fn rebuild<S>(&mut self, set: &ReadySet<S>) {
        let members: Vec<Member> = set
            .endpoints()
            .map(|e| Member {
                addr: e.addr(),
                weight: e.weight().get(),
            })
            .collect();
        if let Some(p) = self.pending.take() {
            p.abort();
        }
        match (&self.current, tokio::runtime::Handle::try_current()) {
            (Some(_), Ok(rt)) => {
                let kind = self.kind.clone();
                self.pending = Some(rt.spawn_blocking(move || Built::new(&kind, &members)));
            }
            _ => self.current = Some(Arc::new(Built::new(&self.kind, &members))),
        }
    }

    /// Swaps in a table that finished building.
    pub(crate) fn poll_pending(&mut self, cx: &mut Context<'_>) {
        if let Some(p) = &mut self.pending
            && let Poll::Ready(result) = Pin::new(p).poll(cx)
        {
            self.pending = None;
            match result {
                Ok(built) => self.current = Some(Arc::new(built)),
                Err(e) => {
                    tracing::warn!(error = %e, "building a hash table failed; keeping the previous one")
                }
            }
        }
    }

    /// Whether a new table is being built.
    #[cfg(test)]
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The slot of the first ready endpoint at or after `hash`.
    pub(crate) fn pick<S>(&self, set: &ReadySet<S>, hash: u64) -> Option<usize> {
        let built = self.current.as_ref()?;
        let mut slot = None;
        let mut ready = |m: usize| match set.index_of(&built.members[m]) {
            Some(i) if set.is_ready(i) => {
                slot = Some(i);
                true
            }
            _ => false,
        };
        let found = match &built.lookup {
            Lookup::Ring(r) => r.pick(hash, &mut ready),
            Lookup::Maglev(t) => t.pick(hash, &mut ready),
        };
        found.and(slot)
    }
}
