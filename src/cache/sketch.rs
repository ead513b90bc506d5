//! The frequency sketch behind admission: a count-min sketch of 4-bit counters that forgets
//! by halving, as in TinyLFU (Einziger, Friedman, Manes) and Caffeine's `FrequencySketch`.
//!
//! Each key bumps one 4-bit counter in each of four rows; its frequency estimate is the least of
//! the four (collisions only ever inflate a count, the minimum limits how much). Counters
//! saturate at 15, which is all admission needs: it only compares a newcomer with a victim.
//! After `10 × capacity` increments every counter is halved, so the sketch follows a changing
//! workload and a key that was hot yesterday does not stay admitted forever.
//!
//! A doorkeeper (a small Bloom filter) stands in front of the counters, as in the TinyLFU
//! paper: a key's first occurrence only marks it there, so the one-off keys of a scan neither
//! take counters nor bring the next halving closer.
//!
//! Memory: one `u64` (16 counters) per entry of capacity plus 32 doorkeeper bits, 12 bytes per
//! cached entry.

/// A count-min sketch of 4-bit counters with periodic halving, behind a doorkeeper.
#[derive(Clone, Debug)]
pub struct FrequencySketch {
    /// Sixteen 4-bit counters per word.
    table: Vec<u64>,
    /// A Bloom filter (two probes) of the keys seen once since the last halving: a key's first
    /// occurrence only sets its bits, so one-off keys (a scan) neither fill the counters nor
    /// hasten the halving that ages the hot keys' counts.
    doorkeeper: Vec<u64>,
    /// `table.len() - 1` (the length is a power of two).
    mask: usize,
    /// Increments since the last halving.
    additions: u64,
    /// Increments between two halvings.
    sample_size: u64,
}

/// The largest table: 2^22 words (32 MiB), enough for caches of millions of entries.
const MAX_WORDS: usize = 1 << 22;

const SEEDS: [u64; 4] = [
    0xc3a5_c85c_97cb_3127,
    0xb492_b66f_be98_f273,
    0x9ae1_6a3b_2f90_404f,
    0xcbf2_9ce4_8422_2325,
];

impl FrequencySketch {
    /// A sketch sized for about `capacity` distinct keys.
    pub fn new(capacity: usize) -> Self {
        let words = capacity.clamp(16, MAX_WORDS).next_power_of_two();
        FrequencySketch {
            table: vec![0; words],
            doorkeeper: vec![0; words / 2],
            mask: words - 1,
            additions: 0,
            sample_size: 10 * capacity.clamp(16, MAX_WORDS) as u64,
        }
    }

    /// Grows the sketch (forgetting its counts, as Caffeine does) when the cache holds more
    /// keys than it was sized for; a cache bounded only by bytes learns its size this way.
    pub fn ensure_capacity(&mut self, entries: usize) {
        if entries > self.table.len() && self.table.len() < MAX_WORDS {
            *self = FrequencySketch::new(entries.saturating_mul(2));
        }
    }

    #[inline]
    fn slots(&self, hash: u64) -> [(usize, u32); 4] {
        // the key's hash picks which group of four counters (0..4) a row uses within its word;
        // each row then takes counter `group * 4 + row` of its own word
        let spread = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let group = ((spread >> 60) & 3) as u32 * 4;
        let mut slots = [(0, 0); 4];
        for (row, seed) in SEEDS.iter().enumerate() {
            let mut h = hash.wrapping_add(*seed).wrapping_mul(*seed);
            h ^= h >> 32;
            slots[row] = ((h as usize) & self.mask, (group + row as u32) * 4);
        }
        slots
    }

    /// The two doorkeeper bits of `hash`: (word, mask) each.
    #[inline]
    fn door_bits(&self, hash: u64) -> [(usize, u64); 2] {
        let bits = self.doorkeeper.len() * 64;
        let h = hash.rotate_left(17).wrapping_mul(0xff51_afd7_ed55_8ccd);
        let a = (h as usize) & (bits - 1);
        let b = ((h >> 32) as usize) & (bits - 1);
        [(a / 64, 1 << (a % 64)), (b / 64, 1 << (b % 64))]
    }

    fn door_contains(&self, hash: u64) -> bool {
        self.door_bits(hash)
            .iter()
            .all(|&(word, bit)| self.doorkeeper[word] & bit != 0)
    }

    /// The estimated number of recent occurrences of the key with `hash`, 0..=16.
    #[inline]
    pub fn frequency(&self, hash: u64) -> u8 {
        let counted = self
            .slots(hash)
            .iter()
            .map(|&(word, shift)| ((self.table[word] >> shift) & 0xf) as u8)
            .min()
            .unwrap_or(0);
        counted + self.door_contains(hash) as u8
    }

    /// Counts one occurrence of the key with `hash`.
    #[inline]
    pub fn increment(&mut self, hash: u64) {
        if !self.door_contains(hash) {
            for (word, bit) in self.door_bits(hash) {
                self.doorkeeper[word] |= bit;
            }
            return;
        }
        let mut added = false;
        for (word, shift) in self.slots(hash) {
            let counter = (self.table[word] >> shift) & 0xf;
            if counter < 15 {
                self.table[word] += 1 << shift;
                added = true;
            }
        }
        if added {
            self.additions += 1;
            if self.additions >= self.sample_size {
                self.halve();
            }
        }
    }

    /// Halves every counter (and forgets the keys seen once), so old popularity fades.
    fn halve(&mut self) {
        for word in &mut self.table {
            *word = (*word >> 1) & 0x7777_7777_7777_7777;
        }
        self.doorkeeper.fill(0);
        self.additions /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::hash_key;

    #[test]
    fn counts_saturate_at_fifteen_and_tell_keys_apart() {
        let mut sketch = FrequencySketch::new(1024);
        let hot = hash_key(7, b"hot");
        let cold = hash_key(7, b"cold");
        for _ in 0..20 {
            sketch.increment(hot);
        }
        sketch.increment(cold);
        assert_eq!(sketch.frequency(hot), 16);
        assert_eq!(
            sketch.frequency(cold),
            1,
            "seen once: in the doorkeeper only"
        );
        assert_eq!(sketch.frequency(hash_key(7, b"never")), 0);
    }

    #[test]
    fn counts_halve_after_the_sample() {
        let mut sketch = FrequencySketch::new(16);
        let hot = hash_key(1, b"hot");
        for _ in 0..8 {
            sketch.increment(hot);
        }
        assert_eq!(sketch.frequency(hot), 8);
        // the next counted increment completes the sample
        sketch.additions = sketch.sample_size - 1;
        sketch.increment(hash_key(1, b"other"));
        sketch.increment(hash_key(1, b"other"));
        // 7 counted, halved to 3, and the doorkeeper forgotten
        assert_eq!(sketch.frequency(hot), 3);
    }
}
