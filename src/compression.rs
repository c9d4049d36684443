//! Deflate, so that the exposition is kept compressed and a scrape never compresses it.
//!
//! Sample text is repetitive (every line repeats its family's name and most of its labels), so it
//! deflates thirty to fifty times. The store therefore keeps each target's lines only as a
//! [`Chunk`], deflated on its own, and the body Prometheus fetches as [`Segment`]s: runs of
//! targets of one family deflated together, each ending with a full flush. A full flush leaves the
//! deflate stream at a byte boundary, so segments deflated at different times can follow one
//! another; a segment refers to no earlier data but the end of the text just before it, given as
//! its dictionary, and is deflated again only when that text or one of its own targets changed.
//! A scrape joins the kept segments with its own small part into one ordinary gzip member, its
//! CRC-32 combined from the parts' CRCs.

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The gzip header: deflate, no name or comment, no modification time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

thread_local! {
    /// A compressor's state is a few hundred kilobytes: each thread keeps one for chunks rather
    /// than allocating it for every target on every poll. Chunks are deflated at the best level:
    /// one is kept as long as its lines do not change, and only the best level finds most of
    /// their text in the family's dictionary.
    static CHUNK_DEFLATER: RefCell<(Compress, Vec<u8>)> =
        RefCell::new((Compress::new(Compression::best(), false), Vec::new()));
    static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(false));
    /// For the scrape's own part, so that a scrape does not allocate a compressor.
    static TAIL_DEFLATER: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), false));
}

/// What a family's chunks are deflated against: the text of the first lines the store kept in
/// that family, at most [`WINDOW`] bytes. Every target's lines of a family repeat the same family
/// name and label names, so a chunk deflated against another target's lines is a fraction of one
/// deflated alone: in the benchmark, a pipeline's chunks take a fifth of the memory they took
/// without it (docs/sizing.md).
#[derive(Debug, Clone)]
pub struct Dictionary(Arc<[u8]>);

impl Dictionary {
    /// The end of `lines`, as much of it as deflate can refer to.
    pub fn of(lines: &[u8]) -> Dictionary {
        Dictionary(lines[lines.len().saturating_sub(WINDOW)..].into())
    }

    /// Whether both are the same dictionary, not merely equal text.
    pub fn same(&self, other: &Dictionary) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The lines of one target in one family, as the store keeps them: deflated against their
/// family's [`Dictionary`], which every call on the chunk must be given.
///
/// The lines' length and CRC-32 lead the shared buffer, ahead of the deflated bytes, rather than
/// sitting beside its pointer: the store holds an entry per target and family (600,000 at 10,000
/// pipelines), each with a chunk and an optional OpenMetrics one, and each entry is 16 bytes
/// smaller for it, for 8 bytes more in each buffer.
#[derive(Debug, Clone)]
pub struct Chunk(Arc<[u8]>);

/// The bytes before a chunk's deflated lines: their length and CRC-32, little-endian.
const CHUNK_HEADER: usize = 8;

impl Chunk {
    pub fn new(lines: &[u8], dictionary: &Dictionary) -> Chunk {
        let deflated = CHUNK_DEFLATER.with_borrow_mut(|(compress, scratch)| {
            compress.reset();
            scratch.clear();
            // A target's lines of one family are far below 4 GiB: a family's segment ends at 1 MiB.
            scratch.extend_from_slice(&u32::try_from(lines.len()).unwrap_or(u32::MAX).to_le_bytes());
            scratch.extend_from_slice(&crc32fast::hash(lines).to_le_bytes());
            if !dictionary.0.is_empty() {
                compress.set_dictionary(&dictionary.0).expect("a raw deflate stream at its start takes a dictionary");
            }
            deflate(compress, lines, scratch, FlushCompress::Finish);
            // Copied out at its exact size: there are hundreds of thousands of these, each far
            // smaller than the room the compressor asks for.
            Arc::from(&scratch[..])
        });
        Chunk(deflated)
    }

    fn header(&self, at: usize) -> u32 {
        u32::from_le_bytes([self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]])
    }

