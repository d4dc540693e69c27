//! The seeded shuffle every training loader uses (clips and token rows).

use crate::rng::SplitMix64;

/// The item at position `sample` of an endless stream that visits every
/// item once per epoch, in a fresh seeded order each epoch. Random access
/// by sample counter, so a resumed run continues the same stream.
pub struct ShuffledOrder {
    seed: u64,
    purpose: &'static str,
    len: u64,
    epoch: u64,
    permutation: Vec<u64>,
}

impl ShuffledOrder {
    pub fn new(seed: u64, purpose: &'static str, len: u64) -> Self {
        assert!(len > 0, "nothing to shuffle");
        let mut order = Self {
            seed,
            purpose,
            len,
            epoch: u64::MAX,
            permutation: Vec::new(),
        };
        order.load_epoch(0);
        order
    }

    fn load_epoch(&mut self, epoch: u64) {
        let mut rng = SplitMix64::for_item(self.seed, self.purpose, epoch);
        let mut p: Vec<u64> = (0..self.len).collect();
        for i in (1..p.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            p.swap(i, j);
        }
        self.permutation = p;
        self.epoch = epoch;
    }

    pub fn item_at(&mut self, sample: u64) -> u64 {
        let epoch = sample / self.len;
        if epoch != self.epoch {
            self.load_epoch(epoch);
        }
        self.permutation[(sample % self.len) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffled_order_is_a_permutation_per_epoch_and_seeded() {
        let mut a = ShuffledOrder::new(3, "test", 10);
        let epoch0: Vec<u64> = (0..10).map(|s| a.item_at(s)).collect();
        let epoch1: Vec<u64> = (10..20).map(|s| a.item_at(s)).collect();
        let mut sorted = epoch0.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_ne!(epoch0, epoch1);
        // Random access (as on resume) gives the same stream.
        let mut b = ShuffledOrder::new(3, "test", 10);
        assert_eq!(b.item_at(13), epoch1[3]);
        assert_eq!(b.item_at(2), epoch0[2]);
        let mut c = ShuffledOrder::new(4, "test", 10);
        assert_ne!((0..10).map(|s| c.item_at(s)).collect::<Vec<_>>(), epoch0);
    }

}
