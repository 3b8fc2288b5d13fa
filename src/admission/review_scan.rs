//! Reading an AdmissionReview body in one pass over its bytes: the JSON primitives here, the
//! review's structures in `review_scan_structs.rs`.
//!
//! What [`super::review::parse_review`] reads: the same `ReviewRequest` as the serde_json path
//! (`review.rs` derives plus the pruning visitor of `review_prune.rs`, kept as
//! `parse_review_reference`), built field by field while everything signet does not read
//! (`managedFields`, `status`, `oldObject`, `env`...) is skipped with a scan that still checks it
//! is JSON. Most of a review is such skipped text, and serde_json's generic machinery (a visitor
//! call per token) was most of a cached admission's cost.
//!
//! The reference's judgement is kept where it decides anything, so the two read every body alike
//! (pinned by a differential test over the fixtures and the `review_differential` fuzz target):
//! - Kept strings with an escape, and every kept number, are handed to serde_json itself (the token
//!   alone), so escapes (`"imag\u0065"` is `image`), lone surrogates (refused), big numbers
//!   (`1e999` refused, integers beyond u64 read as f64) are judged by the same code. Strings
//!   without escapes, nearly all of them, are copied straight from the body.
//! - Skipped values are checked as serde_json's `IgnoredAny` checks them: the JSON grammar, escapes
//!   well-formed (a lone surrogate passes, as there), no control characters, no depth limit.
//! - Duplicate fields of the request's own structures are refused at the second key; in maps and in
//!   kept parts of a spec the last one counts; `userInfo` keeps its last value (k8s-openapi's rule).
//! - Kept containers count towards serde_json's recursion limit (128), skipped ones do not.
//! - Malformed JSON is `NotJson`, well-formed JSON of the wrong shape is `NotAReview`, judged at
//!   the same point of the text as the reference judges it.
//!
//! One departure, on purpose: serde's derive also reads a structure written as a JSON array of its
//! fields in declaration order (`"kind": ["", "v1", "Pod"]`), a form the API server never writes;
//! such a body is refused here ([`ARRAY_FORM`] in the message) instead of being read by position.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use super::review::{ReviewError, ReviewRequest};

/// Part of the message of a body refused because a structure is written as an array.
#[doc(hidden)]
pub const ARRAY_FORM: &str = "written as an array";

/// serde_json's default recursion limit: the 128th nested container it builds is refused.
const DEPTH_LIMIT: u32 = 128;

/// The top level of an AdmissionReview, before `parse_review`'s checks.
pub(super) struct TopLevel<'a> {
    /// `apiVersion` (empty when absent).
    pub(super) api_version: Cow<'a, str>,
    /// `kind` (empty when absent).
    pub(super) kind: Cow<'a, str>,
    /// `request` (absent or null: `None`).
    pub(super) request: Option<ReviewRequest<'a>>,
}

/// Reads a whole body (already checked to be UTF-8).
pub(super) fn read(text: &str) -> Result<TopLevel<'_>, ReviewError> {
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        remaining_depth: DEPTH_LIMIT,
        frames: Frames::default(),
    };
    let top = scanner.review().map_err(|e| *e)?;
    match scanner.peek() {
        None => Ok(top),
        Some(_) => Err(*scanner.syntax("trailing characters")),
    }
}

/// Errors are boxed inside the reader: a result then fits in registers on the hot paths.
type Result<T, E = Box<ReviewError>> = std::result::Result<T, E>;

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    remaining_depth: u32,
    /// Open containers of the value being skipped.
    frames: Frames,
}

/// The open containers of a value being skipped, a bit each (object or not), innermost
/// lowest: the first 64 levels in a word, so that skipping allocates nothing; deeper ones (a
/// skipped value has no depth limit) in a vector.
#[derive(Default)]
struct Frames {
    bits: u64,
    depth: usize,
    deeper: Vec<bool>,
}

impl Frames {
    const IN_WORD: usize = 64;

    fn clear(&mut self) {
        self.depth = 0;
        self.deeper.clear();
    }

    #[inline(always)]
    fn push(&mut self, object: bool) {
        if self.depth < Self::IN_WORD {
            self.bits = (self.bits << 1) | u64::from(object);
        } else {
            self.deeper.push(object);
        }
        self.depth += 1;
    }

    /// Whether the innermost open container is an object; `None` when none is open.
    #[inline(always)]
    fn innermost_is_object(&self) -> Option<bool> {
        match self.depth {
            0 => None,
            depth if depth <= Self::IN_WORD => Some(self.bits & 1 == 1),
            _ => self.deeper.last().copied(),
        }
    }

