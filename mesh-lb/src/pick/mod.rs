//! The algorithms: given the endpoints and which are ready, pick one.
//!
//! Every picker keeps its state in slot indices of the [`ReadySet`] and is
//! rebuilt when the set's membership changes; a pick only reads.

mod edf;
pub(crate) mod hash_table;
mod maglev;
mod ring_hash;

use mesh_core::context::TriedEndpoints;

use self::edf::Edf;
use self::hash_table::{HashTable, Kind};
use crate::config::{self, LoadBalancer};
use crate::ready_set::ReadySet;
use crate::rng::FastRng;

/// What a pick may read from the request.
#[derive(Debug, Default)]
pub(crate) struct PickInput<'a> {
    /// The consistent-hash key's hash, if the request had one.
    pub(crate) hash: Option<u64>,
    /// Endpoints earlier attempts used; avoided when another is ready.
    pub(crate) tried: Option<&'a TriedEndpoints>,
    /// Now, for latency-aware picks.
    pub(crate) now_ns: u64,
}

impl PickInput<'_> {
    #[inline]
    fn was_tried<S>(&self, set: &ReadySet<S>, i: usize) -> bool {
        self.tried
            .is_some_and(|t| t.contains(&set.slot(i).endpoint.addr()))
    }
}

#[derive(Debug)]
pub(crate) enum Picker {
    RoundRobin {
        cursor: usize,
        edf: Option<Edf>,
    },
    Random {
        cumulative: Option<Vec<u64>>,
    },
    LeastRequest {
        config: config::LeastRequest,
        edf: Option<Edf>,
    },
    PeakEwma {
        config: config::PeakEwma,
    },
    /// Ring hash or Maglev.
    Hash(HashTable),
}

fn all_equal<S>(set: &ReadySet<S>) -> bool {
    let mut weights = set.endpoints().map(|e| e.weight());
    match weights.next() {
        Some(first) => weights.all(|w| w == first),
        None => true,
    }
}

impl Picker {
    pub(crate) fn new(lb: &LoadBalancer) -> Picker {
        match lb {
            LoadBalancer::RoundRobin => Picker::RoundRobin {
                cursor: 0,
                edf: None,
            },
            LoadBalancer::Random => Picker::Random { cumulative: None },
            LoadBalancer::LeastRequest(c) => Picker::LeastRequest {
                config: c.clone(),
                edf: None,
            },
            LoadBalancer::PeakEwma(c) => Picker::PeakEwma { config: c.clone() },
            LoadBalancer::RingHash(c) => Picker::Hash(HashTable::new(Kind::Ring(c.clone()))),
            LoadBalancer::Maglev(c) => Picker::Hash(HashTable::new(Kind::Maglev(c.table_size))),
        }
    }

    /// Whether picks read round-trip times (so calls must be timed).
    pub(crate) fn needs_rtt(&self) -> bool {
        matches!(self, Picker::PeakEwma { .. })
    }

    /// The EWMA settings, for the peak-EWMA picker.
    pub(crate) fn ewma(&self) -> Option<&config::PeakEwma> {
        match self {
            Picker::PeakEwma { config } => Some(config),
            _ => None,
        }
    }

    /// Swaps in a hash table that finished building off the request path.
    pub(crate) fn poll_pending(&mut self, cx: &mut std::task::Context<'_>) {
        if let Picker::Hash(table) = self {
            table.poll_pending(cx);
        }
    }

    /// Recomputes the picker's state after the set's membership changed.
    pub(crate) fn rebuild<S>(&mut self, set: &ReadySet<S>) {
        let weights = || set.endpoints().map(|e| f64::from(e.weight().get()));
        match self {
            Picker::RoundRobin { cursor, edf } => {
                *cursor = 0;
                *edf = (!all_equal(set)).then(|| {
                    let mut e = Edf::default();
                    e.rebuild(weights());
                    e
                });
            }
            Picker::Random { cumulative } => {
                *cumulative = (!all_equal(set)).then(|| {
                    set.endpoints()
                        .scan(0u64, |sum, e| {
                            *sum += u64::from(e.weight().get());
                            Some(*sum)
                        })
                        .collect()
                });
            }
            Picker::LeastRequest { edf, .. } => {
                *edf = (!all_equal(set)).then(|| {
                    let mut e = Edf::default();
                    e.rebuild(weights());
                    e
                });
            }
            Picker::PeakEwma { .. } => {}
            Picker::Hash(table) => table.rebuild(set),
        }
    }

