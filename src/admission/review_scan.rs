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

/// The top level of an AdmissionReview, before `parse_review`'s checks. Its request is written
/// to the caller's slot instead (see [`read`]).
pub(super) struct TopLevel<'a> {
    /// `apiVersion` (empty when absent).
    pub(super) api_version: Cow<'a, str>,
    /// `kind` (empty when absent).
    pub(super) kind: Cow<'a, str>,
}

/// Reads a whole body (already checked to be UTF-8); its `request` (absent or null: `None`)
/// into `request`. A request is some 460 bytes: returned inside the top level, it was copied
/// through each layer of results on the way out.
pub(super) fn read<'a>(
    text: &'a str,
    request: &mut Option<ReviewRequest<'a>>,
) -> Result<TopLevel<'a>, ReviewError> {
    let mut read_object =
        |scanner: &mut Scanner<'a>, _: Head<'_, 'a>| scanner.nullable(Scanner::object);
    let mut object = ObjectSlot {
        read: &mut read_object,
        value: Once::new(),
    };
    let top = read_with(text, request, &mut object).map_err(|e| *e)?;
    if let Some(request) = request {
        request.object = object.value.0.flatten();
    }
    Ok(top)
}

/// The common case of a checked workload, read straight into what admission uses of it, without
/// the pruned tree and its walk (see `review_scan_workload.rs`). `None` when the body is anything
/// else, or anything about it is unusual: then [`read`] reads and judges it.
pub(super) fn read_workload<'a>(
    text: &'a str,
    request: &mut Option<ReviewRequest<'a>>,
) -> Option<(TopLevel<'a>, WorkloadObject<'a>)> {
    let mut read_object =
        |scanner: &mut Scanner<'a>, head: Head<'_, 'a>| scanner.workload_object(&head);
    let mut object = ObjectSlot {
        read: &mut read_object,
        value: Once::new(),
    };
    let top = read_with(text, request, &mut object).ok()?;
    Some((top, object.value.0?))
}

