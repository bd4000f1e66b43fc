//! A tiny, fast random number generator for picks (wyrand): one multiply and
//! no allocation or lock per draw. Picks need speed and spread, not secrecy.

#[derive(Clone, Debug)]
pub(crate) struct FastRng(u64);

impl FastRng {
    pub(crate) fn new() -> Self {
        FastRng(rand::random::<u64>())
    }

    #[cfg(test)]
    pub(crate) fn seeded(seed: u64) -> Self {
        FastRng(seed)
    }

    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// A number in `0..n` (n > 0), by Lemire's multiply-shift.
    #[inline]
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}
