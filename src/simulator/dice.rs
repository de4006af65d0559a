//! Hash-derived draws: per-ID values that never change and per-request fault dice.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// A splitmix64 stream seeded from an ID hash, so each record field draws independently
/// while the whole record still depends only on the ID.
pub(crate) struct IdDice(u64);

impl IdDice {
    /// Starts the stream for `id`; `salt` separates independent uses of the same ID.
    pub(crate) fn new(id: &str, salt: u64) -> Self {
        Self(xxh3_64_with_seed(id.as_bytes(), salt))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n`; `n` is always a non-zero constant at the call sites.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A value in `lo..hi` (`lo < hi`).
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo))
    }

    /// True with probability `p` percent.
    pub(crate) fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    /// One element of a non-empty constant table.
    pub(crate) fn pick_ref<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        // The index is reduced modulo `len`, and every table passed here is a non-empty const.
        &items[self.below(items.len() as u64) as usize]
    }

    /// A copy of one element of a non-empty constant table.
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        *self.pick_ref(items)
    }
}

/// A stable number in `[0, 1)` for `id`, used for per-ID faults such as permanent 404s.
pub(crate) fn id_fraction(id: &str, salt: u64) -> f64 {
    (xxh3_64_with_seed(id.as_bytes(), salt) >> 11) as f64 / (1u64 << 53) as f64
}

/// The creation second encoded in a `gen-<unix>-<rest>` ID, if the ID has that shape.
pub(crate) fn id_unix_seconds(id: &str) -> Option<i64> {
    split_unix_id(id)?.0.parse().ok()
}

/// The part after the `gen-<unix>-` prefix, if the ID has that shape.
pub(crate) fn id_tail(id: &str) -> Option<&str> {
    split_unix_id(id).map(|(_, tail)| tail)
}

fn split_unix_id(id: &str) -> Option<(&str, &str)> {
    let (digits, rest) = id.strip_prefix("gen-")?.split_once('-')?;
    if digits.is_empty() || rest.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits, rest))
}

/// The fault dice for request number `seq`: reproducible for a given seed and arrival order.
pub(crate) fn request_dice(seed: u64, seq: u64) -> fastrand::Rng {
    let mut mix = IdDice(seed ^ seq.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    fastrand::Rng::with_seed(mix.next_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_prefix_only_from_new_style_ids() {
        assert_eq!(
            id_unix_seconds("gen-1764704027-YmgZuzDAKrAywxh1aHQW"),
            Some(1_764_704_027)
        );
        assert_eq!(id_unix_seconds("gen-3bhGkxlo4XFrqiabUM7NDtwDzWwG"), None);
        assert_eq!(id_unix_seconds("gen-12x-abc"), None);
        assert_eq!(id_unix_seconds("gen-12-"), None);
        assert_eq!(id_unix_seconds("other-12-abc"), None);
        assert_eq!(id_tail("gen-12-a-b"), Some("a-b"));
        assert_eq!(id_tail("gen-12x-abc"), None);
    }

    #[test]
    fn id_fraction_is_stable_and_spread() {
        assert_eq!(id_fraction("a", 1), id_fraction("a", 1));
        let below_half = (0..10_000)
            .filter(|i| id_fraction(&format!("gen-{i}"), 7) < 0.5)
            .count();
        assert!((4_500..5_500).contains(&below_half), "{below_half}");
    }

    #[test]
    fn range_stays_in_bounds() {
        let mut dice = IdDice::new("x", 0);
        for _ in 0..1_000 {
            let v = dice.range(5, 9);
            assert!((5..9).contains(&v));
        }
    }
}
