//! Sharding across replicas with rendezvous hashing.
//!
//! Each target (account, region, kind, name) belongs to the shard with the highest score for it.
//! Every replica computes the same owner without talking to the others, and changing the number
//! of shards moves only the targets whose owner changes: about 1/N of them when adding one.
//!
//! What is hashed depends on the shape polled ([`By`]). One account can hold 10,000 pipelines, so
//! the targets of a scope are divided among replicas, and each replica discovers the whole scope.
//! An organization is thousands of scopes, most of them empty: there a whole account-and-region
//! scope belongs to one replica, with its discovery, its clients and its calls, so that adding
//! replicas divides the scopes, not only the pipelines.

use std::fmt;

use crate::target::TargetKey;

/// What one replica's share is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum By {
    /// Targets, by (account, region, kind, name): every replica discovers every scope.
    #[default]
    Target,
    /// Account-and-region scopes, by (account, region): each scope is discovered by one replica.
    Scope,
}

/// This replica's share of the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub ordinal: u32,
    pub total: u32,
    pub by: By,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { ordinal: 0, total: 1, by: By::Target }
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
        Ok(Shard { ordinal, total, by: By::Target })
    }

    /// Shard `ordinal` of `total`, by target.
    pub fn new(ordinal: u32, total: u32) -> Shard {
        Shard { ordinal, total, by: By::Target }
    }

    /// The same share, made of `by`.
    pub fn by(self, by: By) -> Shard {
        Shard { by, ..self }
    }

    /// Whether this replica polls `key`.
    pub fn owns(&self, key: &TargetKey) -> bool {
        match self.by {
            By::Target => self.total <= 1 || owner(key, self.total) == self.ordinal,
            By::Scope => self.owns_scope(&key.account, &key.region),
        }
    }

    /// Whether this replica runs the scope of `account` in `region`: always when sharding by
    /// target, since every replica discovers every scope then.
    pub fn owns_scope(&self, account: &str, region: &str) -> bool {
        match self.by {
            By::Target => true,
            By::Scope => self.total <= 1 || scope_owner(account, region, self.total) == self.ordinal,
        }
    }
}

/// The shard with the highest score for `key`.
pub fn owner(key: &TargetKey, total: u32) -> u32 {
    let fields = [key.account.as_bytes(), key.region.as_bytes(), key.kind.as_bytes(), key.name.as_bytes()];
    (0..total).max_by_key(|shard| score(&fields, *shard)).unwrap_or(0)
}

/// The shard with the highest score for the scope of `account` in `region`.
pub fn scope_owner(account: &str, region: &str, total: u32) -> u32 {
    let fields = [account.as_bytes(), region.as_bytes()];
    (0..total).max_by_key(|shard| score(&fields, *shard)).unwrap_or(0)
}

/// A hash that is the same in every process and every version of the exporter: FNV-1a over the
/// fields, finished with SplitMix64's mixer for an even spread.
fn score(fields: &[&[u8]], shard: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes.iter().chain([&0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for field in fields {
        feed(field);
    }
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
        let shards: Vec<Shard> = (0..4).map(|i| Shard::new(i, 4)).collect();
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
    fn by_scope_every_target_of_a_scope_has_the_scope_s_owner_and_scopes_are_even() {
        let shards: Vec<Shard> = (0..4).map(|i| Shard::new(i, 4).by(By::Scope)).collect();
        let mut counts = [0usize; 4];
        for account in 0..1000 {
            for region in ["us-east-1", "eu-west-1", "ap-southeast-2"] {
                let account = format!("{:012}", 100_000_000_000u64 + account);
                let owners: Vec<u32> = shards.iter().filter(|s| s.owns_scope(&account, region)).map(|s| s.ordinal).collect();
                assert_eq!(owners.len(), 1);
                counts[owners[0] as usize] += 1;
                for name in ["pipeline-a", "pipeline-b"] {
                    let key = TargetKey {
                        account: account.as_str().into(),
                        region: region.into(),
                        kind: "pipeline",
                        service: "codepipeline",
                        name: name.into(),
                    };
                    assert!(shards[owners[0] as usize].owns(&key));
                    assert_eq!(shards.iter().filter(|s| s.owns(&key)).count(), 1);
                }
            }
        }
        // 3,000 scopes: 750 each, within 10 %.
        assert!(counts.iter().all(|&n| (675..=825).contains(&n)), "{counts:?}");
        // By target, every replica runs every scope.
        assert!(Shard::new(1, 4).owns_scope("any", "us-east-1"));
    }

    #[test]
    fn parses_ordinals_and_pod_names() {
        assert_eq!(Shard::parse("2", 3), Ok(Shard::new(2, 3)));
        assert_eq!(Shard::parse("codepipeline-exporter-1", 3), Ok(Shard::new(1, 3)));
        assert!(Shard::parse("3", 3).is_err());
        assert!(Shard::parse("exporter", 3).is_err());
        assert!(Shard::parse("0", 0).is_err());
    }
}