    /// Picks a ready endpoint's slot index; `None` only when none is ready.
    pub(crate) fn pick<S>(
        &mut self,
        set: &ReadySet<S>,
        input: &PickInput<'_>,
        rng: &mut FastRng,
    ) -> Option<usize> {
        if set.ready_len() == 0 {
            return None;
        }
        let fresh = |i: usize| set.is_ready(i) && !input.was_tried(set, i);
        match self {
            Picker::RoundRobin { cursor, edf: None } => {
                let n = set.len();
                let found = (0..n)
                    .map(|k| (*cursor + k) % n)
                    .find(|&i| fresh(i))
                    .or_else(|| (0..n).map(|k| (*cursor + k) % n).find(|&i| set.is_ready(i)));
                if let Some(i) = found {
                    *cursor = i + 1;
                }
                found
            }
            Picker::RoundRobin { edf: Some(edf), .. } => {
                let weight = |i: usize| f64::from(set.slot(i).endpoint.weight().get());
                edf.pick(fresh, weight)
                    .or_else(|| edf.pick(|i| set.is_ready(i), weight))
            }
            Picker::Random { cumulative: None } => Some(random_ready(set, input, rng)),
            Picker::Random {
                cumulative: Some(cum),
            } => {
                let total = cum.last().copied().unwrap_or(0);
                // A few weighted draws over all endpoints; unready ones are redrawn.
                for _ in 0..8 {
                    let r = rng.next_u64() % total.max(1);
                    let i = cum.partition_point(|&c| c <= r);
                    if i < set.len() && fresh(i) {
                        return Some(i);
                    }
                }
                Some(weighted_ready(set, rng))
            }
            Picker::LeastRequest { config, edf: None } => {
                Some(best_of(set, input, rng, config.choice_count, |i| {
                    f64::from(set.slot(i).stats.active())
                }))
            }
            Picker::LeastRequest {
                config,
                edf: Some(edf),
            } => {
                let bias = config.active_request_bias;
                let weight = |i: usize| {
                    let slot = set.slot(i);
                    let w = f64::from(slot.endpoint.weight().get());
                    let load = f64::from(slot.stats.active()) + 1.0;
                    if bias == 1.0 {
                        w / load
                    } else if bias == 0.0 {
                        w
                    } else {
                        w / load.powf(bias)
                    }
                };
                edf.pick(fresh, weight)
                    .or_else(|| edf.pick(|i| set.is_ready(i), weight))
            }
            Picker::PeakEwma { config } => {
                let floor = config.default_rtt.as_nanos() as f64;
                Some(best_of(set, input, rng, 2, |i| {
                    let stats = &set.slot(i).stats;
                    let rtt = stats.decayed_rtt(input.now_ns, config.decay, Some(floor));
                    rtt * (f64::from(stats.active()) + 1.0)
                }))
            }
            // Retries stay on the hashed endpoint (Istio drops `previous_hosts`
            // for consistent hashing), so `tried` is not consulted here.
            // A request without the key, or a table not yet covering any
            // ready endpoint, goes to a random one.
            Picker::Hash(table) => input
                .hash
                .and_then(|h| table.pick(set, h))
                .or_else(|| Some(random_ready(set, input, rng))),
        }
    }
}

/// A uniformly random ready endpoint, preferring untried ones.
fn random_ready<S>(set: &ReadySet<S>, input: &PickInput<'_>, rng: &mut FastRng) -> usize {
    let n = set.ready_len();
    let start = rng.below(n);
    let first = set.ready_at(start);
    if !input.was_tried(set, first) {
        return first;
    }
    // A retry: look on from the draw for an endpoint not yet tried.
    (1..n)
        .map(|k| set.ready_at((start + k) % n))
        .find(|&i| !input.was_tried(set, i))
        .unwrap_or(first)
}

/// A weighted random ready endpoint, by a scan of the ready list (the slow
/// path, when weighted draws keep hitting unready endpoints).
fn weighted_ready<S>(set: &ReadySet<S>, rng: &mut FastRng) -> usize {
    let total: u64 = (0..set.ready_len())
        .map(|j| u64::from(set.slot(set.ready_at(j)).endpoint.weight().get()))
        .sum();
    let mut r = rng.next_u64() % total.max(1);
    for j in 0..set.ready_len() {
        let i = set.ready_at(j);
        let w = u64::from(set.slot(i).endpoint.weight().get());
        if r < w {
            return i;
        }
        r -= w;
    }
    set.ready_at(0)
}

/// The lowest-cost of `choices` random ready endpoints (two distinct ones when
/// `choices` is 2: the power of two choices), untried ones first.
fn best_of<S>(
    set: &ReadySet<S>,
    input: &PickInput<'_>,
    rng: &mut FastRng,
    choices: usize,
    cost: impl Fn(usize) -> f64,
) -> usize {
    let n = set.ready_len();
    if n == 1 {
        return set.ready_at(0);
    }
    let rank = |i: usize| (input.was_tried(set, i), cost(i));
    let better = |a: usize, b: usize| {
        let (ta, ca) = rank(a);
        let (tb, cb) = rank(b);
        match ta.cmp(&tb).then(ca.total_cmp(&cb)) {
            std::cmp::Ordering::Greater => b,
            _ => a,
        }
    };
    let a = rng.below(n);
    let mut b = rng.below(n - 1);
    if b >= a {
        b += 1;
    }
    let mut best = better(set.ready_at(a), set.ready_at(b));
    for _ in 2..choices {
        best = better(best, set.ready_at(rng.below(n)));
    }
    if input.was_tried(set, best) {
        // Every choice was tried already: a retry takes any untried endpoint.
        return random_ready(set, input, rng);
    }
    best
}

#[cfg(test)]
mod tests;