    /// Whether this chunk holds exactly `lines`. The length and CRC-32 settle most answers; when
    /// both match, the chunk is inflated and compared, so a collision cannot hide a change.
    pub fn holds(&self, lines: &[u8], dictionary: &Dictionary) -> bool {
        self.text_len() == lines.len() && self.header(4) == crc32fast::hash(lines) && self.inflate(dictionary)[..] == *lines
    }

    #[cfg(test)]
    fn deflated_len(&self) -> usize {
        self.0.len() - CHUNK_HEADER
    }

    /// The length of the lines.
    pub fn text_len(&self) -> usize {
        self.header(0) as usize
    }

    /// The lines.
    pub fn inflate(&self, dictionary: &Dictionary) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text_len());
        INFLATER.with_borrow_mut(|decompress| {
            decompress.reset(false);
            if !dictionary.0.is_empty() {
                decompress.set_dictionary(&dictionary.0).expect("a raw inflate stream takes a dictionary");
            }
            inflate(decompress, &self.0[CHUNK_HEADER..], &mut out);
        });
        out
    }
}

/// A piece of a body, deflated on its own and ended with a full flush so that pieces deflated at
/// different times can be joined.
#[derive(Debug, Clone)]
pub struct Segment {
    deflated: Bytes,
    crc: crc32fast::Hasher,
    len: u64,
}

/// How far back deflate refers: a segment's dictionary is at most this much of the text before it.
pub const WINDOW: usize = 32 * 1024;

/// Makes segments, at the best level: a segment is deflated once and sent on every scrape, so the
/// smaller output (8 % smaller than the default level's in the benchmark, and less CPU
/// per scrape) is worth the slower compression.
///
/// A segment may be deflated with the text just before it as a preset dictionary, as pigz does
/// with its blocks: the decoder has just produced that text, so references into it are valid, and
/// the segment then deflates about as well as if it had been deflated with what precedes it (in
/// the benchmark the body is 8 % smaller than with segments deflated alone).
pub struct Deflater {
    compress: Compress,
}

impl Default for Deflater {
    fn default() -> Deflater {
        Deflater { compress: Compress::new(Compression::best(), false) }
    }
}

impl Deflater {
    /// Deflates the concatenation of `parts` into one segment, without concatenating them. The
    /// segment may refer to the end of `preceding`, so it must follow exactly that text in the
    /// body; with nothing preceding, it may follow anything.
    pub fn segment<P: AsRef<[u8]>>(&mut self, preceding: &[u8], parts: impl IntoIterator<Item = P>) -> Segment {
        // The full flush that ended the last segment left the compressor with no history and
        // at a block boundary, where raw deflate takes a dictionary.
        if !preceding.is_empty() {
            self.compress
                .set_dictionary(&preceding[preceding.len().saturating_sub(WINDOW)..])
                .expect("a raw deflate stream at a block boundary takes a dictionary");
        }
        let mut crc = crc32fast::Hasher::new();
        let mut len = 0u64;
        let mut out = Vec::new();
        for part in parts {
            let part = part.as_ref();
            crc.update(part);
            len += part.len() as u64;
            deflate(&mut self.compress, part, &mut out, FlushCompress::None);
        }
        deflate(&mut self.compress, &[], &mut out, FlushCompress::Full);
        out.shrink_to_fit();
        Segment { deflated: Bytes::from(out), crc, len }
    }
}

/// Deflated segments joined in order, ready to be followed by a small uncompressed part.
///
/// The segments are copied into one buffer, once per assembly, so that a scrape sends it with a
/// few large writes rather than hundreds of small ones.
#[derive(Debug, Clone)]
pub struct Prefix {
    deflated: Bytes,
    /// Where each segment ends in `deflated`, and the length of its text.
    segments: Vec<(usize, u64)>,
    crc: crc32fast::Hasher,
    len: u64,
}

impl Default for Prefix {
    fn default() -> Prefix {
        Prefix { deflated: Bytes::new(), segments: Vec::new(), crc: crc32fast::Hasher::new(), len: 0 }
    }
}

