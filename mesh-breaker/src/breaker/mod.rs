//! placeholder
use mesh_core::classify::Outcome;

#[derive(Debug)]
pub(crate) struct BreakerRecorder;

impl BreakerRecorder {
    pub(crate) fn record(self, _outcome: Outcome) {}
}
