//! Envoy's ring hash (ketama): each endpoint owns points on a ring of 64-bit
//! hashes in proportion to its weight; a request goes to the first point at or
//! after its key's hash. The ring is built when endpoints change; a pick is a
//! binary search, O(log n).

use std::fmt::Write as _;

use xxhash_rust::xxh64::xxh64;

use super::hash_table::Member;
use crate::config::RingHash;

#[derive(Debug, Default)]
pub(crate) struct Ring {
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// Builds the ring as Envoy does: with normalized weights `w`, the scale is
    /// `min(ceil(min(w) × minimum) / min(w), maximum)`; walking the endpoints in
    /// order, each adds points named `"<address>_<i>"` (hashed with XXH64, seed
    /// 0) until the running total reaches `scale × Σw so far`.
    pub(crate) fn build(config: &RingHash, members: &[Member]) -> Ring {
        let total: f64 = members.iter().map(|m| f64::from(m.weight)).sum();
        if members.is_empty() || total <= 0.0 {
            return Ring::default();
        }
        let min_w = members
            .iter()
            .map(|m| f64::from(m.weight) / total)
            .fold(f64::INFINITY, f64::min);
        let scale = ((min_w * config.minimum_ring_size as f64).ceil() / min_w)
            .min(config.maximum_ring_size as f64);
        let mut points = Vec::with_capacity(scale.ceil() as usize);
        let mut name = String::with_capacity(64);
        let (mut current, mut target) = (0.0f64, 0.0f64);
        for (idx, m) in members.iter().enumerate() {
            target += scale * f64::from(m.weight) / total;
            let mut i = 0u64;
            while current < target {
                name.clear();
                let _ = write!(name, "{}_{i}", m.addr);
                points.push((xxh64(name.as_bytes(), 0), idx as u32));
                current += 1.0;
                i += 1;
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// The first endpoint at or after `hash` (wrapping) that `ok` accepts.
    pub(crate) fn pick(&self, hash: u64, mut ok: impl FnMut(usize) -> bool) -> Option<usize> {
        let n = self.points.len();
        let start = self.points.partition_point(|p| p.0 < hash);
        (0..n)
            .map(|k| self.points[(start + k) % n].1 as usize)
            .find(|&idx| ok(idx))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }

    #[cfg(test)]
    pub(crate) fn points_of(&self, idx: usize) -> usize {
        self.points.iter().filter(|p| p.1 as usize == idx).count()
    }
}