impl Prefix {
    pub fn from_segments<'a>(segments: impl IntoIterator<Item = &'a Segment> + Clone) -> Prefix {
        let mut deflated = Vec::with_capacity(segments.clone().into_iter().map(|s| s.deflated.len()).sum());
        let mut prefix = Prefix::default();
        for segment in segments {
            deflated.extend_from_slice(&segment.deflated);
            prefix.segments.push((deflated.len(), segment.len));
            prefix.crc.combine(&segment.crc);
            prefix.len += segment.len;
        }
        prefix.deflated = Bytes::from(deflated);
        prefix
    }

    /// The length of the uncompressed prefix.
    pub fn text_len(&self) -> u64 {
        self.len
    }

    /// The length of the deflated prefix, as a gzip body sends it.
    pub fn deflated_len(&self) -> usize {
        self.deflated.len()
    }

    /// Segment `index` of this prefix, which was joined from `of`, as a segment sharing the
    /// prefix's buffer: the store keeps its segments this way, so that the deflated body is held
    /// once rather than once in the segments and again in the prefix.
    pub fn shared_segment(&self, index: usize, of: &Segment) -> Segment {
        let start = index.checked_sub(1).map_or(0, |previous| self.segments[previous].0);
        Segment { deflated: self.deflated.slice(start..self.segments[index].0), crc: of.crc.clone(), len: of.len }
    }

    /// The number of segments, for [`Prefix::inflate`].
    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// Segment `index` uncompressed, for clients that do not take gzip: the body is inflated as it
    /// is sent rather than kept uncompressed. Segments are inflated in order by one `decompress`,
    /// which holds the text a segment's dictionary refers to. The text is handed to `emit` in
    /// pieces of at most `piece` bytes, in order; `emit` returning false stops it. Pieces smaller
    /// than the allocator's mapping threshold ([`crate::memory`]) come from its heap, where a
    /// segment of up to a megabyte would be mapped and unmapped for every scrape, which makes the
    /// other threads of the process wait on the kernel's address-space lock. Returns whether every
    /// piece was taken.
    pub fn inflate_pieces(
        &self,
        index: usize,
        decompress: &mut Decompress,
        piece: usize,
        mut emit: impl FnMut(Bytes) -> bool,
    ) -> bool {
        let start = index.checked_sub(1).map_or(0, |previous| self.segments[previous].0);
        let (end, len) = self.segments[index];
        let data = &self.deflated[start..end];
        let first = decompress.total_in();
        let consumed = |decompress: &Decompress| (decompress.total_in() - first) as usize;
        let mut left = len as usize;
        while left > 0 {
            let mut out = Vec::with_capacity(left.min(piece));
            while out.len() < out.capacity() {
                let before = (decompress.total_in(), decompress.total_out());
                decompress
                    .decompress_vec(&data[consumed(decompress)..], &mut out, FlushDecompress::Sync)
                    .expect("the data was deflated here");
                if (decompress.total_in(), decompress.total_out()) == before {
                    break;
                }
            }
            if out.is_empty() {
                break;
            }
            left -= out.len();
            if !emit(Bytes::from(out)) {
                return false;
            }
        }
        // The segment's last bytes, its full flush's empty block, give no output, and a full
        // output buffer may have left them unread; the next segment's data follows them.
        let mut rest = Vec::with_capacity(64);
        while consumed(decompress) < data.len() {
            let before = decompress.total_in();
            decompress
                .decompress_vec(&data[consumed(decompress)..], &mut rest, FlushDecompress::Sync)
                .expect("the data was deflated here");
            if decompress.total_in() == before {
                break;
            }
        }
        true
    }

    /// The end of a gzip body of this prefix followed by `tail`: the tail's deflate stream and the
    /// gzip trailer. It is kept apart from [`Prefix::gzip`] so that scrapes can share it.
    pub fn gzip_end(&self, tail: &[u8]) -> Bytes {
        let mut end = Vec::with_capacity(tail.len() / 3 + 64);
        TAIL_DEFLATER.with_borrow_mut(|compress| {
            compress.reset();
            deflate(compress, tail, &mut end, FlushCompress::Finish);
        });
        let mut crc = self.crc.clone();
        let mut tail_crc = crc32fast::Hasher::new();
        tail_crc.update(tail);
        crc.combine(&tail_crc);
        end.extend_from_slice(&crc.finalize().to_le_bytes());
        // ISIZE is the length modulo 2^32, as RFC 1952 says.
        end.extend_from_slice(&((self.len + tail.len() as u64) as u32).to_le_bytes());
        Bytes::from(end)
    }

    /// The gzip body of this prefix ending with `end`, made by [`Prefix::gzip_end`] on this
    /// prefix, as buffers to send in order: the header, the deflated prefix, and the end.
    pub fn gzip(&self, end: Bytes) -> [Bytes; 3] {
        [Bytes::from_static(&HEADER), self.deflated.clone(), end]
    }
}

