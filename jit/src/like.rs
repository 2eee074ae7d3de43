//! `LIKE` with a constant pattern, matched by compiled code through [`like_match`].
//!
//! The pattern is parsed once, when the kernel is compiled, into the shapes the interpreter's
//! kernel (Arrow's) also distinguishes: an exact string, a prefix (`abc%`), a suffix (`%abc`), a
//! substring (`%abc%`), or a general pattern matched item by item, where `%` is any sequence of
//! characters and `_` exactly one character (a Unicode scalar value, not a byte).

/// One item of a general pattern.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Item {
    /// This character.
    Char(char),
    /// `_`: any one character.
    One,
    /// `%`: any sequence of characters.
    Many,
}

/// A compiled `LIKE` pattern. Case-sensitive (`ILIKE` is left to the interpreter, whose Unicode
/// case folding this does not reproduce).
#[derive(Clone, Debug)]
pub(crate) enum LikeMatcher {
    Exact(String),
    Prefix(String),
    Suffix(String),
    /// A substring, searched bytewise with a searcher built once.
    Contains(Box<memchr::memmem::Finder<'static>>),
    General(Vec<Item>),
}

impl LikeMatcher {
    /// Parses `pattern` with escape character `escape` (none without `ESCAPE`: then a backslash
    /// is an ordinary character). An escape before any character makes it literal; a trailing
    /// escape stands for itself: with `ESCAPE '!'`, `a!%%` matches `a%bc` but not `abc`.
    pub(crate) fn new(pattern: &str, escape: Option<char>) -> LikeMatcher {
        let mut items = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            items.push(if Some(c) == escape {
                Item::Char(chars.next().unwrap_or(c))
            } else {
                match c {
                    '%' => Item::Many,
                    '_' => Item::One,
                    c => Item::Char(c),
                }
            });
        }
        let literal = |items: &[Item]| -> Option<String> {
            items
                .iter()
                .map(|i| match i {
                    Item::Char(c) => Some(*c),
                    _ => None,
                })
                .collect()
        };
        let n = items.len();
        if let Some(s) = literal(&items) {
            return LikeMatcher::Exact(s);
        }
        let many_at = |k: usize| items.get(k) == Some(&Item::Many);
        if n >= 1
            && many_at(n - 1)
            && let Some(s) = literal(&items[..n - 1])
        {
            return LikeMatcher::Prefix(s);
        }
        if n >= 1
            && many_at(0)
            && let Some(s) = literal(&items[1..])
        {
            return LikeMatcher::Suffix(s);
        }
        if n >= 2
            && many_at(0)
            && many_at(n - 1)
            && let Some(s) = literal(&items[1..n - 1])
        {
            return LikeMatcher::Contains(Box::new(
                memchr::memmem::Finder::new(s.as_bytes()).into_owned(),
            ));
        }
        LikeMatcher::General(items)
    }

    /// Whether the UTF-8 string `s` matches (exact, prefix, suffix and substring patterns
    /// compare bytes, as characters compare: UTF-8 is self-synchronising).
    pub(crate) fn matches(&self, s: &[u8]) -> bool {
        match self {
            LikeMatcher::Exact(p) => s == p.as_bytes(),
            LikeMatcher::Prefix(p) => s.starts_with(p.as_bytes()),
            LikeMatcher::Suffix(p) => s.ends_with(p.as_bytes()),
            LikeMatcher::Contains(finder) => finder.find(s).is_some(),
            // Arrow validated the strings; invalid UTF-8 would only mean "no match", never UB.
            LikeMatcher::General(items) => std::str::from_utf8(s).is_ok_and(|s| general(items, s)),
        }
    }
}

