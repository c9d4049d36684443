//! The store of rendered series, in the manner of kube-state-metrics' metrics store.
//!
//! Pollers hand the store the already-rendered sample lines of one target; the store keeps them
//! per metric family and per target, and a background assembler turns them into complete scrape
//! bodies whenever something changed. A scrape therefore clones a reference-counted buffer: its
//! cost does not depend on how many pipelines there are, and it never waits on AWS or on a poll.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::compression::{Prefix, Segment};
use crate::exposition::{self, Family, Format};

/// What a target is, as the `kind` label of the exporter's health series says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetKind {
    Discovery,
    Pipeline,
    RepositorySync,
    ResourceSync,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Discovery => "discovery",
            TargetKind::Pipeline => "pipeline",
            TargetKind::RepositorySync => "repository_sync",
            TargetKind::ResourceSync => "resource_sync",
        }
    }
}

/// The stable identity of one polled object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetKey {
    pub account: Arc<str>,
    pub region: Arc<str>,
    pub kind: TargetKind,
    pub name: String,
}

impl fmt::Display for TargetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}/{}", self.account, self.region, self.kind.as_str(), self.name)
    }
}

/// The sample lines of one target, grouped by family, ready to be stored.
#[derive(Debug, Default)]
pub struct Rendered {
    families: Vec<(&'static Family, Vec<u8>)>,
}

impl Rendered {
    /// Adds a sample whose name is the family's name.
    pub fn sample(&mut self, family: &'static Family, labels: &[(&str, &str)], value: f64) {
        self.sample_named(family, family.name, labels, value);
    }

    /// Adds a sample with its own name, for the `_bucket`, `_sum` and `_count` of a histogram.
    pub fn sample_named(&mut self, family: &'static Family, name: &str, labels: &[(&str, &str)], value: f64) {
        let position = match self.families.iter().position(|(f, _)| std::ptr::eq(*f, family)) {
            Some(position) => position,
            None => {
                self.families.push((family, Vec::new()));
                self.families.len() - 1
            }
        };
        exposition::write_sample(&mut self.families[position].1, name, labels, value);
    }

    /// Adds a state set, as kube-state-metrics renders them: one series per status the SDK
    /// knows, plus the current status if AWS returned one the SDK does not know yet, under a
    /// `status` label; the current one is 1, the others 0, and all are 0 when there is none.
    pub fn state_set(&mut self, family: &'static Family, labels: &[(&str, &str)], known: &[&str], current: Option<&str>) {
        let mut with_status: Vec<(&str, &str)> = labels.to_vec();
        for status in known.iter().copied().chain(current.filter(|c| !known.contains(c))) {
            with_status.push(("status", status));
            self.sample(family, &with_status, if current == Some(status) { 1.0 } else { 0.0 });
            with_status.pop();
        }
    }

    /// Writes every family with its header, for metrics rendered at scrape time.
    pub fn write(&self, out: &mut Vec<u8>, format: Format) {
        for (family, lines) in &self.families {
            family.write_header(out, format);
            out.extend_from_slice(lines);
        }
    }
}

/// A histogram's cumulative bucket counts, count and sum.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    /// An empty histogram with the given upper bounds (`+Inf` is implied).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, buckets: vec![0; bounds.len()], count: 0, sum: 0.0 }
    }

    pub fn observe(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        for (bucket, bound) in self.buckets.iter_mut().zip(self.bounds) {
            if value <= *bound {
                *bucket += 1;
            }
        }
    }

    /// Writes the `_bucket`, `_sum` and `_count` samples of this histogram.
    pub fn render(&self, rendered: &mut Rendered, family: &'static Family, labels: &[(&str, &str)]) {
        let bucket_name = format!("{}_bucket", family.name);
        let bounds: Vec<String> = self.bounds.iter().map(|b| exposition::bound_label(*b)).collect();
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        for (le, count) in bounds.iter().zip(&self.buckets) {
            with_le.push(("le", le));
            rendered.sample_named(family, &bucket_name, &with_le, *count as f64);
            with_le.pop();
        }
        with_le.push(("le", "+Inf"));
        rendered.sample_named(family, &bucket_name, &with_le, self.count as f64);
        rendered.sample_named(family, &format!("{}_sum", family.name), labels, self.sum);
        rendered.sample_named(family, &format!("{}_count", family.name), labels, self.count as f64);
    }
}