/// Feeds all of `data` to the compressor, appending its output to `out`, and, with a flush,
/// until the flush is complete.
fn deflate(compress: &mut Compress, data: &[u8], out: &mut Vec<u8>, flush: FlushCompress) {
    let start = compress.total_in();
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        let consumed = (compress.total_in() - start) as usize;
        let status = compress.compress_vec(&data[consumed..], out, flush).expect("deflate into memory does not fail");
        let all_in = (compress.total_in() - start) as usize == data.len();
        match (status, flush) {
            (Status::StreamEnd, _) => return,
            (_, FlushCompress::None) if all_in => return,
            // A flush is complete once all input is in and the compressor left room to spare.
            (_, FlushCompress::Full) if all_in && out.len() < out.capacity() => return,
            _ => {}
        }
    }
}

/// Inflates all of `data`, which this module deflated, appending to `out`.
fn inflate(decompress: &mut Decompress, data: &[u8], out: &mut Vec<u8>) {
    let start = decompress.total_in();
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        let consumed = (decompress.total_in() - start) as usize;
        let status =
            decompress.decompress_vec(&data[consumed..], out, FlushDecompress::Sync).expect("the data was deflated here");
        let all_in = (decompress.total_in() - start) as usize == data.len();
        if status == Status::StreamEnd || (all_in && out.len() < out.capacity()) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn gunzip(parts: &[Bytes]) -> Vec<u8> {
        let joined: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        let mut out = Vec::new();
        // A single-member reader: the body must be one gzip member, not several concatenated.
        flate2::read::GzDecoder::new(&joined[..]).read_to_end(&mut out).unwrap();
        out
    }

    /// The whole text of `prefix`, inflated in pieces of at most `piece` bytes.
    fn inflate(prefix: &Prefix, piece: usize) -> Vec<u8> {
        let (mut inflated, mut decompress) = (Vec::new(), Decompress::new(false));
        for index in 0..prefix.segments() {
            assert!(prefix.inflate_pieces(index, &mut decompress, piece, |text| {
                assert!(!text.is_empty() && text.len() <= piece);
                inflated.extend_from_slice(&text);
                true
            }));
        }
        inflated
    }

    fn lines(n: usize) -> Vec<u8> {
        (0..n).flat_map(|i| format!("metric{{n=\"{i}\"}} {i}\n").into_bytes()).collect()
    }

    #[test]
    fn prefix_and_tail_make_one_gzip_member() {
        let large = lines(200_000);
        let prefix = Prefix::from_segments([&Deflater::default().segment(b"", [&large])]);
        let body = gunzip(&prefix.gzip(prefix.gzip_end(b"# EOF\n")));
        assert_eq!(body.len(), large.len() + 6);
        assert_eq!(&body[..large.len()], &large[..]);
        assert_eq!(&body[large.len()..], b"# EOF\n");
        // The same prefix serves many tails.
        assert_eq!(gunzip(&prefix.gzip(prefix.gzip_end(b""))), large);
    }

    #[test]
    fn segments_deflated_apart_join_into_one_member_and_inflate_one_by_one() {
        let mut deflater = Deflater::default();
        let one = deflater.segment(b"", [&b"# HELP a A.\n"[..], b"a 1\n"]);
        let two = Deflater::default().segment(b"", [b"b 2\n"]);
        let three = deflater.segment(b"", [lines(50_000)]);
        let prefix = Prefix::from_segments([&one, &two, &one, &three]);
        let mut expected = b"# HELP a A.\na 1\nb 2\n# HELP a A.\na 1\n".to_vec();
        expected.extend_from_slice(&lines(50_000));
        assert_eq!(prefix.text_len(), expected.len() as u64);
        for piece in [7, 4096, 64 * 1024, usize::MAX] {
            assert_eq!(inflate(&prefix, piece), expected, "in pieces of {piece} bytes");
        }
        expected.extend_from_slice(b"# EOF\n");
        assert_eq!(gunzip(&prefix.gzip(prefix.gzip_end(b"# EOF\n"))), expected);
    }

    #[test]
    fn a_segment_deflated_after_its_predecessor_refers_to_it() {
        // Text that repeats what precedes it, as a family's next targets repeat its label names.
        let first = lines(1_000);
        assert!(first.len() < WINDOW);
        let mut deflater = Deflater::default();
        let head = deflater.segment(b"", [&first]);
        let chained = deflater.segment(&first, [&first]);
        let alone = Deflater::default().segment(b"", [&first]);
        // Exact sizes depend on the compressor's version; the ratio is what the dictionary buys.
        assert!(
            chained.deflated.len() * 10 < alone.deflated.len(),
            "{} vs {} bytes",
            chained.deflated.len(),
            alone.deflated.len()
        );
        let prefix = Prefix::from_segments([&head, &chained, &alone, &head, &chained]);
        let expected = [&first[..], &first, &first, &first, &first].concat();
        for piece in [1, 1000, usize::MAX] {
            assert_eq!(inflate(&prefix, piece), expected, "in pieces of {piece} bytes");
        }
        assert_eq!(gunzip(&prefix.gzip(prefix.gzip_end(b""))), expected);
        // A client that goes away stops the inflating at the piece it refused.
        let mut taken = 0;
        assert!(!prefix.inflate_pieces(0, &mut Decompress::new(false), 100, |_| {
            taken += 1;
            taken < 3
        }));
        assert_eq!(taken, 3);
    }

    #[test]
    fn a_chunk_holds_exactly_its_lines() {
        let text = lines(3_000);
        let none = Dictionary::of(b"");
        let chunk = Chunk::new(&text, &none);
        assert_eq!(chunk.text_len(), text.len());
        assert!(chunk.deflated_len() * 3 < text.len(), "{} bytes deflated", chunk.deflated_len());
        assert_eq!(chunk.inflate(&none), text);
        assert!(chunk.holds(&text, &none));
        let mut changed = text.clone();
        changed[100] = b'7';
        assert!(!chunk.holds(&changed, &none));
        assert!(!chunk.holds(&text[1..], &none));
        assert!(Chunk::new(b"", &none).holds(b"", &none));
    }

    #[test]
    fn a_chunk_deflated_against_a_dictionary_is_smaller_and_needs_it_back() {
        // Another target's lines of the same family: the same names, other values.
        let family = |target: usize| -> Vec<u8> {
            (0..20)
                .flat_map(|i| {
                    format!("family_status{{account=\"a\",region=\"us-east-1\",target=\"t{target:05}\",n=\"{i}\"}} {}\n", i % 2)
                        .into_bytes()
                })
                .collect()
        };
        let dictionary = Dictionary::of(&family(1));
        let (alone, against) = (Chunk::new(&family(2), &Dictionary::of(b"")), Chunk::new(&family(2), &dictionary));
        assert!(
            against.deflated_len() * 2 < alone.deflated_len(),
            "{} vs {} bytes",
            against.deflated_len(),
            alone.deflated_len()
        );
        assert_eq!(against.inflate(&dictionary), family(2));
        assert!(against.holds(&family(2), &dictionary));
        // Its own lines as the dictionary: the first target of a family.
        let first = Dictionary::of(&family(1));
        assert!(Chunk::new(&family(1), &first).holds(&family(1), &first));
    }

    #[test]
    fn empty_parts() {
        let empty = Prefix::from_segments([&Deflater::default().segment(b"", [b""])]);
        assert_eq!(gunzip(&empty.gzip(empty.gzip_end(b"tail"))), b"tail");
        assert_eq!(gunzip(&empty.gzip(empty.gzip_end(b""))), b"");
        assert_eq!(gunzip(&Prefix::default().gzip(Prefix::default().gzip_end(b"tail"))), b"tail");
    }
}
