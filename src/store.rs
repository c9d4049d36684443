//! The store of rendered series, in the manner of kube-state-metrics' metrics store.
//!
//! Pollers hand the store the already-rendered sample lines of one target; the store keeps them
//! deflated, per metric family and per target, and a background assembler turns them into
//! complete scrape bodies, deflated too, whenever something changed. A scrape therefore clones a
//! few reference-counted buffers: its cost does not depend on how many series there are, and it
//! never waits on AWS or on a poll. Keeping only the deflated form holds the exporter's memory to
//! a few bytes per series (see [`crate::compression`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash as _, Hasher as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::compression::{Chunk, Deflater, Dictionary, Prefix, Segment, WINDOW};
use crate::exposition::{Family, FamilyLines, Format, Rendered};
use crate::target::TargetKey;

/// One complete scrape body in both formats, without the trailer that the HTTP layer adds after
/// the exporter's own metrics.
///
/// It is kept deflated only: the gzip form Prometheus asks for is sent as it is, and the rare
/// client that does not take gzip gets it inflated a segment at a time as it is sent (see
/// [`Prefix::inflate`]). The two formats differ only in their family headers, so they share the
/// segments of sample lines.
#[derive(Debug, Default)]
pub struct Exposition {
    openmetrics: Prefix,
    text: Prefix,
    /// The store's generation the body was assembled from.
    generation: u64,
}

impl Exposition {
    /// The body in `format`, deflated, to be followed by the scrape's own part.
    pub fn deflated(&self, format: Format) -> &Prefix {
        match format {
            Format::OpenMetrics => &self.openmetrics,
            Format::Text => &self.text,
        }
    }

    /// The store's generation this body was assembled from.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// Where a target's lines are kept in a family.
#[derive(Clone)]
struct Entry {
    chunk: Chunk,
    /// The lines as OpenMetrics writes them, when they carry exemplars.
    openmetrics: Option<Chunk>,
    /// Unique to this version of these lines, so that a segment can be known unchanged by the
    /// identities of its entries.
    id: u64,
    /// Whether a segment may end after this entry: decided by the target's key, not by position,
    /// so that a target coming or going moves only the boundaries next to it.
    boundary: bool,
}

struct Slot {
    family: &'static Family,
    /// What the family's chunks are deflated against: the first lines stored in it.
    dictionary: Dictionary,
    /// Each target's key is kept once, shared by its entries in every family.
    targets: BTreeMap<Arc<TargetKey>, Entry>,
}

/// The stored lines, and a generation that grows with every change to them.
#[derive(Default)]
struct Slots {
    families: BTreeMap<&'static str, Slot>,
    /// The key of every target with stored lines, shared by the slots.
    keys: HashSet<Arc<TargetKey>>,
    generation: u64,
    next_id: u64,
}

/// A segment holds at least this many bytes of lines before it may end, so that it deflates
/// nearly as well as its whole family would.
const SEGMENT_MIN: usize = 64 * 1024;
/// A segment ends at this many bytes however its targets' keys fall: this bounds both the work
/// of deflating it again after one target changed and the buffer of an uncompressed scrape.
const SEGMENT_MAX: usize = 1024 * 1024;

/// One target in eight allows a segment to end after it.
fn boundary(key: &TargetKey) -> bool {
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish().is_multiple_of(8)
}

/// Splits a family's entries into segments of at least [`SEGMENT_MIN`] bytes that end at an
/// entry allowing it, or at [`SEGMENT_MAX`] bytes.
fn segments(entries: &[Entry]) -> impl Iterator<Item = &[Entry]> {
    let mut rest = entries;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut len = 0;
        let end = rest
            .iter()
            .position(|entry| {
                len += entry.chunk.text_len();
                (len >= SEGMENT_MIN && entry.boundary) || len >= SEGMENT_MAX
            })
            .map_or(rest.len(), |i| i + 1);
        let (segment, tail) = rest.split_at(end);
        rest = tail;
        Some(segment)
    })
}

/// What a kept segment was deflated from: its entries, and those of the segment before it, whose
/// text it may refer to, each list as a 128-bit fingerprint of its entries' ids. The lists
/// themselves took 16 bytes per stored entry (10 MB at 10,000 pipelines); two lists of unique ids
/// with the same fingerprint are as unlikely as a hash collision of 128 bits.
#[derive(PartialEq, Eq, Hash)]
struct SegmentIds {
    previous: u128,
    own: u128,
}