/// Reads a whole body with `object`'s reader for the request's object.
fn read_with<'a, T>(
    text: &'a str,
    request: &mut Option<ReviewRequest<'a>>,
    object: &mut ObjectSlot<'_, 'a, T>,
) -> Result<TopLevel<'a>> {
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        remaining_depth: DEPTH_LIMIT,
        frames: Frames::default(),
    };
    let top = scanner.review(request, object)?;
    match scanner.peek() {
        None => Ok(top),
        Some(_) => Err(scanner.syntax("trailing characters")),
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

    /// The error of a primitive that stopped (the position is the primitive's).
    #[cold]
    #[inline(never)]
    fn stopped(&mut self, stop: Stop) -> Box<ReviewError> {
        self.pos = stop.at;
        match stop.what {
            Some(what) => self.syntax(what),
            None => self.eof(),
        }
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
        self.pos = after_whitespace(self.bytes, self.pos);
        self.bytes.get(self.pos).copied()
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
        self.pos = colon_end(self.bytes, self.pos).map_err(|stop| self.stopped(stop))?;
        Ok(())
    }

    /// `null`, `true` or `false`, starting at `pos`.
    #[inline(always)]
    fn word(&mut self, word: &'static [u8]) -> Result<()> {
        self.pos = word_end(self.bytes, self.pos, word).map_err(|stop| self.stopped(stop))?;
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
    /// escape.
    #[inline(always)]
    fn scan_string(&mut self) -> Result<bool> {
        let (end, escaped) = string_end(self.bytes, self.pos).map_err(|stop| self.stopped(stop))?;
        self.pos = end;
        Ok(escaped)
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

    /// A kept number, read by serde_json from its token.
    fn number(&mut self) -> Result<Value> {
        let start = self.pos;
        self.pos = number_end(self.bytes, start).map_err(|stop| self.stopped(stop))?;
        let token = self.text.get(start..self.pos).unwrap_or_default();
        serde_json::from_str::<Value>(token).map_err(|e| Self::delegated(e, start))
    }

    /// Skips one value, checking it as serde_json's `IgnoredAny` does (see [`skip_value_end`]).
    /// A string or a number (most skipped values) is scanned here, without the container walk.
    #[inline(always)]
    fn skip_value(&mut self) -> Result<()> {
        let scanned = match self.bytes.get(self.pos) {
            Some(b'"') => string_end(self.bytes, self.pos + 1).map(|(end, _)| end),
            Some(b'-' | b'0'..=b'9') => number_end(self.bytes, self.pos),
            _ => skip_value_end(self.bytes, self.pos, &mut self.frames),
        };
        self.pos = scanned.map_err(|stop| self.stopped(stop))?;
        Ok(())
    }

    /// The next key of a kept object (after `enter`), or `None` at its end (consumed).
    #[inline(always)]
    fn next_key(&mut self, first: &mut bool) -> Result<Option<Cow<'a, str>>> {
        if !self.key_ahead(first)? {
            return Ok(None);
        }
        self.text().map(Some)
    }

    /// [`Self::next_key`] as bytes, for a key that is only compared with field names: not
    /// sliced as text, which checks both ends for character boundaries.
    #[inline(always)]
    fn next_field(&mut self, first: &mut bool) -> Result<Option<Cow<'a, [u8]>>> {
        if !self.key_ahead(first)? {
            return Ok(None);
        }
        let start = self.pos;
        self.pos += 1;
        if !self.scan_string()? {
            return Ok(Some(Cow::Borrowed(
                self.bytes.get(start + 1..self.pos - 1).unwrap_or_default(),
            )));
        }
        let token = self.text.get(start..self.pos).unwrap_or_default();
        serde_json::from_str::<String>(token)
            .map(|key| Some(Cow::Owned(key.into_bytes())))
            .map_err(|e| Self::delegated(e, start))
    }

    /// Past the comma before the next key of a kept object: whether a key (its opening quote at
    /// `pos`) follows, or the object ends (its `}` consumed).
    #[inline(always)]
    fn key_ahead(&mut self, first: &mut bool) -> Result<bool> {
        let next = match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                return Ok(false);
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
            Some(b'"') => Ok(true),
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

/// Where a primitive of the scan stopped, and why (`None`: at the end of the body). The
/// primitives below work on a position they hold in a local, not on the scanner, so that the
/// position stays in a register through the loops (most of a review is skipped by them).
#[derive(Clone, Copy)]
struct Stop {
    at: usize,
    what: Option<&'static str>,
}

type Scan<T = usize> = std::result::Result<T, Stop>;

#[cold]
fn stop<T>(at: usize, what: &'static str) -> Scan<T> {
    Err(Stop {
        at,
        what: Some(what),
    })
}

#[cold]
fn end_of_body<T>(at: usize) -> Scan<T> {
    Err(Stop { at, what: None })
}

/// The first byte at or after `at` that is not JSON whitespace.
#[inline(always)]
fn after_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = bytes.get(at) {
        at += 1;
    }
    at
}

/// `word` (`null`, `true` or `false`) starting at `at`; the position after it.
#[inline(always)]
fn word_end(bytes: &[u8], at: usize, word: &'static [u8]) -> Scan {
    match bytes.get(at..at + word.len()) {
        Some(found) if found == word => Ok(at + word.len()),
        _ => word_mismatch(bytes, at, word),
    }
}

/// Where `word` stops matching: the first differing byte, or the end of the body.
#[cold]
#[inline(never)]
fn word_mismatch(bytes: &[u8], at: usize, word: &[u8]) -> Scan {
    for (offset, &expected) in word.iter().enumerate() {
        match bytes.get(at + offset) {
            Some(&byte) if byte == expected => {}
            Some(_) => return stop(at + offset, "expected `null`, `true` or `false`"),
            None => return end_of_body(at + offset),
        }
    }
    Ok(at + word.len())
}

/// From just after an opening quote: the position after the closing one, and whether the
/// string held an escape. Escapes are checked as serde_json checks skipped strings.
#[inline(always)]
fn string_end(bytes: &[u8], mut at: usize) -> Scan<(usize, bool)> {
    let mut escaped = false;
    loop {
        at = find_special(bytes, at);
        match bytes.get(at) {
            Some(b'"') => return Ok((at + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                at = escape_end(bytes, at)?;
            }
            Some(_) => return stop(at, "control character in a string"),
            None => return end_of_body(at),
        }
    }
}

/// One escape (`at` its backslash), checked; the position after it. Out of line: rare in
/// reviews, and every string scan would otherwise carry its code.
#[cold]
#[inline(never)]
fn escape_end(bytes: &[u8], at: usize) -> Scan {
    let at = at + 1;
    match bytes.get(at) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 1),
        Some(b'u') => match bytes.get(at + 1..at + 5) {
            Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => Ok(at + 5),
            Some(_) => stop(at + 1, "invalid escape"),
            None => end_of_body(at + 1),
        },
        Some(_) => stop(at, "invalid escape"),
        None => end_of_body(at),
    }
}

