//! gzip for scrape bodies without compressing the large part on every scrape.
//!
//! A scrape body is the assembled exposition (large, changes only when a poll changes something)
//! followed by the exporter's own metrics (small, rendered per scrape). Each metric family of the
//! large part is deflated on its own, ending with a full flush: that leaves the deflate stream at a
//! byte boundary with no reference to earlier data, so independent deflate streams can follow one
//! another, and a family is deflated again only when it changed. The small part's stream comes
//! last. One gzip member wraps them all, its CRC-32 combined from the parts' CRCs. The result is
//! ordinary gzip that any client reads, and a scrape compresses only a few kilobytes.

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};

/// The gzip header: deflate, no name or comment, no modification time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A piece of a body, deflated on its own and ended with a full flush, so that pieces deflated at
/// different times can be joined: a family of series is deflated again only when it changed.
#[derive(Debug, Clone)]
pub struct Segment {
    deflated: Bytes,
    crc: crc32fast::Hasher,
    len: u64,
}

impl Segment {
    /// Deflates the concatenation of `parts`, without concatenating them.
    pub fn new(parts: impl Iterator<Item = Bytes>) -> Segment {
        let mut crc = crc32fast::Hasher::new();
        let mut len = 0u64;
        let mut compress = Compress::new(Compression::fast(), false);
        let mut out = Vec::with_capacity(16 * 1024);
        for part in parts {
            crc.update(&part);
            len += part.len() as u64;
            run(&mut compress, &part, &mut out, FlushCompress::None);
        }
        run(&mut compress, &[], &mut out, FlushCompress::Full);
        Segment { deflated: Bytes::from(out), crc, len }
    }
}

/// The deflated large part of a body, ready to be followed by a small one.
#[derive(Debug, Clone)]
pub struct Prefix {
    segments: Vec<Bytes>,
    crc: crc32fast::Hasher,
    len: u64,
}

impl Prefix {
    /// Deflates `data` as one segment.
    pub fn new(data: &[u8]) -> Prefix {
        Prefix::from_parts(std::iter::once(Bytes::copy_from_slice(data)))
    }

    /// [`Prefix::new`] of the concatenation of `parts`, without concatenating them.
    pub fn from_parts(parts: impl Iterator<Item = Bytes>) -> Prefix {
        Prefix::from_segments(&[Segment::new(parts)])
    }

    /// Joins segments deflated separately: their bytes are shared, not copied.
    pub fn from_segments<'a>(segments: impl IntoIterator<Item = &'a Segment>) -> Prefix {
        let mut prefix = Prefix { segments: Vec::new(), crc: crc32fast::Hasher::new(), len: 0 };
        for segment in segments {
            prefix.segments.push(segment.deflated.clone());
            prefix.crc.combine(&segment.crc);
            prefix.len += segment.len;
        }
        prefix
    }

    /// The gzip body of this prefix followed by `tail`, as buffers to send in order: the header,
    /// the shared deflated segments, and the tail's deflate stream with the gzip trailer.
    pub fn gzip(&self, tail: &[u8]) -> Vec<Bytes> {
        let mut end = Vec::with_capacity(tail.len() / 3 + 64);
        run(&mut Compress::new(Compression::default(), false), tail, &mut end, FlushCompress::Finish);
        let mut crc = self.crc.clone();
        let mut tail_crc = crc32fast::Hasher::new();
        tail_crc.update(tail);
        crc.combine(&tail_crc);
        end.extend_from_slice(&crc.finalize().to_le_bytes());
        // ISIZE is the length modulo 2^32, as RFC 1952 says.
        end.extend_from_slice(&((self.len + tail.len() as u64) as u32).to_le_bytes());
        let mut parts = Vec::with_capacity(self.segments.len() + 2);
        parts.push(Bytes::from_static(&HEADER));
        parts.extend(self.segments.iter().cloned());
        parts.push(Bytes::from(end));
        parts
    }
}

/// Feeds all of `data` to the compressor, appending its output to `out`, and, with a flush,
/// until the flush is complete.
fn run(compress: &mut Compress, data: &[u8], out: &mut Vec<u8>, flush: FlushCompress) {
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

    #[test]
    fn prefix_and_tail_make_one_gzip_member() {
        let large: Vec<u8> = (0..200_000).flat_map(|i| format!("metric{{n=\"{i}\"}} {i}\n").into_bytes()).collect();
        let prefix = Prefix::new(&large);
        let body = gunzip(&prefix.gzip(b"# EOF\n"));
        assert_eq!(body.len(), large.len() + 6);
        assert_eq!(&body[..large.len()], &large[..]);
        assert_eq!(&body[large.len()..], b"# EOF\n");
        // The same prefix serves many tails.
        assert_eq!(gunzip(&prefix.gzip(b"")), large);
    }

    #[test]
    fn segments_deflated_apart_join_into_one_member() {
        let one = Segment::new([Bytes::from_static(b"# HELP a A.\n"), Bytes::from_static(b"a 1\n")].into_iter());
        let two = Segment::new(std::iter::once(Bytes::from_static(b"b 2\n")));
        let prefix = Prefix::from_segments([&one, &two, &one]);
        assert_eq!(gunzip(&prefix.gzip(b"# EOF\n")), b"# HELP a A.\na 1\nb 2\n# HELP a A.\na 1\n# EOF\n");
    }

    #[test]
    fn empty_parts() {
        assert_eq!(gunzip(&Prefix::new(b"").gzip(b"tail")), b"tail");
        assert_eq!(gunzip(&Prefix::new(b"").gzip(b"")), b"");
    }
}
