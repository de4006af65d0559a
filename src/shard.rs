//! Scale-out: `--shard INDEX/COUNT` keeps the IDs whose stable hash falls in
//! this shard, so N processes over one input split it without talking to each
//! other. Each shard paces at `rate / COUNT` and keeps its own files and ledger.

use std::fmt;
use std::str::FromStr;

/// Environment variable Kubernetes sets on each pod of an Indexed Job.
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// One slice of the ID space. `Shard::default()` is the whole space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Shard {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// Whether `id` belongs to this shard: xxh3-64 of its bytes, modulo the
    /// count. The hash is fixed by its specification, so the split is the
    /// same on every machine and in every version.
    pub fn owns(&self, id: &str) -> bool {
        self.is_whole()
            || xxhash_rust::xxh3::xxh3_64(id.as_bytes()) % u64::from(self.count)
                == u64::from(self.index)
    }

    pub fn is_whole(&self) -> bool {
        self.count <= 1
    }

    /// The shard's part of file and ledger names: `0` when unsharded, else
    /// `<index>of<count>` (`2of3`).
    pub fn label(&self) -> String {
        if self.is_whole() {
            "0".into()
        } else {
            format!("{}of{}", self.index, self.count)
        }
    }

    /// Parses `INDEX/COUNT`, or `/COUNT` with the index from
    /// `JOB_COMPLETION_INDEX` (passed in as `index_env`).
    pub fn parse_with(text: &str, index_env: Option<&str>) -> Result<Shard, String> {
        let (index, count) = text.split_once('/').ok_or_else(|| {
            format!("`{text}` is not INDEX/COUNT (for example 0/3, or /3 to take INDEX from {INDEX_ENV})")
        })?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("shard count `{count}` is not a whole number"))?;
        if count == 0 {
            return Err("shard count must be at least 1".into());
        }
        let index = match index.trim() {
            "" => index_env
                .ok_or_else(|| format!("`{text}` has no INDEX and {INDEX_ENV} is not set"))?
                .trim()
                .to_owned(),
            given => given.to_owned(),
        };
        let index: u32 = index
            .parse()
            .map_err(|_| format!("shard index `{index}` is not a whole number"))?;
        if index >= count {
            return Err(format!(
                "shard index {index} is out of range for {count} shards (0 to {})",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        Shard::parse_with(text, std::env::var(INDEX_ENV).ok().as_deref())
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_index_and_count_or_takes_the_index_from_the_job() {
        assert_eq!(
            Shard::parse_with("2/3", None),
            Ok(Shard { index: 2, count: 3 })
        );
        assert_eq!(
            Shard::parse_with("/4", Some("1")),
            Ok(Shard { index: 1, count: 4 })
        );
        assert!(
            Shard::parse_with("/4", None)
                .unwrap_err()
                .contains(INDEX_ENV)
        );
        assert!(
            Shard::parse_with("3/3", None)
                .unwrap_err()
                .contains("out of range")
        );
        assert!(Shard::parse_with("0/0", None).is_err());
        assert!(Shard::parse_with("1", None).is_err());
    }

    #[test]
    fn shards_split_ids_into_disjoint_parts_that_cover_them_all() {
        let shards: Vec<Shard> = (0..3).map(|index| Shard { index, count: 3 }).collect();
        let mut sizes = [0usize; 3];
        for n in 0..3000 {
            let id = format!("gen-1700000000-{n:06}");
            let owners: Vec<usize> = (0..3).filter(|&s| shards[s].owns(&id)).collect();
            assert_eq!(owners.len(), 1, "{id} owned by {owners:?}");
            sizes[owners[0]] += 1;
        }
        assert!(sizes.iter().all(|&n| (800..1200).contains(&n)), "{sizes:?}");
        // Reference values from another xxh3 implementation (Python's xxhash).
        // A changed hash would move IDs between shards mid-backfill.
        for (id, shard) in [("gen-1700000000-000000", 1), ("gen-a", 2), ("gen-b", 1)] {
            assert!(shards[shard].owns(id), "{id}");
        }
    }
}
