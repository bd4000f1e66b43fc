//! A shared cap on something concurrent: requests, pending requests, retries,
//! connections.
//!
//! Envoy's circuit breakers are counters shared by everything that talks to one
//! cluster; the retry layer and the connection-pool limits must see the same
//! count of retries in flight, so the counter lives here, in the vocabulary,
//! and both crates take a clone of it. Acquiring is one atomic operation; the
//! [`Permit`] gives the slot back when dropped. The maximum can be changed at
//! run time (a config reload) without losing the count.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A counter with a maximum, shared by clones.
///
/// ```
/// use mesh_core::limit::SharedLimit;
///
/// let retries = SharedLimit::new(1);
/// let permit = retries.try_acquire().expect("one slot free");
/// assert!(retries.try_acquire().is_none(), "the cap is reached");
/// drop(permit);
/// assert_eq!(retries.in_flight(), 0);
/// ```
#[derive(Clone)]
pub struct SharedLimit {
    inner: Arc<Inner>,
}

struct Inner {
    max: AtomicUsize,
    current: AtomicUsize,
}

impl SharedLimit {
    /// A limit of `max` at once.
    pub fn new(max: usize) -> Self {
        SharedLimit {
            inner: Arc::new(Inner {
                max: AtomicUsize::new(max),
                current: AtomicUsize::new(0),
            }),
        }
    }

    /// No limit (Istio's default thresholds are 2³²−1).
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// Takes a slot if one is free.
    pub fn try_acquire(&self) -> Option<Permit> {
        let max = self.inner.max.load(Ordering::Relaxed);
        self.inner
            .current
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Permit {
                inner: self.inner.clone(),
            })
    }

    /// How many slots are taken.
    pub fn in_flight(&self) -> usize {
        self.inner.current.load(Ordering::Acquire)
    }

    /// The maximum.
    pub fn max(&self) -> usize {
        self.inner.max.load(Ordering::Relaxed)
    }

    /// Changes the maximum; slots already taken stay taken.
    pub fn set_max(&self, max: usize) {
        self.inner.max.store(max, Ordering::Relaxed);
    }
}

impl fmt::Debug for SharedLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLimit")
            .field("in_flight", &self.in_flight())
            .field("max", &self.max())
            .finish()
    }
}

/// One taken slot of a [`SharedLimit`]; dropping it frees the slot.
pub struct Permit {
    inner: Arc<Inner>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inner.current.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Permit")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_count_and_max_changes_live() {
        let a = SharedLimit::new(2);
        let b = a.clone();
        let p1 = a.try_acquire().unwrap();
        let _p2 = b.try_acquire().unwrap();
        assert!(a.try_acquire().is_none());
        a.set_max(3);
        let _p3 = b.try_acquire().unwrap();
        assert_eq!(a.in_flight(), 3);
        a.set_max(1);
        drop(p1);
        assert!(a.try_acquire().is_none(), "2 in flight over a max of 1");
        assert_eq!(b.in_flight(), 2);
    }

    #[test]
    fn concurrent_acquires_never_pass_the_max() {
        let limit = SharedLimit::new(8);
        let held = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        if let Some(p) = limit.try_acquire() {
                            assert!(limit.in_flight() <= 8);
                            held.lock().unwrap().push(p);
                        }
                    }
                });
            }
        });
        assert_eq!(held.lock().unwrap().len(), 8);
    }
}
