//! One shared copy of each name that many targets repeat: stage and action names, action types
//! and statuses. Ten thousand pipelines of a handful of shapes hold a few hundred distinct names,
//! so each target keeps a pointer rather than its own copy (docs/sizing.md, "Where the memory
//! goes").

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

static NAMES: Mutex<Option<Names>> = Mutex::new(None);

#[derive(Default)]
struct Names {
    set: HashSet<Arc<str>>,
    /// The size at which names no target holds any more are dropped, so that the set follows the
    /// names in use rather than every name ever seen.
    sweep_at: usize,
}

/// The shared copy of `name`.
pub fn intern(name: &str) -> Arc<str> {
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let names = names.get_or_insert_with(Names::default);
    if let Some(shared) = names.set.get(name) {
        return shared.clone();
    }
    if names.set.len() >= names.sweep_at {
        names.set.retain(|name| Arc::strong_count(name) > 1);
        names.sweep_at = (names.set.len() * 2).max(1024);
    }
    let shared: Arc<str> = Arc::from(name);
    names.set.insert(shared.clone());
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_names_share_one_copy() {
        let (a, b) = (intern("Deploy"), intern(&String::from("Deploy")));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, "Deploy");
        assert!(!Arc::ptr_eq(&a, &intern("Build")));
    }
}
