//! Earliest-deadline-first scheduling, as Envoy's weighted round robin and
//! weighted least request use: each endpoint's next turn is one "period"
//! (1 / weight) after its last, and the earliest turn goes first. Endpoints are
//! interleaved smoothly in proportion to weight; a pick is O(log n).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Debug)]
struct Turn {
    deadline: f64,
    seq: u64,
    idx: u32,
}

impl PartialEq for Turn {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Turn {}
impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Turn {
    // Reversed: BinaryHeap is a max-heap and we want the earliest deadline,
    // ties going to the endpoint scheduled first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .deadline
            .total_cmp(&self.deadline)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

#[derive(Debug, Default)]
pub(crate) struct Edf {
    heap: BinaryHeap<Turn>,
    seq: u64,
}

impl Edf {
    /// Schedules every endpoint afresh, endpoint `i` with `weights[i]`.
    pub(crate) fn rebuild(&mut self, weights: impl Iterator<Item = f64>) {
        self.heap.clear();
        for (i, w) in weights.enumerate() {
            let turn = Turn {
                deadline: 1.0 / w.max(f64::MIN_POSITIVE),
                seq: self.seq,
                idx: i as u32,
            };
            self.seq += 1;
            self.heap.push(turn);
        }
    }

    /// Takes the earliest turn whose endpoint `ok` accepts; every turn passed
    /// over (and the taken one) is rescheduled one period later, the period
    /// being `1 / weight_of(i)` at that moment.
    pub(crate) fn pick(
        &mut self,
        mut ok: impl FnMut(usize) -> bool,
        mut weight_of: impl FnMut(usize) -> f64,
    ) -> Option<usize> {
        for _ in 0..self.heap.len() {
            let turn = self.heap.pop()?;
            let idx = turn.idx as usize;
            let next = Turn {
                deadline: turn.deadline + 1.0 / weight_of(idx).max(f64::MIN_POSITIVE),
                seq: self.seq,
                idx: turn.idx,
            };
            self.seq += 1;
            self.heap.push(next);
            if ok(idx) {
                return Some(idx);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_one_to_two_interleave() {
        let mut edf = Edf::default();
        let w = [1.0, 2.0];
        edf.rebuild(w.iter().copied());
        let seq: Vec<usize> = (0..6)
            .map(|_| edf.pick(|_| true, |i| w[i]).unwrap())
            .collect();
        assert_eq!(seq.iter().filter(|&&i| i == 1).count(), 4);
        // Smooth: never three of the heavy one in a row.
        assert!(!seq.windows(3).any(|w| w == [1, 1, 1]), "{seq:?}");
    }

    #[test]
    fn unavailable_endpoints_are_passed_over() {
        let mut edf = Edf::default();
        edf.rebuild([1.0, 1.0, 1.0].into_iter());
        for _ in 0..10 {
            assert_ne!(edf.pick(|i| i != 1, |_| 1.0), Some(1));
        }
        assert_eq!(edf.pick(|_| false, |_| 1.0), None);
    }
}
