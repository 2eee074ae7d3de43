//! A JSON lexer over one record: the tokens the `json` decoder reads, straight off the record's
//! bytes.
//!
//! It accepts the JSON text `serde_json` accepts (RFC 8259, nesting fewer than 128 levels deep)
//! and classifies numbers as `serde_json` does, so that the decoder's conversions are Flink's
//! whatever the lexer; unlike `serde_json` it does not check that a skipped string is UTF-8. It is a separate, hand-written scanner because decoding was the whole cost of a
//! query that reads a topic and projects it (Nexmark q0–q2): field names are compared in place,
//! strings without escapes are borrowed, numbers are read in one pass, and the values of fields no
//! column names are skipped without being decoded.

use std::fmt;

/// Objects and arrays nest fewer levels than this, the record's own object included
/// (`serde_json`'s limit).
const MAX_DEPTH: usize = 128;

/// Why a record is not JSON, and the byte offset where that was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub what: &'static str,
    pub at: usize,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON: {} (at column {})", self.what, self.at + 1)
    }
}

/// A JSON number, classified as `serde_json` classifies it: a non-negative integer that fits
/// `u64`, a negative one that fits `i64`, anything else (fractions, exponents, `-0`, integers out
/// of range) a float. [`Lexer::number`] also gives it as written, for exact DECIMAL conversion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    PosInt(u64),
    NegInt(i64),
    Float(f64),
}

/// A string's text: borrowed from the record when it has no escapes, else decoded into the
/// caller's scratch buffer.
pub(crate) enum Text<'a> {
    Borrowed(&'a str),
    Decoded,
}

