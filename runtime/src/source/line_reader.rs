//! Lines of a file, found in place: the file is read in large blocks and each line is a slice of
//! the block, so a line is neither copied nor scanned twice (`memchr` finds its end with vector
//! instructions).

use std::io::{self, Read};
use std::ops::Range;

/// How much of a file is read at a time (a line longer than this grows the buffer).
const BLOCK: usize = 1 << 20;

/// Splits a reader's bytes into lines ending in `\n` (the last one may end without it).
pub(crate) struct LineReader<R> {
    reader: R,
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`; `buf[start..scanned]` holds no `\n`.
    start: usize,
    scanned: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> LineReader<R> {
    pub(crate) fn new(reader: R) -> LineReader<R> {
        LineReader {
            reader,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            end: 0,
            eof: false,
        }
    }

    /// The next line, without its `\n` (use [`LineReader::line`] to see it), or `None` at the end.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<Range<usize>>> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.scanned..self.end]) {
                let line = self.start..self.scanned + i;
                self.start = line.end + 1;
                self.scanned = self.start;
                return Ok(Some(line));
            }
            self.scanned = self.end;
            if self.eof {
                if self.start == self.end {
                    return Ok(None);
                }
                let line = self.start..self.end;
                self.start = self.end;
                self.scanned = self.end;
                return Ok(Some(line));
            }
            self.fill()?;
        }
    }

    /// The bytes of a line [`LineReader::next_line`] returned (valid until the next call).
    pub(crate) fn line(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Reads more after the unread bytes, first moving them to the front or growing the buffer
    /// when there is no room after them.
    fn fill(&mut self) -> io::Result<()> {
        if self.end == self.buf.len() {
            let unread = self.end - self.start;
            if unread > self.buf.len() / 2 || self.buf.is_empty() {
                // A long partial line: make room for a whole block more.
                self.buf.resize(self.buf.len() + BLOCK, 0);
            }
            self.buf.copy_within(self.start..self.end, 0);
            self.scanned -= self.start;
            self.end = unread;
            self.start = 0;
        }
        loop {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per read.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn lines(data: &[u8], step: usize) -> Vec<Vec<u8>> {
        let mut reader = LineReader::new(Trickle { data, step });
        let mut out = Vec::new();
        while let Some(range) = reader.next_line().expect("in memory") {
            out.push(reader.line(range).to_vec());
        }
        out
    }

    #[test]
    fn lines_are_split_as_read_until_splits_them_whatever_the_reads() {
        let long = vec![b'x'; 3 * BLOCK + 17];
        let mut data = b"a\n\nbc\r\n".to_vec();
        data.extend_from_slice(&long);
        data.extend_from_slice(b"\nlast without newline");
        for step in [7, BLOCK / 3, usize::MAX] {
            let got = lines(&data, step);
            let want: Vec<Vec<u8>> = data.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
            assert_eq!(got, want, "step {step}");
        }
        assert_eq!(lines(b"a\n\nbc\r\nd", 1), [&b"a"[..], b"", b"bc\r", b"d"]);
        assert!(lines(b"", 5).is_empty());
        assert_eq!(lines(b"one\n", 5), [b"one".to_vec()]);
    }
}
