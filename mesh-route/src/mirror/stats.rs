use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of what happened to mirror copies; clones share them. Give one to
/// several layers (or a [`RouterBuilder`](crate::RouterBuilder)) to count
/// them together.
#[derive(Clone, Default)]
pub struct MirrorStats {
    inner: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    spawned: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    overflow: AtomicU64,
    too_large: AtomicU64,
    incomplete: AtomicU64,
    no_runtime: AtomicU64,
}

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident => $incr:ident;)*) => {
        impl MirrorStats {
            $(
                $(#[$doc])*
                pub fn $name(&self) -> u64 {
                    self.inner.$name.load(Ordering::Relaxed)
                }

                pub(crate) fn $incr(&self) {
                    self.inner.$name.fetch_add(1, Ordering::Relaxed);
                }
            )*
        }
    };
}

counters! {
    /// Copies started (a task was spawned for them).
    spawned => incr_spawned;
    /// Copies the shadow answered (any status; the response was dropped).
    completed => incr_completed;
    /// Copies that failed (shadow error or deadline).
    failed => incr_failed;
    /// Copies dropped because too many were in flight.
    overflow => incr_overflow;
    /// Copies dropped because the body passed the replay cap.
    too_large => incr_too_large;
    /// Copies dropped because the primary did not read the whole body (it
    /// failed or gave up first).
    incomplete => incr_incomplete;
    /// Copies dropped because no tokio runtime was running.
    no_runtime => incr_no_runtime;
}

impl MirrorStats {
    /// New counters at zero.
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Debug for MirrorStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorStats")
            .field("spawned", &self.spawned())
            .field("completed", &self.completed())
            .field("failed", &self.failed())
            .field("overflow", &self.overflow())
            .field("too_large", &self.too_large())
            .field("incomplete", &self.incomplete())
            .field("no_runtime", &self.no_runtime())
            .finish()
    }
}