/// A cursor over one record's bytes. The record need not be UTF-8 as a whole: the strings the
/// lexer hands out are checked (a byte above 0x7f outside a string is a syntax error anyway), and
/// a skipped string is not, as Flink's JSON parser does not check fields it skips.
pub(crate) struct Lexer<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Lexer<'a> {
        Lexer { bytes, pos: 0 }
    }

    /// `bytes[start..end]` as text, or an error where it stops being UTF-8.
    fn utf8(&self, start: usize, end: usize) -> Result<&'a str, SyntaxError> {
        std::str::from_utf8(&self.bytes[start..end]).map_err(|e| SyntaxError {
            what: "invalid UTF-8 in a string",
            at: start + e.valid_up_to(),
        })
    }

    /// The byte offset of the next token.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    fn error(&self, what: &'static str) -> SyntaxError {
        SyntaxError { what, at: self.pos }
    }

    /// The next byte after whitespace, without consuming it.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        let bytes = self.bytes;
        while let Some(&b) = bytes.get(self.pos) {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => self.pos += 1,
                _ => return Some(b),
            }
        }
        None
    }

    /// Consumes `byte` (after whitespace) or fails with `what`.
    pub(crate) fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), SyntaxError> {
        match self.peek() {
            Some(b) if b == byte => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(self.error(what)),
            None => Err(self.error("the record ends early")),
        }
    }

    /// Consumes `expected` if the bytes after whitespace start with it.
    pub(crate) fn eat_bytes(&mut self, expected: &[u8]) -> bool {
        self.peek();
        let end = self.pos + expected.len();
        let equal = self
            .bytes
            .get(self.pos..end)
            .is_some_and(|next| short_eq(next, expected));
        if equal {
            self.pos = end;
        }
        equal
    }

    /// Consumes `byte` if it is next (after whitespace).
    pub(crate) fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Fails unless only whitespace is left.
    pub(crate) fn end(&mut self) -> Result<(), SyntaxError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("characters after the object")),
        }
    }

    /// Reads a string whose opening quote is next: borrowed when it has no escapes, else decoded
    /// into `scratch` (cleared first).
    pub(crate) fn string(&mut self, scratch: &mut String) -> Result<Text<'a>, SyntaxError> {
        self.expect(b'"', "expected a string")?;
        let start = self.pos;
        let end = self.to_special(start);
        match self.bytes.get(end) {
            Some(b'"') => {
                self.pos = end + 1;
                Ok(Text::Borrowed(self.utf8(start, end)?))
            }
            _ => {
                scratch.clear();
                self.string_body(start, Some(scratch))?;
                Ok(Text::Decoded)
            }
        }
    }

    /// Walks a string's contents from `from` (just after its opening quote) to past its closing
    /// quote, checking its escapes; with `out`, appends the text it stands for (each run between
    /// escapes checked to be UTF-8).
    fn string_body(
        &mut self,
        mut from: usize,
        mut out: Option<&mut String>,
    ) -> Result<(), SyntaxError> {
        loop {
            let end = self.to_special(from);
            if let Some(out) = out.as_deref_mut() {
                out.push_str(self.utf8(from, end)?);
            }
            self.pos = end;
            match self.bytes.get(end) {
                Some(b'"') => {
                    self.pos = end + 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos = end + 1;
                    let c = self.escape()?;
                    if let Some(out) = out.as_deref_mut() {
                        out.push(c);
                    }
                }
                Some(_) => return Err(self.error("a control character in a string")),
                None => return Err(self.error("the record ends inside a string")),
            }
            from = self.pos;
        }
    }

    /// One escape after its backslash, as the character it stands for.
    fn escape(&mut self) -> Result<char, SyntaxError> {
        let Some(&b) = self.bytes.get(self.pos) else {
            return Err(self.error("the record ends inside a string"));
        };
        self.pos += 1;
        Ok(match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                match unit {
                    0xD800..=0xDBFF => {
                        if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err(self.error("a lone surrogate in a \\u escape"));
                        }
                        self.pos += 2;
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(self.error("a lone surrogate in a \\u escape"));
                        }
                        let c = 0x10000
                            + ((u32::from(unit) - 0xD800) << 10)
                            + (u32::from(low) - 0xDC00);
                        char::from_u32(c).ok_or_else(|| self.error("an invalid \\u escape"))?
                    }
                    0xDC00..=0xDFFF => return Err(self.error("a lone surrogate in a \\u escape")),
                    _ => char::from_u32(u32::from(unit))
                        .ok_or_else(|| self.error("an invalid \\u escape"))?,
                }
            }
            _ => {
                self.pos -= 1;
                return Err(self.error("an invalid escape"));
            }
        })
    }

    /// Four hex digits of a `\u` escape.
    fn hex4(&mut self) -> Result<u16, SyntaxError> {
        let mut v: u16 = 0;
        for _ in 0..4 {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(self.error("the record ends inside a string"));
            };
            let d = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return Err(self.error("an invalid \\u escape")),
            };
            v = (v << 4) | u16::from(d);
            self.pos += 1;
        }
        Ok(v)
    }

    /// The offset of the first `"`, `\` or control character at or after `from` (the length when
    /// there is none): sixteen bytes at a time with SSE2 (every x86-64 CPU has it), then byte by
    /// byte.
    fn to_special(&self, mut from: usize) -> usize {
        let bytes = self.bytes;
        #[cfg(target_arch = "x86_64")]
        while let Some(chunk) = bytes.get(from..).and_then(|rest| rest.first_chunk::<16>()) {
            let found = special_mask(chunk);
            if found != 0 {
                return from + found.trailing_zeros() as usize;
            }
            from += 16;
        }
        while let Some(&b) = bytes.get(from) {
            if b == b'"' || b == b'\\' || b < 0x20 {
                break;
            }
            from += 1;
        }
        from
    }

    /// Reads a number whose first byte (`-` or a digit) is next: its bytes as written (ASCII) and
    /// its value.
    pub(crate) fn number(&mut self) -> Result<(&'a [u8], Number), SyntaxError> {
        let bytes = self.bytes;
        let start = self.pos;
        let mut i = start;
        let negative = bytes.get(i) == Some(&b'-');
        i += usize::from(negative);
        // The integer part: `0` or a non-zero digit and more digits; it accumulates while it fits.
        let mut significand: u64 = 0;
        let mut overflow = false;
        match bytes.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while let Some(&b @ b'0'..=b'9') = bytes.get(i) {
                    match significand
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    {
                        Some(v) => significand = v,
                        None => overflow = true,
                    }
                    i += 1;
                }
            }
            _ => {
                self.pos = i;
                return Err(self.error("an invalid number"));
            }
        }
        let mut float = overflow;
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            i = self.digits(i)?;
            float = true;
        }
        if let Some(b'e' | b'E') = bytes.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = bytes.get(i) {
                i += 1;
            }
            i = self.digits(i)?;
            float = true;
        }
        if matches!(bytes.get(i), Some(b'0'..=b'9')) {
            // A leading zero followed by digits.
            self.pos = i;
            return Err(self.error("an invalid number"));
        }
        self.pos = i;
        let text = &bytes[start..i];
        let number = if !float && !negative {
            Number::PosInt(significand)
        } else if !float && significand <= i64::MAX as u64 + 1 && significand != 0 {
            Number::NegInt((significand as i64).wrapping_neg())
        } else {
            let parsed = std::str::from_utf8(text).ok().and_then(|t| t.parse().ok());
            let v: f64 = parsed.ok_or(SyntaxError {
                what: "an invalid number",
                at: start,
            })?;
            if !v.is_finite() {
                return Err(SyntaxError {
                    what: "a number out of range",
                    at: start,
                });
            }
            Number::Float(v)
        };
        Ok((text, number))
    }

    /// One or more digits from `i`; the offset after them.
    fn digits(&mut self, mut i: usize) -> Result<usize, SyntaxError> {
        let bytes = self.bytes;
        let first = i;
        while let Some(b'0'..=b'9') = bytes.get(i) {
            i += 1;
        }
        if i == first {
            self.pos = i;
            return Err(self.error("an invalid number"));
        }
        Ok(i)
    }

    /// Consumes the literal `word` (`true`, `false`, `null`) whose first byte is next.
    pub(crate) fn literal(&mut self, word: &'static [u8]) -> Result<(), SyntaxError> {
        let end = self.pos + word.len();
        if self.bytes.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }

    /// Skips one value of any kind, checking its syntax, inside `depth` open objects and arrays.
    pub(crate) fn skip_value(&mut self, depth: usize) -> Result<(), SyntaxError> {
        let Some(first) = self.peek() else {
            return Err(self.error("the record ends early"));
        };
        match first {
            b'{' | b'[' => self.skip_nested(depth),
            _ => self.skip_scalar(first),
        }
    }

    /// The text from `start` to the current position (a value just skipped), checked to be UTF-8.
    pub(crate) fn text_from(&self, start: usize) -> Result<&'a str, SyntaxError> {
        self.utf8(start, self.pos)
    }

    /// Skips a scalar whose first byte is `first` (already peeked).
    fn skip_scalar(&mut self, first: u8) -> Result<(), SyntaxError> {
        match first {
            b'"' => self.string_body(self.pos + 1, None),
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => Err(self.error("expected a value")),
        }
    }

    /// Skips an object or array whose opening bracket is next, inside `depth` levels, without
    /// recursion: `open` holds the brackets still open.
    fn skip_nested(&mut self, depth: usize) -> Result<(), SyntaxError> {
        let mut open: Vec<u8> = Vec::new();
        loop {
            // At the start of a value.
            let Some(b) = self.peek() else {
                return Err(self.error("the record ends early"));
            };
            match b {
                b'{' | b'[' => {
                    if depth + open.len() + 1 >= MAX_DEPTH {
                        return Err(self.error("nesting deeper than 128 levels"));
                    }
                    self.pos += 1;
                    open.push(b);
                    let close = if b == b'{' { b'}' } else { b']' };
                    if self.eat(close) {
                        open.pop();
                    } else {
                        if b == b'{' {
                            self.key()?;
                        }
                        continue;
                    }
                }
                _ => self.skip_scalar(b)?,
            }
            // After a value: a comma and the next one, or the end of containers.
            loop {
                let Some(&inner) = open.last() else {
                    return Ok(());
                };
                let close = if inner == b'{' { b'}' } else { b']' };
                if self.eat(b',') {
                    if inner == b'{' {
                        self.key()?;
                    }
                    break;
                }
                if self.eat(close) {
                    open.pop();
                    continue;
                }
                return Err(match self.peek() {
                    None => self.error("the record ends early"),
                    Some(_) if inner == b'{' => self.error("expected `,` or `}`"),
                    Some(_) => self.error("expected `,` or `]`"),
                });
            }
        }
    }

    /// Skips an object's field name and its colon (in a skipped value).
    fn key(&mut self) -> Result<(), SyntaxError> {
        if self.peek() != Some(b'"') {
            return Err(match self.peek() {
                None => self.error("the record ends early"),
                Some(_) => self.error("expected a field name"),
            });
        }
        self.skip_scalar(b'"')?;
        self.expect(b':', "expected `:`")
    }
}

