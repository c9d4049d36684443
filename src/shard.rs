//! Sharding targets across replicas with rendezvous hashing.
//!
//! Each target (account, region, kind, name) belongs to the shard with the highest score for it.
//! Every replica computes the same owner without talking to the others, and changing the number
//! of shards moves only the targets whose owner changes: about 1/N of them when adding one.

use std::fmt;

use crate::target::TargetKey;

/// This replica's share of the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub ordinal: u32,
    pub total: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { ordinal: 0, total: 1 }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ordinal, self.total)
    }
}

impl Shard {
    /// `ordinal` is a number, or a name that ends in `-<number>` such as a StatefulSet pod's.
    pub fn parse(ordinal: &str, total: u32) -> Result<Shard, String> {
        let digits = ordinal.rsplit('-').next().unwrap_or(ordinal);
        let ordinal = digits
            .parse::<u32>()
            .map_err(|_| format!("--shard {ordinal:?} is neither a number nor a name ending in -<number>"))?;
        if total == 0 {
            return Err("--total-shards must be at least 1".into());
        }
        if ordinal >= total {
            return Err(format!("--shard {ordinal} is out of range for --total-shards {total} (0 to {})", total - 1));
        }
        Ok(Shard { ordinal, total })
    }

    /// Whether this replica polls `key`.
    pub fn owns(&self, key: &TargetKey) -> bool {
        self.total <= 1 || owner(key, self.total) == self.ordinal
    }
}

/// The shard with the highest score for `key`.
pub fn owner(key: &TargetKey, total: u32) -> u32 {
    (0..total).max_by_key(|shard| score(key, *shard)).unwrap_or(0)
}

/// A hash that is the same in every process and every version of the exporter: FNV-1a over the
/// key's fields, finished with SplitMix64's mixer for an even spread.
fn score(key: &TargetKey, shard: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes.iter().chain([&0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(key.account.as_bytes());
    feed(key.region.as_bytes());
    feed(key.kind.as_bytes());
    feed(key.name.as_bytes());
    feed(&shard.to_le_bytes());
    let mut z = hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<TargetKey> {
        (0..3000)
            .map(|i| TargetKey {
                account: "prod".into(),
                region: "us-east-1".into(),
                kind: "pipeline",
                service: "codepipeline",
                name: format!("pipeline-{i}"),
            })
            .collect()
    }

    #[test]
    fn every_target_has_exactly_one_owner_and_shards_are_even() {
        let keys = keys();
        let shards: Vec<Shard> = (0..4).map(|i| Shard { ordinal: i, total: 4 }).collect();
        let mut counts = [0usize; 4];
        for key in &keys {
            let owners: Vec<u32> = shards.iter().filter(|s| s.owns(key)).map(|s| s.ordinal).collect();
            assert_eq!(owners.len(), 1);
            counts[owners[0] as usize] += 1;
        }
        assert!(counts.iter().all(|&n| (600..=900).contains(&n)), "{counts:?}");
    }

    #[test]
    fn adding_a_shard_moves_only_targets_to_the_new_one() {
        let keys = keys();
        let moved: Vec<&TargetKey> = keys.iter().filter(|k| owner(k, 4) != owner(k, 5)).collect();
        assert!(moved.iter().all(|k| owner(k, 5) == 4), "targets move only to the new shard");
        assert!((450..=750).contains(&moved.len()), "about a fifth move: {}", moved.len());
    }

    #[test]
    fn parses_ordinals_and_pod_names() {
        assert_eq!(Shard::parse("2", 3), Ok(Shard { ordinal: 2, total: 3 }));
        assert_eq!(Shard::parse("codepipeline-exporter-1", 3), Ok(Shard { ordinal: 1, total: 3 }));
        assert!(Shard::parse("3", 3).is_err());
        assert!(Shard::parse("exporter", 3).is_err());
        assert!(Shard::parse("0", 0).is_err());
    }
}