/// A number's grammar checked (`at` its `-` or first digit), as serde_json's skipping checks
/// it; the position after it.
#[inline(always)]
fn number_end(bytes: &[u8], mut at: usize) -> Scan {
    if bytes.get(at) == Some(&b'-') {
        at += 1;
    }
    match bytes.get(at) {
        Some(b'0') => {
            at += 1;
            if bytes.get(at).is_some_and(u8::is_ascii_digit) {
                return stop(at, "invalid number");
            }
        }
        Some(b'1'..=b'9') => at = digits_end(bytes, at + 1),
        _ => return stop(at, "invalid number"),
    }
    if bytes.get(at) == Some(&b'.') {
        let start = at + 1;
        at = digits_end(bytes, start);
        if at == start {
            return stop(at, "invalid number");
        }
    }
    if let Some(b'e' | b'E') = bytes.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = bytes.get(at) {
            at += 1;
        }
        let start = at;
        at = digits_end(bytes, start);
        if at == start {
            return stop(at, "invalid number");
        }
    }
    Ok(at)
}

#[inline(always)]
fn digits_end(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_digit) {
        at += 1;
    }
    at
}

/// A key of a skipped object and its colon (`at` the opening quote); the position after the
/// colon.
#[inline(always)]
fn key_end(bytes: &[u8], at: usize) -> Scan {
    let (at, _) = string_end(bytes, at + 1)?;
    colon_end(bytes, at)
}

/// The colon after a key (whitespace before it allowed); the position after it.
#[inline(always)]
fn colon_end(bytes: &[u8], at: usize) -> Scan {
    // Compact JSON (what the API server writes) has the colon right after the key.
    if bytes.get(at) == Some(&b':') {
        return Ok(at + 1);
    }
    let at = after_whitespace(bytes, at);
    match bytes.get(at) {
        Some(b':') => Ok(at + 1),
        Some(_) => stop(at, "expected `:`"),
        None => end_of_body(at),
    }
}