/// The fingerprint of a list of entries, by their ids: two SipHash digests, told apart by a seed.
fn fingerprint(entries: &[Entry]) -> u128 {
    let digest = |seed: u8| {
        let mut hasher = std::hash::DefaultHasher::new();
        seed.hash(&mut hasher);
        for entry in entries {
            entry.id.hash(&mut hasher);
        }
        hasher.finish()
    };
    (u128::from(digest(0)) << 64) | u128::from(digest(1))
}

/// The last [`WINDOW`] bytes of the entries' text: all a following segment can refer to.
fn text_end(entries: &[Entry], dictionary: &Dictionary) -> Vec<u8> {
    let mut parts = Vec::new();
    let mut len = 0;
    for entry in entries.iter().rev() {
        if len >= WINDOW {
            break;
        }
        len += entry.chunk.text_len();
        parts.push(entry.chunk.inflate(dictionary));
    }
    let text: Vec<u8> = parts.into_iter().rev().flatten().collect();
    text[text.len().saturating_sub(WINDOW)..].to_vec()
}

/// A family, its dictionary and its entries, as an assembly copies them out of the lock.
type FamilyEntries = (&'static Family, Dictionary, Vec<Entry>);

/// A target's new lines of a family, deflated against the family's dictionary as it was read:
/// the text lines and, when they differ, the OpenMetrics ones; and the lines themselves, should
/// the dictionary have changed meanwhile.
type NewChunks = (Chunk, Option<Chunk>, Vec<u8>, Option<Vec<u8>>);

/// Marks the id of an entry's OpenMetrics lines, apart from its text lines' id.
const OPENMETRICS_ID: u64 = 1 << 63;

/// Deflates a family's entries into segments, reusing those of the last assembly whose entries,
/// and those of the segment before, are the same. A family's first segment follows a header that
/// differs by format, so only the segments after it take the one before as their dictionary.
fn family_segments(
    entries: &[Entry],
    dictionary: &Dictionary,
    cache: &mut HashMap<SegmentIds, Arc<Segment>>,
    kept: &mut HashMap<SegmentIds, Arc<Segment>>,
    deflater: &mut Deflater,
    deflated: &mut usize,
) -> Vec<Arc<Segment>> {
    let mut out = Vec::new();
    let mut previous: &[Entry] = &[];
    let mut previous_ids = fingerprint(previous);
    for entries in segments(entries) {
        let ids = SegmentIds { previous: previous_ids, own: fingerprint(entries) };
        previous_ids = ids.own;
        let segment = match cache.remove(&ids).or_else(|| kept.get(&ids).cloned()) {
            Some(segment) => segment,
            None => {
                *deflated += 1;
                Arc::new(
                    deflater
                        .segment(&text_end(previous, dictionary), entries.iter().map(|entry| entry.chunk.inflate(dictionary))),
                )
            }
        };
        kept.insert(ids, segment.clone());
        out.push(segment);
        previous = entries;
    }
    out
}

#[derive(Default)]
pub struct Store {
    slots: Mutex<Slots>,
    /// The segments of the last assembly, by the fingerprints of their entries and of the entries
    /// before them: a segment is deflated again only when either changed.
    segments: Mutex<HashMap<SegmentIds, Arc<Segment>>>,
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
    ///
    /// The new lines are compared with the stored ones, and deflated if they differ, outside the
    /// lock: other targets' updates and the assembler do not wait for that.
    pub fn update_if(&self, key: &TargetKey, rendered: Rendered, live: &AtomicBool) -> bool {
        let families = rendered.into_families();
        let stored: Vec<(Option<Entry>, Option<Dictionary>)> = {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            families
                .iter()
                .map(|lines| match slots.families.get(lines.family.name) {
                    Some(slot) => (slot.targets.get(key).cloned(), Some(slot.dictionary.clone())),
                    None => (None, None),
                })
                .collect()
        };
        let fresh: Vec<(&'static Family, Dictionary, Result<Entry, NewChunks>)> = families
            .into_iter()
            .zip(stored)
            .map(|(FamilyLines { family, lines, openmetrics }, (stored, dictionary))| {
                // The first lines of a family are its dictionary.
                let dictionary = dictionary.unwrap_or_else(|| Dictionary::of(&lines));
                match stored {
                    Some(entry)
                        if entry.chunk.holds(&lines, &dictionary)
                            && match (&entry.openmetrics, &openmetrics) {
                                (None, None) => true,
                                (Some(chunk), Some(lines)) => chunk.holds(lines, &dictionary),
                                _ => false,
                            } =>
                    {
                        (family, dictionary, Ok(entry))
                    }
                    _ => {
                        let chunks = (
                            Chunk::new(&lines, &dictionary),
                            openmetrics.as_deref().map(|lines| Chunk::new(lines, &dictionary)),
                            lines,
                            openmetrics,
                        );
                        (family, dictionary, Err(chunks))
                    }
                }
            })
            .collect();

        let mut guard = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if !live.load(Ordering::Acquire) {
            return false;
        }
        let slots = &mut *guard;
        let mut changed = false;
        for (name, slot) in slots.families.iter_mut() {
            if !fresh.iter().any(|(f, _, _)| f.name == *name) && slot.targets.remove(key).is_some() {
                changed = true;
            }
        }
        let shared = match slots.keys.get(key) {
            Some(shared) => shared.clone(),
            None => Arc::new(key.clone()),
        };
        let empty = fresh.is_empty();
        for (family, dictionary, entry) in fresh {
            let slot = slots.families.entry(family.name).or_insert_with(|| Slot {
                family,
                dictionary: dictionary.clone(),
                targets: BTreeMap::new(),
            });
            let (chunk, openmetrics) = match entry {
                // Unchanged, and still stored: nothing to do.
                Ok(entry) if slot.targets.get(key).is_some_and(|stored| stored.id == entry.id) => continue,
                Ok(entry) if slot.dictionary.same(&dictionary) => (entry.chunk, entry.openmetrics),
                Err((chunk, openmetrics, _, _)) if slot.dictionary.same(&dictionary) => (chunk, openmetrics),
                // Another target created the family, with its own lines as the dictionary, since
                // these were deflated: deflate them again against that one. This happens only
                // while a family is new.
                Ok(entry) => (
                    Chunk::new(&entry.chunk.inflate(&dictionary), &slot.dictionary),
                    entry.openmetrics.map(|chunk| Chunk::new(&chunk.inflate(&dictionary), &slot.dictionary)),
                ),
                Err((_, _, lines, openmetrics)) => (
                    Chunk::new(&lines, &slot.dictionary),
                    openmetrics.as_deref().map(|lines| Chunk::new(lines, &slot.dictionary)),
                ),
            };
            slots.next_id += 1;
            slot.targets.insert(shared.clone(), Entry { chunk, openmetrics, id: slots.next_id, boundary: boundary(key) });
            changed = true;
        }
        if empty {
            slots.keys.remove(key);
        } else if !slots.keys.contains(key) {
            slots.keys.insert(shared);
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
        let mut changed = false;
        for slot in slots.families.values_mut() {
            let before = slot.targets.len();
            slot.targets.retain(|key, _| keep(key));
            changed |= slot.targets.len() != before;
        }
        slots.keys.retain(|key| keep(key));
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

    /// How many series each family has, by name. It inflates every stored line, so it is for the
    /// status page, when someone opens it, never for a scrape.
    pub fn series_per_family(&self) -> Vec<(&'static str, usize)> {
        let families: Vec<(&'static str, Dictionary, Vec<Chunk>)> = {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots
                .families
                .iter()
                .map(|(name, slot)| (*name, slot.dictionary.clone(), slot.targets.values().map(|e| e.chunk.clone()).collect()))
                .collect()
        };
        families
            .into_iter()
            .map(|(name, dictionary, chunks)| {
                let lines = chunks.iter().map(|chunk| chunk.inflate(&dictionary).iter().filter(|b| **b == b'\n').count()).sum();
                (name, lines)
            })
            .collect()
    }

    /// The newest assembled bodies.
    pub fn exposition(&self) -> Arc<Exposition> {
        self.published.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Collects the stored chunks into a new scrape body and publishes it, unless a newer one was
    /// published meanwhile (two assemblies may race). Only segments with a changed entry, and
    /// the segment after each, which refers to its text, are deflated again. The lock on the
    /// lines is held only while their reference-counted chunks are collected, never while
    /// anything is compressed. Returns how many segments of sample lines it deflated again.
    pub fn assemble(&self) -> usize {
        let (generation, families): (u64, Vec<FamilyEntries>) = {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let families = slots
                .families
                .values()
                .map(|slot| (slot.family, slot.dictionary.clone(), slot.targets.values().cloned().collect()))
                .collect();
            (slots.generation, families)
        };
        let mut deflater = Deflater::default();
        let mut deflated = 0;
        let mut cache = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept = HashMap::with_capacity(cache.len());
        let (mut openmetrics, mut text) = (Vec::new(), Vec::new());
        for (family, dictionary, entries) in &families {
            for (format, parts) in [(Format::OpenMetrics, &mut openmetrics), (Format::Text, &mut text)] {
                let mut header = Vec::with_capacity(256);
                family.write_header(&mut header, format);
                parts.push(Arc::new(deflater.segment(b"", [header])));
            }
            if entries.iter().all(|entry| entry.openmetrics.is_none()) {
                for segment in family_segments(entries, dictionary, &mut cache, &mut kept, &mut deflater, &mut deflated) {
                    openmetrics.push(segment.clone());
                    text.push(segment);
                }
            } else {
                // Exemplars: OpenMetrics has lines of its own where they are, the same elsewhere,
                // which keep their ids and so share their segments with the text format.
                let with_exemplars: Vec<Entry> = entries
                    .iter()
                    .map(|entry| match &entry.openmetrics {
                        Some(chunk) => Entry { chunk: chunk.clone(), openmetrics: None, id: entry.id | OPENMETRICS_ID, ..*entry },
                        None => entry.clone(),
                    })
                    .collect();
                text.extend(family_segments(entries, dictionary, &mut cache, &mut kept, &mut deflater, &mut deflated));
                openmetrics.extend(family_segments(
                    &with_exemplars,
                    dictionary,
                    &mut cache,
                    &mut kept,
                    &mut deflater,
                    &mut deflated,
                ));
            }
        }
        let exposition = Exposition {
            openmetrics: Prefix::from_segments(openmetrics.iter().map(|s| &**s)),
            text: Prefix::from_segments(text.iter().map(|s| &**s)),
            generation,
        };
        // The kept segments are pointed into the bodies just joined, so that their own buffers
        // are freed: the deflated lines are then held once per format, not once more (12 MB at
        // 10,000 pipelines). OpenMetrics goes last, so that a segment both formats share points
        // into its body.
        let mut shared: HashMap<*const Segment, Segment> = HashMap::with_capacity(openmetrics.len());
        for (prefix, parts) in [(&exposition.text, &text), (&exposition.openmetrics, &openmetrics)] {
            for (index, segment) in parts.iter().enumerate() {
                shared.insert(Arc::as_ptr(segment), prefix.shared_segment(index, segment));
            }
        }
        // The lists keep every segment alive until all are replaced, so that no address is
        // reused by a new segment while the map is read.
        for segment in kept.values_mut() {
            if let Some(joined) = shared.get(&Arc::as_ptr(segment)) {
                *segment = Arc::new(joined.clone());
            }
        }
        drop((openmetrics, text));
        *cache = kept;
        drop(cache);
        self.publish(exposition);
        deflated
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
    /// Assembling costs time in proportion to what changed, so the pause grows with it: at least
    /// ten times the last assembly, which keeps assembling under a tenth of a core however many
    /// targets change.
    pub async fn run_assembler(self: Arc<Self>, pause: Duration) {
        loop {
            self.changed.notified().await;
            let started = std::time::Instant::now();
            let store = self.clone();
            // Deflating megabytes would stall the runtime's worker: do it aside.
            match tokio::task::spawn_blocking(move || store.assemble()).await {
                Ok(deflated) => tracing::debug!(deflated, elapsed = ?started.elapsed(), "assembled the exposition"),
                Err(_) => return,
            }
            tokio::time::sleep(pause.max(started.elapsed() * 10)).await;
        }
    }
}

#[cfg(test)]
impl Store {
    /// The body of the newest assembly, uncompressed.
    pub(crate) fn body(&self, format: Format) -> String {
        let exposition = self.exposition();
        let prefix = exposition.deflated(format);
        let mut decompress = flate2::Decompress::new(false);
        let mut body = Vec::new();
        for index in 0..prefix.segments() {
            prefix.inflate_pieces(index, &mut decompress, usize::MAX, |text| {
                body.extend_from_slice(&text);
                true
            });
        }
        String::from_utf8(body).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::Kind;

    static UP: Family = Family { name: "t_up", help: "Up.", kind: Kind::Gauge };
    static RUNS: Family = Family { name: "t_runs_total", help: "Runs.", kind: Kind::Counter };

    fn key(name: &str) -> TargetKey {
        TargetKey { account: "a".into(), region: "r".into(), kind: "pipeline", service: "s", name: name.into() }
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
            store.body(Format::Text),
            "# HELP t_runs_total Runs.\n# TYPE t_runs_total counter\nt_runs_total{pipeline=\"p1\"} 2\nt_runs_total{pipeline=\"p2\"} 2\n\
             # HELP t_up Up.\n# TYPE t_up gauge\nt_up{pipeline=\"p1\"} 1\nt_up{pipeline=\"p2\"} 1\n"
        );
        let mut rendered = Rendered::default();
        rendered.sample(&UP, &[("pipeline", "p1")], 0.0);
        assert!(store.update(&key("p1"), rendered));
        store.remove(&key("p2"));
        store.assemble();
        assert_eq!(store.body(Format::OpenMetrics), "# HELP t_up Up.\n# TYPE t_up gauge\nt_up{pipeline=\"p1\"} 0\n");
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
        assert!(Arc::ptr_eq(&store.exposition(), &newer));
        assert_eq!(store.body(Format::Text), "# HELP t_up Up.\n# TYPE t_up gauge\nt_up 1\n");
    }

    #[test]
    fn only_segments_with_a_changed_target_are_deflated_again() {
        let store = Store::default();
        // Enough targets with enough lines for the family to span several segments.
        let render = |name: &str, value: f64| {
            let mut rendered = Rendered::default();
            for series in 0..100 {
                rendered.sample(&UP, &[("pipeline", name), ("series", &series.to_string())], value);
            }
            rendered.sample(&RUNS, &[("pipeline", name)], 3.0);
            rendered
        };
        let names: Vec<String> = (0..400).map(|i| format!("p{i:03}")).collect();
        for name in &names {
            store.update(&key(name), render(name, 1.0));
        }
        let segments_at_first = store.assemble();
        assert!(segments_at_first > 10, "{segments_at_first} segments");
        // The last target of the first segment of t_up: the next segment's dictionary is its text.
        let changed = {
            let slots = store.slots.lock().unwrap();
            let slot = &slots.families["t_up"];
            let entries: Vec<Entry> = slot.targets.values().cloned().collect();
            let first = segments(&entries).next().unwrap().len();
            slot.targets.keys().nth(first - 1).unwrap().name.clone()
        };
        store.update(&key(&changed), render(&changed, 0.0));
        assert_eq!(store.assemble(), 2, "only the segment holding {changed} and the one after it, which refers to it");
        assert_eq!(store.segments.lock().unwrap().len(), segments_at_first);

        let mut runs = String::new();
        let mut ups = String::new();
        for name in &names {
            runs += &format!("t_runs_total{{pipeline=\"{name}\"}} 3\n");
            for series in 0..100 {
                ups += &format!("t_up{{pipeline=\"{name}\",series=\"{series}\"}} {}\n", if *name == changed { 0 } else { 1 });
            }
        }
        assert_eq!(
            store.body(Format::OpenMetrics),
            format!("# HELP t_runs Runs.\n# TYPE t_runs counter\n{runs}# HELP t_up Up.\n# TYPE t_up gauge\n{ups}")
        );
        assert_eq!(
            store.body(Format::Text),
            format!("# HELP t_runs_total Runs.\n# TYPE t_runs_total counter\n{runs}# HELP t_up Up.\n# TYPE t_up gauge\n{ups}")
        );

        // The gzip form is one member that reads back as the same body followed by the tail.
        let exposition = store.exposition();
        let prefix = exposition.deflated(Format::OpenMetrics);
        let joined: Vec<u8> = prefix.gzip(prefix.gzip_end(b"# EOF\n")).iter().flat_map(|b| b.to_vec()).collect();
        let mut unzipped = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&joined[..]), &mut unzipped).unwrap();
        assert_eq!(unzipped, store.body(Format::OpenMetrics) + "# EOF\n");
    }

    #[test]
    fn segments_end_at_a_boundary_past_the_minimum_or_at_the_maximum() {
        let none = Dictionary::of(b"");
        let entry =
            |len: usize, boundary: bool| Entry { chunk: Chunk::new(&vec![b'x'; len], &none), openmetrics: None, id: 0, boundary };
        let entries = vec![
            entry(40_000, true),
            entry(40_000, false),
            entry(1_000, true),
            entry(900_000, false),
            entry(200_000, false),
            entry(5, true),
        ];
        let lens: Vec<usize> = segments(&entries).map(<[Entry]>::len).collect();
        assert_eq!(lens, [3, 2, 1]);
        assert_eq!(segments(&[]).count(), 0);
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