/// Wildcard matching with one backtracking point: after a mismatch, the last `%` absorbs one
/// more character and matching resumes after it. Greedy retries of earlier `%`s are never
/// needed, so this is linear in practice and O(pattern × string) at worst.
fn general(items: &[Item], s: &str) -> bool {
    let (mut p, mut at) = (0usize, 0usize);
    let mut retry: Option<(usize, usize)> = None;
    loop {
        let rest = &s[at..];
        let step = match items.get(p) {
            Some(Item::Many) => {
                retry = Some((p, at));
                p += 1;
                continue;
            }
            Some(Item::One) => rest.chars().next().map(char::len_utf8),
            Some(Item::Char(c)) => rest.starts_with(*c).then(|| c.len_utf8()),
            None if rest.is_empty() => return true,
            None => None,
        };
        if let Some(len) = step {
            p += 1;
            at += len;
            continue;
        }
        let Some((star, from)) = retry else {
            return false;
        };
        let Some(c) = s[from..].chars().next() else {
            return false;
        };
        let next = from + c.len_utf8();
        retry = Some((star, next));
        p = star + 1;
        at = next;
    }
}

/// 1 when the string at `ptr` (`len` bytes of UTF-8) matches `matcher`, else 0.
///
/// # Safety
/// `matcher` points to a live [`LikeMatcher`] (the kernel owns it) and `len` bytes at `ptr` are
/// readable (an Arrow string slice); a zero length may come with any pointer.
pub(crate) unsafe extern "C" fn like_match(
    matcher: *const LikeMatcher,
    ptr: *const u8,
    len: i64,
) -> i8 {
    let bytes: &[u8] = if len <= 0 || ptr.is_null() {
        &[]
    } else {
        // SAFETY: the caller guarantees `len` readable bytes at `ptr`.
        unsafe { std::slice::from_raw_parts(ptr, len as usize) }
    };
    // SAFETY: the caller guarantees `matcher` is live.
    let matcher = unsafe { &*matcher };
    i8::from(matcher.matches(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn like(s: &str, p: &str) -> bool {
        LikeMatcher::new(p, None).matches(s.as_bytes())
    }

    #[test]
    fn shapes_are_recognised() {
        let shape = |p: &str| match LikeMatcher::new(p, None) {
            LikeMatcher::Exact(s) => format!("exact {s}"),
            LikeMatcher::Prefix(s) => format!("prefix {s}"),
            LikeMatcher::Suffix(s) => format!("suffix {s}"),
            LikeMatcher::Contains(f) => {
                format!("contains {}", String::from_utf8_lossy(f.needle()))
            }
            LikeMatcher::General(_) => "general".into(),
        };
        assert_eq!(shape("abc"), "exact abc");
        assert_eq!(shape("ab%"), "prefix ab");
        assert_eq!(shape("%ab"), "suffix ab");
        assert_eq!(shape("%ab%"), "contains ab");
        assert_eq!(shape("%"), "prefix ");
        assert_eq!(shape("a_c"), "general");
    }

    #[test]
    fn wildcards_match_characters_not_bytes() {
        assert!(like("abc", "a_c"));
        assert!(like("aüc", "a_c"));
        assert!(!like("ac", "a_c"));
        assert!(like("", "%"));
        assert!(!like("", "_"));
        assert!(like("xaybzc", "%a%b%c"));
        assert!(!like("xaybzcd", "%a%b%c"));
        assert!(like("aaab", "%a_b"));
        assert!(like("mississippi", "m%iss%pi"));
        assert!(!like("mississippi", "m%iss%x%"));
        assert!(like("a\nb", "a_b"));
    }

    #[test]
    fn escapes_make_wildcards_literal() {
        let like = |s: &str, p: &str, escape| LikeMatcher::new(p, escape).matches(s.as_bytes());
        assert!(like("a%bc", "a!%%", Some('!')));
        assert!(!like("abc", "a!%%", Some('!')));
        assert!(like("a!", "a!", Some('!')));
        assert!(like("a\\x", "a\\_", None));
        assert!(!like("a\\x", "a\\_", Some('\\')));
        assert!(like("a_", "a\\_", Some('\\')));
    }
}
