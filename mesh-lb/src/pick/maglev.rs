//! Maglev (Eisenbud et al., NSDI 2016), as Envoy builds it: a lookup table of
//! prime size M where each endpoint fills slots along its own permutation
//! (`offset + j × skip mod M`, from two XXH64 hashes of its address), taking
//! turns in proportion to weight. A pick is one table read, O(1).

use xxhash_rust::xxh64::xxh64;

use super::hash_table::Member;

const EMPTY: u32 = u32::MAX;

#[derive(Debug, Default)]
pub(crate) struct Table {
    slots: Vec<u32>,
}

impl Table {
    pub(crate) fn build(size: u64, members: &[Member]) -> Table {
        let m = size as usize;
        if members.is_empty() || m == 0 {
            return Table::default();
        }
        struct Fill {
            offset: u64,
            skip: u64,
            next: u64,
            weight: u64,
            target: u64,
        }
        let max_weight = members
            .iter()
            .map(|m| u64::from(m.weight))
            .max()
            .unwrap_or(1);
        let mut fills: Vec<Fill> = members
            .iter()
            .map(|e| {
                let name = e.addr.to_string();
                Fill {
                    offset: xxh64(name.as_bytes(), 0) % size,
                    skip: xxh64(name.as_bytes(), 1) % (size - 1).max(1) + 1,
                    next: 0,
                    weight: u64::from(e.weight),
                    target: 0,
                }
            })
            .collect();
        let mut slots = vec![EMPTY; m];
        let mut filled = 0usize;
        let mut round = 1u64;
        while filled < m {
            for (idx, f) in fills.iter_mut().enumerate() {
                if filled == m {
                    break;
                }
                // An endpoint of weight max/3 takes a turn every third round.
                if round * f.weight < f.target {
                    continue;
                }
                f.target += max_weight;
                let mut c = ((f.offset + f.skip * f.next) % size) as usize;
                while slots[c] != EMPTY {
                    f.next += 1;
                    c = ((f.offset + f.skip * f.next) % size) as usize;
                }
                slots[c] = idx as u32;
                f.next += 1;
                filled += 1;
            }
            round += 1;
        }
        Table { slots }
    }

    /// The endpoint at `hash`, probing onward past any `ok` rejects.
    pub(crate) fn pick(&self, hash: u64, mut ok: impl FnMut(usize) -> bool) -> Option<usize> {
        let m = self.slots.len();
        if m == 0 {
            return None;
        }
        let start = (hash % m as u64) as usize;
        (0..m)
            .map(|k| self.slots[(start + k) % m] as usize)
            .find(|&idx| ok(idx))
    }

    #[cfg(test)]
    pub(crate) fn slots_of(&self, idx: usize) -> usize {
        self.slots.iter().filter(|&&s| s as usize == idx).count()
    }
}