/// `a == b`, without a call to `memcmp` when the slices are 4 to 16 bytes long (a quoted field
/// name, compared once per field): their first and last 4 or 8 bytes, which overlap, cover them.
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    fn word<const N: usize>(s: &[u8], at: usize) -> Option<[u8; N]> {
        s.get(at..).and_then(|s| s.first_chunk::<N>()).copied()
    }
    match a.len() {
        n if n != b.len() => false,
        n @ 4..8 => word::<4>(a, 0) == word(b, 0) && word::<4>(a, n - 4) == word(b, n - 4),
        n @ 8..=16 => word::<8>(a, 0) == word(b, 0) && word::<8>(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// Bit `i` is set when `chunk[i]` is `"`, `\` or below 0x20.
#[cfg(target_arch = "x86_64")]
fn special_mask(chunk: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of x86-64, and the unaligned load reads the 16 bytes of `chunk`.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // b < 0x20 exactly when min(b, 0x1f) == b (unsigned).
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> Result<Number, SyntaxError> {
        let mut lexer = Lexer::new(text.as_bytes());
        let (written, n) = lexer.number()?;
        assert_eq!(written, text.as_bytes());
        Ok(n)
    }

    #[test]
    fn numbers_are_classified_as_serde_json_classifies_them() {
        for text in [
            "0",
            "-0",
            "7",
            "-7",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1.5",
            "-2.5e3",
            "1E400",
            "1e-400",
            "12345678901234567890123",
        ] {
            let ours = number(text);
            let theirs: Result<serde_json::Value, _> = serde_json::from_str(text);
            match (ours, theirs) {
                (Ok(Number::PosInt(a)), Ok(b)) => assert_eq!(Some(a), b.as_u64(), "{text}"),
                (Ok(Number::NegInt(a)), Ok(b)) => assert_eq!(Some(a), b.as_i64(), "{text}"),
                (Ok(Number::Float(a)), Ok(b)) => {
                    assert!(b.is_f64(), "{text}");
                    assert_eq!(Some(a.to_bits()), b.as_f64().map(f64::to_bits), "{text}");
                }
                (Err(_), Err(_)) => {}
                (ours, theirs) => panic!("{text}: {ours:?} against {theirs:?}"),
            }
        }
    }

    #[test]
    fn malformed_numbers_are_refused_where_they_go_wrong() {
        for (text, at) in [
            ("01", 1),
            ("-", 1),
            ("1.", 2),
            ("1e", 2),
            ("1e+", 3),
            ("-a", 1),
        ] {
            let err = number(text).expect_err(text);
            assert_eq!((err.what, err.at), ("an invalid number", at), "{text}");
        }
    }

    #[test]
    fn strings_are_borrowed_without_escapes_and_decoded_with_them() {
        let mut scratch = String::new();
        let mut lexer =
            Lexer::new(br#""plain text, long enough for a word" "a\"b\\c\u00e9\ud83d\ude00\n""#);
        match lexer.string(&mut scratch) {
            Ok(Text::Borrowed(s)) => assert_eq!(s, "plain text, long enough for a word"),
            _ => panic!("expected a borrowed string"),
        }
        assert!(matches!(lexer.string(&mut scratch), Ok(Text::Decoded)));
        assert_eq!(scratch, "a\"b\\c\u{e9}\u{1F600}\n");
        assert_eq!(lexer.end(), Ok(()));
    }

    #[test]
    fn the_special_byte_scan_finds_the_first_one_in_every_position() {
        for len in 0..40 {
            for (at, special) in (0..len).flat_map(|at| [(at, b'"'), (at, b'\\'), (at, 0x1f)]) {
                let mut bytes = vec![b'a'; len];
                bytes[at] = special;
                // A later special byte must not hide the first.
                if at + 1 < len {
                    bytes[at + 1] = b'"';
                }
                let text = String::from_utf8(bytes).expect("ASCII");
                assert_eq!(Lexer::new(text.as_bytes()).to_special(0), at, "{text:?}");
            }
            let text = "é".repeat(len);
            assert_eq!(Lexer::new(text.as_bytes()).to_special(0), text.len());
        }
    }

    #[test]
    fn skipping_checks_syntax_and_depth() {
        let ok = r#"{"a":[1,{"b":null},"x\u0041",true,false,-1.5e2],"c":{}} "#;
        let mut lexer = Lexer::new(ok.as_bytes());
        assert_eq!(lexer.skip_value(0), Ok(()));
        assert_eq!(lexer.text_from(0).map(str::len), Ok(ok.len() - 1));
        for bad in [
            r#"{"a" 1}"#,
            r#"{"a":1,}"#,
            r#"[1,]"#,
            r#"[1 2]"#,
            r#"{1:2}"#,
            r#""\x""#,
            r#""\u12G4""#,
            "\"a\u{1}\"",
            "[tru]",
            "[",
        ] {
            assert!(Lexer::new(bad.as_bytes()).skip_value(0).is_err(), "{bad}");
        }
        let deep = "[".repeat(MAX_DEPTH - 1) + &"]".repeat(MAX_DEPTH - 1);
        assert!(Lexer::new(deep.as_bytes()).skip_value(0).is_ok());
        // Inside a record's object, one level less is left.
        let err = Lexer::new(deep.as_bytes())
            .skip_value(1)
            .expect_err("too deep");
        assert_eq!(err.what, "nesting deeper than 128 levels");
    }

    #[test]
    fn short_equality_agrees_with_slice_equality() {
        for len in 0..24 {
            let a: Vec<u8> = (0..len as u8).collect();
            assert!(short_eq(&a, &a.clone()));
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 1;
                assert!(!short_eq(&a, &b), "{len} {at}");
            }
            assert!(!short_eq(&a, &a[..len.saturating_sub(1)]) || len == 0);
        }
    }
}