/// One complete scrape body, without the trailer that the HTTP layer adds after the exporter's
/// own metrics.
///
/// It holds the stored sample lines by reference, not copied. The gzip form of the OpenMetrics
/// body, which Prometheus asks for, is deflated straight from them when assembled; the others are
/// built on the first scrape that asks for them and then kept until the next assembly. So the
/// memory of a scrape body is the stored lines plus their compressed form, unless some client
/// keeps asking for uncompressed bodies too.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Each family with the stored lines of every target, in order.
    families: Vec<(&'static Family, Vec<Bytes>)>,
    openmetrics: OnceLock<Bytes>,
    text: OnceLock<Bytes>,
    openmetrics_gzip: OnceLock<Prefix>,
    text_gzip: OnceLock<Prefix>,
    /// The store's generation the body was assembled from.
    generation: u64,
}

impl Exposition {
    /// The body in `format`.
    pub fn body(&self, format: Format) -> Bytes {
        let cell = match format {
            Format::OpenMetrics => &self.openmetrics,
            Format::Text => &self.text,
        };
        cell.get_or_init(|| {
            let mut body = Vec::with_capacity(self.size());
            for part in self.parts(format) {
                body.extend_from_slice(&part);
            }
            Bytes::from(body)
        })
        .clone()
    }

    /// The body deflated, to be followed by the scrape's own part (see [`Prefix::gzip`]).
    pub fn gzip(&self, format: Format) -> &Prefix {
        let cell = match format {
            Format::OpenMetrics => &self.openmetrics_gzip,
            Format::Text => &self.text_gzip,
        };
        cell.get_or_init(|| Prefix::from_parts(self.parts(format)))
    }

    /// The store's generation this body was assembled from.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn size(&self) -> usize {
        self.families.iter().map(|(_, chunks)| 256 + chunks.iter().map(Bytes::len).sum::<usize>()).sum()
    }

    /// The body's pieces in order: each family's header, then its targets' lines.
    fn parts(&self, format: Format) -> impl Iterator<Item = Bytes> + '_ {
        self.families.iter().flat_map(move |(family, chunks)| {
            let mut header = Vec::with_capacity(256);
            family.write_header(&mut header, format);
            std::iter::once(Bytes::from(header)).chain(chunks.iter().cloned())
        })
    }
}

/// The stored lines of one family, a buffer per target.
type Chunks = Vec<Bytes>;

struct Slot {
    family: &'static Family,
    targets: BTreeMap<TargetKey, Bytes>,
    /// The store's generation when this family last changed: its deflated form is reused until then.
    changed_at: u64,
}

/// The stored lines, and a generation that grows with every change to them.
#[derive(Default)]
struct Slots {
    families: BTreeMap<&'static str, Slot>,
    generation: u64,
}

#[derive(Default)]
pub struct Store {
    slots: Mutex<Slots>,
    /// The deflated form of each family as last assembled, and the generation it was made at.
    segments: Mutex<HashMap<&'static str, (u64, Arc<Segment>)>>,
    published: RwLock<Arc<Exposition>>,
    changed: Notify,
}

impl Store {
    pub fn new() -> Arc<Store> {
        Arc::new(Store::default())
    }

    /// Replaces everything stored for `key` with `rendered`. Families the target no longer has
    /// lose its series. Returns whether anything changed, and wakes the assembler if so.
    pub fn update(&self, key: &TargetKey, rendered: Rendered) -> bool {
        self.update_if(key, rendered, &AtomicBool::new(true))
    }

    /// [`Store::update`], unless `live` is off. `live` is read under the store's lock, so an owner
    /// that turns it off and then removes the target's series cannot see them come back.
    pub fn update_if(&self, key: &TargetKey, rendered: Rendered, live: &AtomicBool) -> bool {
        let mut guard = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if !live.load(Ordering::Acquire) {
            return false;
        }
        let slots = &mut *guard;
        let next = slots.generation + 1;
        let mut changed = false;
        for (name, slot) in slots.families.iter_mut() {
            if !rendered.families.iter().any(|(f, _)| f.name == *name) && slot.targets.remove(key).is_some() {
                slot.changed_at = next;
                changed = true;
            }
        }
        for (family, lines) in rendered.families {
            let slot =
                slots.families.entry(family.name).or_insert_with(|| Slot { family, targets: BTreeMap::new(), changed_at: next });
            if slot.targets.get(key).map(|old| old[..] != lines[..]).unwrap_or(true) {
                slot.targets.insert(key.clone(), Bytes::from(lines));
                slot.changed_at = next;
                changed = true;
            }
        }
        slots.families.retain(|_, slot| !slot.targets.is_empty());
        if changed {
            slots.generation += 1;
        }
        drop(guard);
        if changed {
            self.changed.notify_one();
        }
        changed
    }