/// Skips one value from `at`, checking it as serde_json's `IgnoredAny` does; the position after
/// it. No depth limit: the open containers are a bit each in `frames`, not a recursion.
/// Whitespace is an arm of each dispatch rather than a scan before it: compact JSON has none, and
/// a separate check cost one compare chain per token.
fn skip_value_end(bytes: &[u8], mut at: usize, frames: &mut Frames) -> Scan {
    frames.clear();
    'value: loop {
        // One value.
        match bytes.get(at) {
            Some(b' ' | b'\n' | b'\t' | b'\r') => {
                at += 1;
                continue 'value;
            }
            Some(b'"') => at = string_end(bytes, at + 1)?.0,
            Some(b'{') => {
                at = after_whitespace(bytes, at + 1);
                match bytes.get(at) {
                    Some(b'}') => at += 1,
                    Some(b'"') => {
                        frames.push(true);
                        at = key_end(bytes, at)?;
                        continue 'value;
                    }
                    Some(_) => return stop(at, "expected a string key"),
                    None => return end_of_body(at),
                }
            }
            Some(b'[') => {
                at = after_whitespace(bytes, at + 1);
                match bytes.get(at) {
                    Some(b']') => at += 1,
                    Some(_) => {
                        frames.push(false);
                        continue 'value;
                    }
                    None => return end_of_body(at),
                }
            }
            Some(b'n') => at = word_end(bytes, at, b"null")?,
            Some(b't') => at = word_end(bytes, at, b"true")?,
            Some(b'f') => at = word_end(bytes, at, b"false")?,
            Some(b'-' | b'0'..=b'9') => at = number_end(bytes, at)?,
            Some(_) => return stop(at, "expected a value"),
            None => return end_of_body(at),
        }
        // After a value: close what ends here, then go on with the next element, if any.
        loop {
            let Some(in_object) = frames.innermost_is_object() else {
                return Ok(at);
            };
            match bytes.get(at) {
                Some(b' ' | b'\n' | b'\t' | b'\r') => at += 1,
                Some(b',') => {
                    at += 1;
                    if in_object {
                        at = next_key_end(bytes, at)?;
                    }
                    continue 'value;
                }
                Some(b'}') if in_object => {
                    at += 1;
                    frames.pop();
                }
                Some(b']') if !in_object => {
                    at += 1;
                    frames.pop();
                }
                Some(_) => return stop(at, "expected `,` or the container's end"),
                None => return end_of_body(at),
            }
        }
    }
}

/// A key of a skipped object after its comma (whitespace before it allowed) and its colon; the
/// position after the colon.
#[inline(always)]
fn next_key_end(bytes: &[u8], mut at: usize) -> Scan {
    loop {
        match bytes.get(at) {
            Some(b'"') => return key_end(bytes, at),
            Some(b' ' | b'\n' | b'\t' | b'\r') => at += 1,
            Some(_) => return stop(at, "expected a string key"),
            None => return end_of_body(at),
        }
    }
}

/// The first byte at or after `from` that ends a plain run of string text: `"`, `\` or a control
/// character (below 0x20); `bytes.len()` if none.
#[inline(always)]
pub(super) fn find_special(bytes: &[u8], mut from: usize) -> usize {
    loop {
        let at = find_below_0x23_or_backslash(bytes, from);
        match bytes.get(at) {
            // Space and `!` share the test below with `"`: rare in the strings of a review.
            Some(b' ' | b'!') => from = at + 1,
            _ => return at,
        }
    }
}

/// The first byte at or after `from` below 0x23 (control characters, space, `!`, `"`) or equal to
/// `\`; `bytes.len()` if none. Eight bytes at a time: in each word, such a byte sets its top bit
/// in the mask (borrows can only set bits above a true hit, so the lowest bit is exact). One
/// "below" test covers `"` and the control characters, two fewer operations per word than
/// testing them apart.
#[inline(always)]
fn find_below_0x23_or_backslash(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let below = word.wrapping_sub(ONES * 0x23) & !word;
        let mask = (below | backslash.wrapping_sub(ONES) & !backslash) & HIGHS;
        if mask != 0 {
            return at + (mask.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&byte) = bytes.get(at) {
        if byte < 0x23 || byte == b'\\' {
            return at;
        }
        at += 1;
    }
    at
}

#[path = "review_scan_structs.rs"]
mod structs;
#[path = "review_scan_workload.rs"]
mod workload;

use structs::{Head, ObjectSlot};
pub(super) use workload::WorkloadObject;

#[cfg(test)]
#[path = "review_scan_tests.rs"]
mod tests;
