//! Finding where a value ends in a line: literal search tuned for short literals and short
//! values, and an inline byte compare.

/// Finds where a value ends: the next occurrence of the literal that follows it, skipping
/// quotes escaped with a backslash and, for list values, the spaces inside `, ` and ` : `.
#[inline(always)]
pub(super) fn find_value_end(rest: &[u8], terminator: &Terminator, is_list: bool) -> Option<usize> {
    let literal = &terminator.text;
    let mut from = 0;
    loop {
        let at = from + terminator.find_in(&rest[from..])?;
        let escaped_quote = literal[0] == b'"'
            && rest[..at].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1;
        let inside_list = is_list
            && literal[0] == b' '
            && (rest[..at].ends_with(b",")
                || rest[..at].ends_with(b" :")
                || rest[at..].starts_with(b" : ")
                || rest[at..].starts_with(b" , "));
        if !escaped_quote && !inside_list {
            return Some(at);
        }
        from = at + 1;
    }
}

/// A format literal that ends a value, ready to be found in lines. Literals are short
/// (`" "`, ` uct="`) and values are short, so `memchr` for the first byte and a check of the
/// rest beat a general substring search, whose set-up cost dominates on haystacks this small.
/// The rest, when it fits in 8 bytes, is checked with one masked word compare: a `memcmp`
/// call per candidate cost a sixth of the parse.
#[derive(Debug, Clone)]
pub(super) struct Terminator {
    pub(super) text: Box<[u8]>,
    /// The bytes after the first, little-endian, zero-padded.
    tail_word: u64,
    /// Which bytes of a loaded word `tail_word` covers; `None` when the tail is over 8 bytes.
    tail_mask: Option<u64>,
}

impl Terminator {
    pub(super) fn new(text: Box<[u8]>) -> Self {
        let tail = text.get(1..).unwrap_or_default();
        let (tail_word, tail_mask) = if tail.len() <= 8 {
            let mut word = [0u8; 8];
            word[..tail.len()].copy_from_slice(tail);
            let mask = if tail.len() == 8 { u64::MAX } else { (1u64 << (8 * tail.len())) - 1 };
            (u64::from_le_bytes(word), Some(mask))
        } else {
            (0, None)
        };
        Terminator { text, tail_word, tail_mask }
    }

    /// Where the literal first occurs in `haystack`.
    #[inline(always)]
    pub(super) fn find_in(&self, haystack: &[u8]) -> Option<usize> {
        let (&first, tail) = self.text.split_first()?;
        let mut from = 0;
        while let Some(at) = find_byte(first, &haystack[from..]) {
            let at = from + at;
            let after = &haystack[at + 1..];
            let matches = match self.tail_mask {
                Some(mask) if after.len() >= 8 => {
                    let word = u64::from_le_bytes(after[..8].try_into().unwrap_or_default());
                    word & mask == self.tail_word
                }
                _ => after.starts_with(tail),
            };
            if matches {
                return Some(at);
            }
            from = at + 1;
        }
        None
    }
}

/// Whether two byte strings of the same length are equal, compared a word at a time inline:
/// timestamps are compared on every line, and a `memcmp` call costs more than the compare.
#[inline(always)]
pub(super) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() < 8 {
        return a == b;
    }
    let word =
        |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
    let mut at = 0;
    while at + 8 <= a.len() {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    // The last, overlapping word covers what is left.
    word(a, a.len() - 8) == word(b, b.len() - 8)
}

#[inline(always)]
fn find_byte(needle: u8, haystack: &[u8]) -> Option<usize> {
    const SHORT: usize = 16;
    let head = &haystack[..haystack.len().min(SHORT)];
    if let Some(at) = head.iter().position(|&b| b == needle) {
        return Some(at);
    }
    if haystack.len() <= SHORT {
        return None;
    }
    memchr::memchr(needle, &haystack[SHORT..]).map(|at| at + SHORT)
}

#[cfg(test)]
mod tests {
    use super::{Terminator, same_bytes};

    #[test]
    fn terminators_of_every_length_are_found_where_a_plain_search_finds_them() {
        let haystack = b"a\" b uct=\"0.1\" x uct=\"0.2\" ua=\"10.0.0.1:80\" end-of-line--marker!";
        for literal in [
            &b" "[..],
            b"\" ",
            b" uct=\"",
            b"\" ua=\"",
            b"0.0.1:80\"",
            b"end-of-line--marker!",
            b"marker!",
            b"absent",
            b"!x",
        ] {
            let terminator = Terminator::new(literal.into());
            for from in 0..haystack.len() {
                let rest = &haystack[from..];
                let expected = rest.windows(literal.len()).position(|w| w == literal);
                assert_eq!(terminator.find_in(rest), expected, "{literal:?} from {from}");
            }
        }
    }

    #[test]
    fn same_bytes_compares_every_byte() {
        let a = b"15/Nov/2023:14:00:00 +0000";
        for at in 0..a.len() {
            let mut b = *a;
            b[at] ^= 1;
            assert!(!same_bytes(a, &b), "byte {at}");
        }
        assert!(same_bytes(a, a) && same_bytes(b"abc", b"abc") && !same_bytes(b"abc", b"abd"));
        assert!(!same_bytes(b"abc", b"abcd"));
    }
}
