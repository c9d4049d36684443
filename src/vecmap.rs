//! A map kept as a sorted vector, for the small maps each target keeps between polls.
//!
//! A pipeline's history and counters are a handful of entries each (two duration histograms, one
//! trigger, five stages), and there is one set of them per pipeline. A `BTreeMap` allocates a
//! node with room for eleven entries as soon as it holds one, and a `HashMap` a table of eight
//! buckets or more: at 10,000 pipelines the duration histograms alone took 10.7 MB in
//! `BTreeMap` nodes. A sorted vector holds exactly its entries, iterates in the same order a
//! `BTreeMap` does, and finds a key among a handful as fast.

use std::borrow::Borrow;

/// Entries sorted by key, each key once.
#[derive(Debug, Clone, PartialEq)]
pub struct VecMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap(Vec::new())
    }
}

impl<K: Ord, V> VecMap<K, V> {
    pub fn new() -> Self {
        VecMap(Vec::new())
    }

    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.0.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    /// The value of `key`, inserted first as `default()` if there is none.
    pub fn get_or_insert_with(&mut self, key: K, default: impl FnOnce() -> V) -> &mut V {
        let i = match self.find(&key) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (key, default()));
                i
            }
        };
        &mut self.0[i].1
    }

    /// Sets `key` to `value`, returning the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.0.retain(|(k, v)| keep(k, v));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }
}

impl<'a, K: Ord, V> IntoIterator for &'a VecMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for VecMap<K, V> {
    /// Later entries of a key replace earlier ones, as collecting into a `BTreeMap` does.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut map = VecMap::new();
        for (key, value) in entries {
            map.insert(key, value);
        }
        map
    }
}

impl<K: Ord + Borrow<Q>, Q: Ord + ?Sized, V> std::ops::Index<&Q> for VecMap<K, V> {
    type Output = V;

    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry for the key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_keys_sorted_and_once_like_a_btree_map() {
        let mut map: VecMap<String, u64> = VecMap::new();
        for key in ["b", "a", "c", "a"] {
            *map.get_or_insert_with(key.to_string(), || 0) += 1;
        }
        assert_eq!(map.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(), [("a", 2), ("b", 1), ("c", 1)]);
        assert_eq!(map.insert("b".into(), 7), Some(1));
        assert_eq!(map.insert("d".into(), 1), None);
        assert_eq!(map.get("b"), Some(&7));
        assert_eq!(map["d"], 1);
        assert_eq!(map.get("e"), None);
        map.retain(|k, _| k != "a");
        assert_eq!(map.keys().map(String::as_str).collect::<Vec<_>>(), ["b", "c", "d"]);
        assert_eq!((map.len(), map.contains_key("c"), map.contains_key("a")), (3, true, false));
        let collected: VecMap<&str, u8> = [("z", 1), ("y", 2), ("z", 3)].into_iter().collect();
        assert_eq!(collected.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(), [("y", 2), ("z", 3)]);
    }
}