    /// Removes every series of `key`.
    pub fn remove(&self, key: &TargetKey) {
        self.update(key, Rendered::default());
    }

    /// Removes every series of the targets `keep` rejects.
    pub fn retain(&self, keep: impl Fn(&TargetKey) -> bool) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let next = slots.generation + 1;
        let mut changed = false;
        for slot in slots.families.values_mut() {
            let before = slot.targets.len();
            slot.targets.retain(|key, _| keep(key));
            if slot.targets.len() != before {
                slot.changed_at = next;
                changed = true;
            }
        }
        slots.families.retain(|_, slot| !slot.targets.is_empty());
        if changed {
            slots.generation += 1;
        }
        drop(slots);
        if changed {
            self.changed.notify_one();
        }
    }

    /// The generation of the stored lines: it grows with every change.
    pub fn generation(&self) -> u64 {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).generation
    }

    /// Asks the assembler for a new body even if nothing changed since the last one.
    pub fn wake(&self) {
        self.changed.notify_one();
    }

    /// The newest assembled bodies.
    pub fn exposition(&self) -> Arc<Exposition> {
        self.published.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Collects the stored lines into a new scrape body, deflates it for Prometheus, and publishes
    /// it, unless a newer one was published meanwhile (two assemblies may race). The lock on the
    /// lines is held only while their reference-counted buffers are collected, never while bytes
    /// are copied or compressed.
    pub fn assemble(&self) {
        let (generation, families): (u64, Vec<(&'static Family, u64, Chunks)>) = {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let families = slots
                .families
                .values()
                .map(|slot| (slot.family, slot.changed_at, slot.targets.values().cloned().collect()))
                .collect();
            (slots.generation, families)
        };
        // Only the families that changed since the last assembly are deflated again.
        let segments: Vec<Arc<Segment>> = {
            let mut cache = self.segments.lock().unwrap_or_else(|e| e.into_inner());
            let segments = families
                .iter()
                .map(|(family, changed_at, chunks)| match cache.get(family.name) {
                    Some((at, segment)) if at == changed_at => segment.clone(),
                    _ => {
                        let mut header = Vec::with_capacity(256);
                        family.write_header(&mut header, Format::OpenMetrics);
                        let segment = Arc::new(Segment::new(std::iter::once(Bytes::from(header)).chain(chunks.iter().cloned())));
                        cache.insert(family.name, (*changed_at, segment.clone()));
                        segment
                    }
                })
                .collect();
            cache.retain(|name, _| families.iter().any(|(family, _, _)| family.name == *name));
            segments
        };
        let exposition = Exposition {
            families: families.into_iter().map(|(family, _, chunks)| (family, chunks)).collect(),
            openmetrics_gzip: OnceLock::from(Prefix::from_segments(segments.iter().map(|s| &**s))),
            generation,
            ..Exposition::default()
        };
        self.publish(exposition);
    }

    fn publish(&self, exposition: Exposition) {
        let mut published = self.published.write().unwrap_or_else(|e| e.into_inner());
        if published.generation <= exposition.generation {
            *published = Arc::new(exposition);
        }
    }

    /// Re-assembles after every change, at most once per `pause`, for the life of the process: a
    /// burst of poll results costs one assembly, not one per target.
    ///
    /// Assembling costs time in proportion to the exposition's size, so the pause grows with it:
    /// at least ten times the last assembly, which keeps assembling under a tenth of a core however
    /// many targets change.
    pub async fn run_assembler(self: Arc<Self>, pause: Duration) {
        loop {
            self.changed.notified().await;
            let started = std::time::Instant::now();
            let store = self.clone();
            // Copying and deflating megabytes would stall the runtime's worker: do it aside.
            if tokio::task::spawn_blocking(move || store.assemble()).await.is_err() {
                return;
            }
            tokio::time::sleep(pause.max(started.elapsed() * 10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::Kind;

    static UP: Family = Family { name: "t_up", help: "Up.", kind: Kind::Gauge };
    static RUNS: Family = Family { name: "t_runs_total", help: "Runs.", kind: Kind::Counter };

    fn key(name: &str) -> TargetKey {
        TargetKey { account: "a".into(), region: "r".into(), kind: TargetKind::Pipeline, name: name.into() }
    }

    #[test]
    fn groups_by_family_and_drops_removed_targets() {
        let store = Store::default();
        for name in ["p1", "p2"] {
            let mut rendered = Rendered::default();
            rendered.sample(&UP, &[("pipeline", name)], 1.0);
            rendered.sample(&RUNS, &[("pipeline", name)], 2.0);
            assert!(store.update(&key(name), rendered));
        }
        store.assemble();
        assert_eq!(
            String::from_utf8(store.exposition().body(Format::Text).to_vec()).unwrap(),
            "# HELP t_runs_total Runs.\n# TYPE t_runs_total counter\nt_runs_total{pipeline=\"p1\"} 2\nt_runs_total{pipeline=\"p2\"} 2\n\
             # HELP t_up Up.\n# TYPE t_up gauge\nt_up{pipeline=\"p1\"} 1\nt_up{pipeline=\"p2\"} 1\n"
        );
        let mut rendered = Rendered::default();
        rendered.sample(&UP, &[("pipeline", "p1")], 0.0);
        assert!(store.update(&key("p1"), rendered));
        store.remove(&key("p2"));
        store.assemble();
        assert_eq!(
            String::from_utf8(store.exposition().body(Format::OpenMetrics).to_vec()).unwrap(),
            "# HELP t_up Up.\n# TYPE t_up gauge\nt_up{pipeline=\"p1\"} 0\n"
        );
    }

    #[test]
    fn an_older_assembly_never_replaces_a_newer_one() {
        let store = Store::default();
        let mut rendered = Rendered::default();
        rendered.sample(&UP, &[], 1.0);
        store.update(&key("p"), rendered);
        store.assemble();
        let newer = store.exposition();
        assert_eq!(newer.generation, 1);
        store.publish(Exposition::default());
        assert_eq!(store.exposition().body(Format::Text), newer.body(Format::Text));
        assert_eq!(&store.exposition().body(Format::Text)[..], b"# HELP t_up Up.\n# TYPE t_up gauge\nt_up 1\n");
    }

    #[test]
    fn only_changed_families_are_deflated_again() {
        let store = Store::default();
        let render = |up: f64| {
            let mut rendered = Rendered::default();
            rendered.sample(&UP, &[], up);
            rendered.sample(&RUNS, &[], 3.0);
            rendered
        };
        store.update(&key("p"), render(1.0));
        store.assemble();
        let segment = |name: &str| store.segments.lock().unwrap().get(name).unwrap().1.clone();
        let (runs, up) = (segment("t_runs_total"), segment("t_up"));
        store.update(&key("p"), render(0.0));
        store.assemble();
        assert!(Arc::ptr_eq(&runs, &segment("t_runs_total")), "the unchanged family is reused");
        assert!(!Arc::ptr_eq(&up, &segment("t_up")), "the changed one is deflated again");
        let exposition = store.exposition();
        let mut unzipped = Vec::new();
        let joined: Vec<u8> = exposition.gzip(Format::OpenMetrics).gzip(b"# EOF\n").iter().flat_map(|b| b.to_vec()).collect();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&joined[..]), &mut unzipped).unwrap();
        let mut expected = exposition.body(Format::OpenMetrics).to_vec();
        expected.extend_from_slice(b"# EOF\n");
        assert_eq!(unzipped, expected);
    }

    #[test]
    fn unchanged_updates_do_not_wake_the_assembler() {
        let store = Store::default();
        let render = || {
            let mut rendered = Rendered::default();
            rendered.sample(&UP, &[], 1.0);
            rendered
        };
        assert!(store.update(&key("p"), render()));
        assert!(!store.update(&key("p"), render()));
    }
}