    #[inline(always)]
    fn pop(&mut self) {
        if self.depth > Self::IN_WORD {
            self.deeper.pop();
        } else {
            self.bits >>= 1;
        }
        self.depth = self.depth.saturating_sub(1);
    }
}

/// A field of a structure that appears at most once (serde's derive refuses a second one).
struct Once<T>(Option<T>);

impl<T> Once<T> {
    fn new() -> Self {
        Once(None)
    }
}

impl<'a> Scanner<'a> {
    #[cold]
    #[inline(never)]
    fn syntax(&self, what: &str) -> Box<ReviewError> {
        Box::new(ReviewError::NotJson(format!("{what} at byte {}", self.pos)))
    }

    #[cold]
    #[inline(never)]
    fn data(&self, what: &str) -> Box<ReviewError> {
        Box::new(ReviewError::NotAReview(format!(
            "{what} at byte {}",
            self.pos
        )))
    }

    #[cold]
    #[inline(never)]
    fn eof(&self) -> Box<ReviewError> {
        self.syntax("unexpected end of the body")
    }

    /// A serde_json error about the token at `at`, in the same category.
    #[cold]
    #[inline(never)]
    fn delegated(error: serde_json::Error, at: usize) -> Box<ReviewError> {
        Box::new(match error.classify() {
            serde_json::error::Category::Data => {
                ReviewError::NotAReview(format!("{error} (token at byte {at})"))
            }
            _ => ReviewError::NotJson(format!("{error} (token at byte {at})")),
        })
    }

    /// The next byte after whitespace, not consumed.
    #[inline(always)]
    fn peek(&mut self) -> Option<u8> {
        while let Some(&byte) = self.bytes.get(self.pos) {
            match byte {
                b' ' | b'\n' | b'\t' | b'\r' => self.pos += 1,
                _ => return Some(byte),
            }
        }
        None
    }

    /// Opens a kept container (the byte at `pos`), counting it towards the recursion limit.
    fn enter(&mut self) -> Result<()> {
        self.remaining_depth -= 1;
        if self.remaining_depth == 0 {
            return Err(self.syntax("recursion limit exceeded"));
        }
        self.pos += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.remaining_depth += 1;
    }

    #[inline(always)]
    fn colon(&mut self) -> Result<()> {
        // Compact JSON (what the API server writes) has the colon right after the key.
        if self.bytes.get(self.pos) == Some(&b':') {
            self.pos += 1;
            return Ok(());
        }
        match self.peek() {
            Some(b':') => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(self.syntax("expected `:`")),
            None => Err(self.eof()),
        }
    }

    /// `null`, `true` or `false`, starting at `pos`.
    fn word(&mut self, word: &[u8]) -> Result<()> {
        for &expected in word {
            match self.bytes.get(self.pos) {
                Some(&byte) if byte == expected => self.pos += 1,
                Some(_) => return Err(self.syntax("expected `null`, `true` or `false`")),
                None => return Err(self.eof()),
            }
        }
        Ok(())
    }

    /// Whether the next value is `null` (then consumed).
    #[inline]
    fn null(&mut self) -> Result<bool> {
        if self.peek() == Some(b'n') {
            self.word(b"null")?;
            return Ok(true);
        }
        Ok(false)
    }

    /// From just after an opening quote to just after the closing one; whether it held an
    /// escape. Escapes are checked as serde_json checks skipped strings.
    #[inline(always)]
    fn scan_string(&mut self) -> Result<bool> {
        let mut escaped = false;
        loop {
            self.pos = find_special(self.bytes, self.pos);
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(_) => return Err(self.syntax("control character in a string")),
                None => return Err(self.eof()),
            }
        }
    }

    /// One escape (`pos` at its backslash), checked. Out of line: rare in reviews, and every
    /// string scan would otherwise carry its code.
    #[cold]
    #[inline(never)]
    fn escape(&mut self) -> Result<()> {
        self.pos += 1;
        match self.bytes.get(self.pos) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 1;
                Ok(())
            }
            Some(b'u') => {
                self.pos += 1;
                match self.bytes.get(self.pos..self.pos + 4) {
                    Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => {
                        self.pos += 4;
                        Ok(())
                    }
                    Some(_) => Err(self.syntax("invalid escape")),
                    None => Err(self.eof()),
                }
            }
            Some(_) => Err(self.syntax("invalid escape")),
            None => Err(self.eof()),
        }
    }

    /// A string as serde_json reads one it keeps (`pos` at the opening quote).
    #[inline(always)]
    fn text(&mut self) -> Result<Cow<'a, str>> {
        let start = self.pos;
        self.pos += 1;
        let escaped = self.scan_string()?;
        let text = self.text;
        // Both ends are ASCII quotes, so always on character boundaries.
        if !escaped {
            return Ok(Cow::Borrowed(
                text.get(start + 1..self.pos - 1).unwrap_or_default(),
            ));
        }
        let token = text.get(start..self.pos).unwrap_or_default();
        serde_json::from_str::<String>(token)
            .map(Cow::Owned)
            .map_err(|e| Self::delegated(e, start))
    }

    /// Checks a number's grammar (`pos` at `-` or a digit), as serde_json's skipping does.
    fn scan_number(&mut self) -> Result<()> {
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.bytes.get(self.pos) {
            Some(b'0') => {
                self.pos += 1;
                if self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
                    return Err(self.syntax("invalid number"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.syntax("invalid number")),
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            let start = self.pos;
            self.digits();
            if self.pos == start {
                return Err(self.syntax("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            let start = self.pos;
            self.digits();
            if self.pos == start {
                return Err(self.syntax("invalid number"));
            }
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }

    /// A kept number, read by serde_json from its token.
    fn number(&mut self) -> Result<Value> {
        let start = self.pos;
        self.scan_number()?;
        let token = self.text.get(start..self.pos).unwrap_or_default();
        serde_json::from_str::<Value>(token).map_err(|e| Self::delegated(e, start))
    }

    /// Skips one value, checking it as serde_json's `IgnoredAny` does (no depth limit: the open
    /// containers are a bit each in `frames`, not a recursion).
    fn skip_value(&mut self) -> Result<()> {
        self.frames.clear();
        loop {
            // One value.
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    self.scan_string()?;
                }
                Some(b'{') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b'}') => self.pos += 1,
                        Some(b'"') => {
                            self.frames.push(true);
                            self.skip_key()?;
                            continue;
                        }
                        Some(_) => return Err(self.syntax("expected a string key")),
                        None => return Err(self.eof()),
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b']') => self.pos += 1,
                        Some(_) => {
                            self.frames.push(false);
                            continue;
                        }
                        None => return Err(self.eof()),
                    }
                }
                Some(b'n') => self.word(b"null")?,
                Some(b't') => self.word(b"true")?,
                Some(b'f') => self.word(b"false")?,
                Some(b'-' | b'0'..=b'9') => self.scan_number()?,
                Some(_) => return Err(self.syntax("expected a value")),
                None => return Err(self.eof()),
            }
            // After a value: close what ends here, then go on with the next element, if any.
            loop {
                let Some(in_object) = self.frames.innermost_is_object() else {
                    return Ok(());
                };
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if in_object {
                            match self.peek() {
                                Some(b'"') => self.skip_key()?,
                                Some(_) => return Err(self.syntax("expected a string key")),
                                None => return Err(self.eof()),
                            }
                        }
                        break;
                    }
                    Some(b'}') if in_object => {
                        self.pos += 1;
                        self.frames.pop();
                    }
                    Some(b']') if !in_object => {
                        self.pos += 1;
                        self.frames.pop();
                    }
                    Some(_) => return Err(self.syntax("expected `,` or the container's end")),
                    None => return Err(self.eof()),
                }
            }
        }
    }

    /// A key of a skipped object and its colon (`pos` at the opening quote).
    #[inline(always)]
    fn skip_key(&mut self) -> Result<()> {
        self.pos += 1;
        self.scan_string()?;
        self.colon()
    }

    /// The next key of a kept object (after `enter`), or `None` at its end (consumed).
    #[inline(always)]
    fn next_key(&mut self, first: &mut bool) -> Result<Option<Cow<'a, str>>> {
        let next = match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                return Ok(None);
            }
            Some(b',') if !*first => {
                self.pos += 1;
                self.peek()
            }
            Some(byte) if *first => {
                *first = false;
                Some(byte)
            }
            Some(_) => return Err(self.syntax("expected `,` or `}`")),
            None => return Err(self.eof()),
        };
        match next {
            Some(b'"') => self.text().map(Some),
            Some(b'}') => Err(self.syntax("trailing comma")),
            Some(_) => Err(self.syntax("expected a string key")),
            None => Err(self.eof()),
        }
    }

    /// Whether a kept array (after `enter`) has another element; its end is consumed.
    #[inline(always)]
    fn next_element(&mut self, first: &mut bool) -> Result<bool> {
        match self.peek() {
            Some(b']') => {
                self.pos += 1;
                Ok(false)
            }
            Some(_) if *first => {
                *first = false;
                Ok(true)
            }
            Some(b',') => {
                self.pos += 1;
                match self.peek() {
                    Some(b']') => Err(self.syntax("trailing comma")),
                    Some(_) => Ok(true),
                    None => Err(self.eof()),
                }
            }
            Some(_) => Err(self.syntax("expected `,` or `]`")),
            None => Err(self.eof()),
        }
    }

    /// A value of the wrong JSON type: refused as not a review, once the token itself is found
    /// well-formed (as serde_json reads it before it reports the type).
    #[cold]
    #[inline(never)]
    fn wrong_type(&mut self, expected: &str) -> Box<ReviewError> {
        let found = match self.peek() {
            Some(b'n') => self.word(b"null").map(|()| "null"),
            Some(b't') => self.word(b"true").map(|()| "a boolean"),
            Some(b'f') => self.word(b"false").map(|()| "a boolean"),
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| "a number"),
            Some(b'"') => self.text().map(|_| "a string"),
            Some(b'[') => Ok("an array"),
            Some(b'{') => Ok("an object"),
            Some(_) => return self.syntax("expected a value"),
            None => return self.eof(),
        };
        match found {
            Ok(found) => self.data(&format!("expected {expected}, found {found}")),
            Err(error) => error,
        }
    }

    /// Opens a structure serde's derive reads (an object; an array is the refused form).
    fn structure(&mut self, name: &str) -> Result<()> {
        match self.peek() {
            Some(b'{') => self.enter(),
            Some(b'[') => Err(self.data(&format!("{name} {ARRAY_FORM} is not read"))),
            Some(_) => Err(self.wrong_type(name)),
            None => Err(self.eof()),
        }
    }

    /// The value of a field that may appear once: its colon is read after the duplicate check,
    /// where serde's derive checks.
    fn once<T>(
        &mut self,
        slot: &mut Once<T>,
        field: &str,
        read: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<()> {
        if slot.0.is_some() {
            return Err(self.data(&format!("duplicate field `{field}`")));
        }
        self.colon()?;
        slot.0 = Some(read(self)?);
        Ok(())
    }

    #[inline(always)]
    fn skip_field(&mut self) -> Result<()> {
        self.colon()?;
        self.skip_value()
    }

    #[inline(always)]
    fn string(&mut self) -> Result<Cow<'a, str>> {
        match self.peek() {
            Some(b'"') => self.text(),
            Some(_) => Err(self.wrong_type("a string")),
            None => Err(self.eof()),
        }
    }

    /// `null` as `None`, anything else read by `read`.
    #[inline]
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T>) -> Result<Option<T>> {
        if self.null()? {
            return Ok(None);
        }
        read(self).map(Some)
    }

    fn optional_string(&mut self) -> Result<Option<Cow<'a, str>>> {
        self.nullable(Self::string)
    }

    fn string_list(&mut self) -> Result<Vec<Cow<'a, str>>> {
        match self.peek() {
            Some(b'[') => self.enter()?,
            Some(_) => return Err(self.wrong_type("a list of strings")),
            None => return Err(self.eof()),
        }
        let mut items = Vec::new();
        let mut first = true;
        while self.next_element(&mut first)? {
            items.push(self.string()?);
        }
        self.leave();
        Ok(items)
    }

    /// A JSON object read into a map (the last of duplicate keys counts).
    fn map<T>(
        &mut self,
        mut value: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<BTreeMap<Cow<'a, str>, T>> {
        match self.peek() {
            Some(b'{') => self.enter()?,
            Some(_) => return Err(self.wrong_type("a map")),
            None => return Err(self.eof()),
        }
        let mut map = BTreeMap::new();
        let mut first = true;
        while let Some(key) = self.next_key(&mut first)? {
            self.colon()?;
            map.insert(key, value(self)?);
        }
        self.leave();
        Ok(map)
    }
}

/// The first byte at or after `from` that ends a plain run of string text: `"`, `\` or a control
/// character (below 0x20); `bytes.len()` if none. Eight bytes at a time: in each word, a byte
/// equal to `"` or `\`, or below 0x20, sets its top bit in the mask (borrows can only set bits
/// above a true hit, so the lowest bit is exact).
#[inline(always)]
pub(super) fn find_special(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let mask = (quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash
            | word.wrapping_sub(ONES * 0x20) & !word)
            & HIGHS;
        if mask != 0 {
            return at + (mask.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&byte) = bytes.get(at) {
        if byte == b'"' || byte == b'\\' || byte < 0x20 {
            return at;
        }
        at += 1;
    }
    at
}

#[path = "review_scan_structs.rs"]
mod structs;

#[cfg(test)]
#[path = "review_scan_tests.rs"]
mod tests;
