//! HTTP/1 request framing, checked before hyper sees a byte.
//!
//! hyper's HTTP/1 server is lenient where a proxy must not be: given both
//! `Content-Length` and `Transfer-Encoding` it drops the length, reads the body
//! as chunked and forwards the request; and the header-size limit of the auto
//! builder (`max_buf_size`) is only checked between reads, so a 61 KiB head
//! that arrives at once goes through. [`FramingGuard`] wraps the client's
//! connection (under `TokioIo`) and follows the request stream:
//!
//! * each request head is held back until its blank line, at most `max_head`
//!   bytes (request line included), then checked: CRLF line endings only (no
//!   bare CR or LF), the grammar hyper's own parser (`httparse`) accepts (so no
//!   NUL or other control bytes, no obs-fold, token header names), at most
//!   [`MAX_HEADERS`] fields, a well-formed `Content-Length` (identical values
//!   if repeated), `Transfer-Encoding` ending in `chunked` and only on HTTP/1.1,
//!   and never both `Content-Length` and `Transfer-Encoding`;
//! * then exactly the head and its body go through: `Content-Length` bytes, or
//!   the chunks up to the last one and its trailers, with the same grammar
//!   hyper's chunked decoder accepts; then the next head is held back.
//!
//! A bad head never reaches hyper. Instead hyper is fed a short head of our
//! own that its parser refuses, so hyper itself answers `400 Bad Request` (or
//! `431 Request Header Fields Too Large`) and closes the connection. The answer
//! thus comes *after* the responses to earlier pipelined requests, which a
//! response written straight onto the socket could not guarantee, and nothing
//! of the bad request is forwarded. A chunked body whose framing breaks ends in
//! a read error: hyper aborts that request and closes.
//!
//! An HTTP/2 connection (the first head is the prior-knowledge preface) passes
//! through untouched.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most header fields a request may have (hyper's and Envoy's default);
/// more get 431.
pub(crate) const MAX_HEADERS: usize = 100;

/// The read buffer's size once a read must go into it; it grows only for
/// heads that need it.
const INITIAL_BUFFER: usize = 8 * 1024;

/// Reads go straight into hyper's buffer only when it has this much room.
/// hyper reads with 8 KiB or more; hyper-util's first read of a connection
/// asks for 24 bytes (to tell HTTP/2's preface from an HTTP/1 head), and a
/// head read into so little room would wait in our buffer anyway, after a
/// second read.
const DIRECT_MIN: usize = 1024;

/// How much of a refused client's pending input is read and dropped before the
/// connection closes, so that closing with unread data (which makes the
/// kernel send RST) does not destroy the error response.
const DRAIN_LIMIT: usize = 256 * 1024;

/// The HTTP/2 connection preface, up to the end of its HTTP/1-looking head.
const H2_PREFACE_HEAD: &[u8] = b"PRI * HTTP/2.0\r\n\r\n";

/// The rest of the HTTP/2 connection preface.
const H2_PREFACE_TAIL: &[u8] = b"SM\r\n\r\n";

/// Fed to hyper to make it answer 400: a NUL cannot start a method.
static REFUSE_BAD_REQUEST: &[u8] = b"\0\r\n\r\n";

/// How many empty fields [`REFUSE_TOO_LARGE`] carries: more than hyper's
/// `max_headers` (default 100).
const FILLER_FIELDS: usize = 1024;

/// The request line of [`REFUSE_TOO_LARGE`].
const FILLER_REQUEST_LINE: &[u8] = b"GET / HTTP/1.1\r\n";

/// One empty field of [`REFUSE_TOO_LARGE`].
const FILLER_FIELD: &[u8] = b"a:\r\n";

/// The length of [`REFUSE_TOO_LARGE`].
const REFUSE_TOO_LARGE_LEN: usize =
    FILLER_REQUEST_LINE.len() + FILLER_FIELDS * FILLER_FIELD.len() + REFUSE_BAD_REQUEST.len();

/// Fed to hyper to make it answer 431: more fields than hyper accepts (its
/// "too many headers" is a 431). Should hyper ever be set to accept more, the
/// NUL that follows them still gets a 400: never a request.
static REFUSE_TOO_LARGE: [u8; REFUSE_TOO_LARGE_LEN] = too_many_fields();

/// Builds [`REFUSE_TOO_LARGE`].
const fn too_many_fields() -> [u8; REFUSE_TOO_LARGE_LEN] {
    let mut out = [0u8; REFUSE_TOO_LARGE_LEN];
    let mut at = 0;
    let mut i = 0;
    while i < FILLER_REQUEST_LINE.len() {
        out[at] = FILLER_REQUEST_LINE[i];
        at += 1;
        i += 1;
    }
    let mut field = 0;
    while field < FILLER_FIELDS {
        let mut i = 0;
        while i < FILLER_FIELD.len() {
            out[at] = FILLER_FIELD[i];
            at += 1;
            i += 1;
        }
        field += 1;
    }
    let mut i = 0;
    while i < REFUSE_BAD_REQUEST.len() {
        out[at] = REFUSE_BAD_REQUEST[i];
        at += 1;
        i += 1;
    }
    out
}

/// Why a request head is refused, and with which status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reject {
    /// 400: the head is malformed or its framing is ambiguous.
    BadRequest(&'static str),
    /// 431: the head is over the size limit or has too many fields.
    TooLarge(&'static str),
}

impl Reject {
    /// What hyper is fed so that it answers with this rejection's status.
    fn refusal(self) -> &'static [u8] {
        match self {
            Reject::BadRequest(_) => REFUSE_BAD_REQUEST,
            Reject::TooLarge(_) => &REFUSE_TOO_LARGE,
        }
    }

    /// The reason, for the log.
    fn reason(self) -> &'static str {
        match self {
            Reject::BadRequest(reason) | Reject::TooLarge(reason) => reason,
        }
    }
}

/// What follows a valid head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// A body of this many bytes (0: none).
    Sized(u64),
    /// A chunked body.
    Chunked,
    /// The head was the start of the HTTP/2 preface.
    H2Preface,
}

/// Checks a complete request head (`head` ends with its blank line). `first`
/// says whether it is the connection's first, the only one that may be the
/// HTTP/2 preface.
fn check_head(head: &[u8], first: bool) -> Result<Next, Reject> {
    if first && head == H2_PREFACE_HEAD {
        return Ok(Next::H2Preface);
    }
    // Left uninitialised, as hyper does: httparse writes the fields it
    // parses (initialising 100 empty ones cost more than the parse).
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(head, &mut fields) {
        Ok(httparse::Status::Complete(len)) if len == head.len() => {}
        Ok(_) => return Err(Reject::BadRequest("malformed request head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Reject::TooLarge("too many header fields"));
        }
        Err(httparse::Error::HeaderValue) => {
            return Err(Reject::BadRequest("invalid byte in a header value"));
        }
        Err(httparse::Error::HeaderName) => {
            return Err(Reject::BadRequest("invalid header name"));
        }
        Err(_) => return Err(Reject::BadRequest("malformed request line")),
    }
    body_framing(request.headers, request.version == Some(0))
}

/// Works out how the body is framed from the header fields, refusing what is
/// ambiguous.
fn body_framing(fields: &[httparse::Header<'_>], http10: bool) -> Result<Next, Reject> {
    let mut length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    for field in fields {
        if field.name.eq_ignore_ascii_case("content-length") {
            for item in field.value.split(|&b| b == b',') {
                let value = parse_length(trim_ows(item))
                    .ok_or(Reject::BadRequest("malformed content-length"))?;
                if length.is_some_and(|seen| seen != value) {
                    return Err(Reject::BadRequest("differing content-lengths"));
                }
                length = Some(value);
            }
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            if http10 {
                return Err(Reject::BadRequest("transfer-encoding in HTTP/1.0"));
            }
            transfer_encoding = true;
            for coding in field.value.split(|&b| b == b',').map(trim_ows) {
                if coding.is_empty() {
                    continue;
                }
                if chunked {
                    return Err(Reject::BadRequest("chunked is not the final coding"));
                }
                chunked = coding.eq_ignore_ascii_case(b"chunked");
            }
        }
    }
    match (transfer_encoding, length) {
        (true, Some(_)) => Err(Reject::BadRequest(
            "both content-length and transfer-encoding",
        )),
        (true, None) if chunked => Ok(Next::Chunked),
        (true, None) => Err(Reject::BadRequest("transfer-encoding is not chunked")),
        (false, length) => Ok(Next::Sized(length.unwrap_or(0))),
    }
}

/// A `Content-Length` value: 1*DIGIT, no sign, no overflow.
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Trims optional whitespace (SP, HTAB) from both ends.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Follows a request head as it arrives, to find its end.
#[derive(Clone, Copy, Debug, Default)]
struct HeadScan {
    /// Bytes of the head scanned so far.
    scanned: usize,
    /// The last byte scanned was a CR.
    after_cr: bool,
    /// The current line has content.
    line_has_content: bool,
    /// The request line has been seen (empty lines before it are skipped).
    started: bool,
}

impl HeadScan {
    /// Scans on through `head` (all of the head so far, of which the first
    /// `self.scanned` bytes were seen before), looking at no more than `max`
    /// bytes in all. Returns the head's length once its blank line is in.
    fn scan(&mut self, head: &[u8], max: usize) -> Result<Option<usize>, Reject> {
        let upto = head.len().min(max);
        while self.scanned < upto {
            if !self.after_cr {
                // Everything up to the next CR or LF is line content: skip
                // it a word at a time rather than byte by byte.
                let rest = &head[self.scanned..upto];
                let n = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                if n > 0 {
                    self.line_has_content = true;
                    self.scanned += n;
                    continue;
                }
            }
            let b = head[self.scanned];
            self.scanned += 1;
            if self.after_cr {
                if b != b'\n' {
                    return Err(Reject::BadRequest("bare CR in the request head"));
                }
                self.after_cr = false;
                if self.line_has_content {
                    self.started = true;
                    self.line_has_content = false;
                } else if self.started {
                    return Ok(Some(self.scanned));
                }
            } else if b == b'\r' {
                self.after_cr = true;
            } else if b == b'\n' {
                return Err(Reject::BadRequest("bare LF in the request head"));
            } else {
                self.line_has_content = true;
            }
        }
        if self.scanned >= max {
            return Err(Reject::TooLarge("request head over the size limit"));
        }
        Ok(None)
    }
}

/// Where a chunked body is (RFC 9112 §7.1, as hyper decodes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Before a chunk size's first digit.
    Start,
    /// In a chunk size.
    Size,
    /// In whitespace after the size.
    SizeSpace,
    /// In a chunk extension.
    Extension,
    /// After the size line's CR.
    SizeLf,
    /// In chunk data.
    Data,
    /// After chunk data, before its CR.
    DataCr,
    /// After chunk data's CR.
    DataLf,
    /// At the start of a trailer line or the final blank line.
    TrailerStart,
    /// In a trailer line.
    Trailer,
    /// After a trailer line's CR.
    TrailerLf,
    /// After the final blank line's CR.
    EndLf,
    /// After the body.
    Done,
}

/// Follows a chunked body to its end.
#[derive(Clone, Copy, Debug)]
struct ChunkScan {
    /// Where in the body.
    state: Chunk,
    /// The current chunk's size, then how much of its data is left.
    size: u64,
}

impl Default for ChunkScan {
    fn default() -> Self {
        ChunkScan {
            state: Chunk::Start,
            size: 0,
        }
    }
}

impl ChunkScan {
    /// Follows `bytes`; returns how many of them belong to the body, and
    /// whether the body is over (`Ok(true)`), goes on (`Ok(false)`), or broke
    /// its framing right after the bytes counted (`Err`).
    fn feed(&mut self, bytes: &[u8]) -> (usize, Result<bool, &'static str>) {
        let mut at = 0;
        while at < bytes.len() {
            if self.state == Chunk::Done {
                return (at, Ok(true));
            }
            if self.state == Chunk::Data {
                let left = bytes.len() - at;
                let take = usize::try_from(self.size).map_or(left, |size| size.min(left));
                at += take;
                // `take` ≤ `self.size`, so this cannot underflow.
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = Chunk::DataCr;
                }
                continue;
            }
            match self.step(bytes[at]) {
                Ok(()) => at += 1,
                Err(reason) => return (at, Err(reason)),
            }
        }
        (at, Ok(self.state == Chunk::Done))
    }

    /// Takes one byte outside chunk data.
    fn step(&mut self, b: u8) -> Result<(), &'static str> {
        self.state = match (self.state, b) {
            (Chunk::Start | Chunk::Size, b) if b.is_ascii_hexdigit() => {
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|n| n.checked_add(hex_value(b)))
                    .ok_or("chunk size overflows")?;
                Chunk::Size
            }
            (Chunk::Size | Chunk::SizeSpace, b' ' | b'\t') => Chunk::SizeSpace,
            (Chunk::Size | Chunk::SizeSpace | Chunk::Extension, b';') => Chunk::Extension,
            (Chunk::Size | Chunk::SizeSpace | Chunk::Extension, b'\r') => Chunk::SizeLf,
            (Chunk::Extension, b'\n' | b'\0') => return Err("invalid byte in a chunk extension"),
            (Chunk::Extension, _) => Chunk::Extension,
            (Chunk::SizeLf, b'\n') if self.size == 0 => Chunk::TrailerStart,
            (Chunk::SizeLf, b'\n') => Chunk::Data,
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::Start,
            (Chunk::TrailerStart, b'\r') => Chunk::EndLf,
            (Chunk::TrailerStart | Chunk::Trailer, b'\n') => return Err("bare LF in trailers"),
            (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
            (Chunk::TrailerStart | Chunk::Trailer, _) => Chunk::Trailer,
            (Chunk::TrailerLf, b'\n') => Chunk::TrailerStart,
            (Chunk::EndLf, b'\n') => Chunk::Done,
            _ => return Err("malformed chunked body"),
        };
        Ok(())
    }
}

/// A hex digit's value (`b` is one).
fn hex_value(b: u8) -> u64 {
    char::from(b).to_digit(16).map_or(0, u64::from)
}

/// Where the request stream is.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Holding back a request head.
    Head(HeadScan),
    /// Letting through this many more body bytes.
    Sized(u64),
    /// Letting through a chunked body.
    Chunked(ChunkScan),
    /// The HTTP/2 preface's head is held back (still pending) until the rest
    /// of the preface is in.
    Preface,
    /// HTTP/2: everything goes through.
    Tunnel,
    /// Feeding hyper the refusal (this many bytes of it sent); the client's
    /// input is no longer read.
    Refused(Reject, usize),
    /// A chunked body broke its framing: reads fail.
    Broken(&'static str),
}

/// What checking pending bytes came to.
#[derive(Debug)]
enum Step {
    /// This many pending bytes may go to hyper; then the stream is in this
    /// phase (if it changed).
    Release(usize, Option<Phase>),
    /// The head is refused.
    Refuse(Reject),
}

/// A client connection whose HTTP/1 requests are let through only once their
/// framing is checked (see the module docs).
#[derive(Debug)]
pub(crate) struct FramingGuard<T> {
    /// The client connection.
    io: T,
    /// Bytes read from `io`: `buf[start..end]` is pending, of which the first
    /// `ready` are checked and may go to hyper. Reads go straight into
    /// hyper's buffer while nothing is pending (see [`DIRECT_MIN`]); this one
    /// is made only when read bytes must wait (part of a head, what follows
    /// the bytes that may go through, a read into little room), and given
    /// back once emptied, so a connection whose requests arrive whole holds
    /// none. It is as large as the bytes that wait (at most hyper's read
    /// room) or grows (zero-filled, once) for a head up to the head limit.
    buf: Vec<u8>,
    /// Start of the pending bytes.
    start: usize,
    /// End of the pending bytes.
    end: usize,
    /// Pending bytes that are checked.
    ready: usize,
    /// Where the stream is.
    phase: Phase,
    /// No request head has been let through yet.
    first: bool,
    /// The most bytes a request head may have.
    max_head: usize,
    /// How long a request head may take (see
    /// [`with_head_timeout`](Self::with_head_timeout)).
    head_timeout: Option<std::time::Duration>,
    /// When the head being timed must be complete; polled only while
    /// `timing`.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A head is being timed: the first from the connection's start, each
    /// later one from its first byte.
    timing: bool,
    /// How long the connection may idle between requests (see
    /// [`with_idle_timeout`](Self::with_idle_timeout)).
    idle_timeout: Option<std::time::Duration>,
    /// Since when the connection has been idle between requests.
    idle_since: Option<tokio::time::Instant>,
    /// Bytes of an answer were written since the last request bytes were
    /// let through: only then can the connection be idle. (Before, hyper's
    /// reads while a request waits for its upstream look like idleness.)
    answered: bool,
    /// Every read goes through our buffer (tests compare the two ways).
    #[cfg(test)]
    buffered_only: bool,
}

impl<T> FramingGuard<T> {
    /// Guards `io`, allowing request heads of up to `max_head` bytes.
    pub(crate) fn new(io: T, max_head: usize) -> Self {
        FramingGuard {
            io,
            buf: Vec::new(),
            start: 0,
            end: 0,
            ready: 0,
            phase: Phase::Head(HeadScan::default()),
            first: true,
            max_head: max_head.max(H2_PREFACE_HEAD.len()),
            head_timeout: None,
            deadline: None,
            timing: false,
            idle_timeout: None,
            idle_since: None,
            answered: false,
            #[cfg(test)]
            buffered_only: false,
        }
    }

    /// Closes the connection (a read error) if a request head is not
    /// complete within `timeout`: the first head (or the HTTP/2 preface)
    /// from now, each later head from its first byte. An idle keep-alive
    /// connection between requests is not timed (hyper's
    /// `header_read_timeout` would close it after `timeout` of quiet, and
    /// its caller would then pay a new connection, or a TLS handshake, for
    /// its next request). A head that arrives whole in one read arms no
    /// timer. Needs a tokio runtime with time enabled.
    pub(crate) fn with_head_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.head_timeout = Some(timeout);
        self.deadline = Some(Box::pin(tokio::time::sleep(timeout)));
        self.timing = true;
        self
    }

    /// Closes an HTTP/1 keep-alive connection idle between requests for
    /// `timeout` (Envoy's `idle_timeout`). The timer is set once and moved
    /// only when it fires early, not at every request.
    pub(crate) fn with_idle_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Waits out an idle keep-alive connection, closing it (an error) once
    /// it has been idle for the idle timeout.
    fn wait_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(timeout) = self.idle_timeout.filter(|_| self.answered) else {
            return Ok(());
        };
        let now = tokio::time::Instant::now();
        let until = *self.idle_since.get_or_insert(now) + timeout;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        // Set for an earlier idle period or head, it fires early at worst:
        // then it is moved to this idle period's end.
        if deadline.as_mut().poll(cx).is_ready() {
            if now >= until {
                tracing::debug!("idle keep-alive connection; closing");
                return Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout"));
            }
            deadline.as_mut().reset(until);
            let _ = deadline.as_mut().poll(cx);
        }
        Ok(())
    }

    /// An answer is on its way: idleness counts from its last byte.
    fn wrote(&mut self) {
        self.answered = true;
        self.idle_since = None;
    }

    /// Starts timing a head whose first bytes are in but not its end.
    fn time_head(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(timeout) = self.head_timeout else {
            return Ok(());
        };
        let at = tokio::time::Instant::now() + timeout;
        match &mut self.deadline {
            Some(deadline) => deadline.as_mut().reset(at),
            None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.timing = true;
        self.check_deadline(cx)
    }

    /// A timed head past its deadline is an error; polling registers the
    /// wake-up.
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.timing
            && let Some(deadline) = &mut self.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            tracing::debug!("no complete request head in time; closing");
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head timeout",
            ));
        }
        Ok(())
    }

    /// Copies checked bytes to `out`.
    fn deliver(&mut self, out: &mut ReadBuf<'_>) {
        let n = self.ready.min(out.remaining());
        out.put_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        self.ready -= n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            // Emptied: the reads after it go straight into hyper's buffer
            // (a connection idle between requests keeps no buffer of ours).
            self.buf = Vec::new();
        }
    }

    /// Checks pending bytes, moving `ready` on or changing phase. Returns
    /// whether it got anywhere; if not, more input is needed.
    fn check_pending(&mut self) -> bool {
        let step = judge(
            &mut self.phase,
            self.first,
            self.max_head,
            &self.buf[self.start..self.end],
        );
        self.apply(step)
    }

    /// Takes in what [`judge`] decided: `ready` moves on, or the head is
    /// refused. Returns whether it got anywhere.
    fn apply(&mut self, step: Step) -> bool {
        match step {
            Step::Release(len, then) => {
                self.ready = len;
                if len > 0 {
                    // A head is through (or the body after it): stop timing,
                    // and the request is not answered yet.
                    self.first = false;
                    self.timing = false;
                    self.answered = false;
                }
                let moved = then.is_some();
                if let Some(phase) = then {
                    self.phase = phase;
                }
                len > 0 || moved
            }
            Step::Refuse(reject) => {
                self.refuse(reject);
                true
            }
        }
    }

    /// Keeps `rest`, read but not let through, as the pending bytes (the
    /// buffer is empty): made or grown only now, so a connection whose
    /// requests each arrive whole holds no buffer.
    fn stash(&mut self, rest: &[u8]) {
        if self.buf.len() < rest.len() {
            self.buf.resize(rest.len().max(INITIAL_BUFFER), 0);
        }
        self.buf[..rest.len()].copy_from_slice(rest);
        self.start = 0;
        self.end = rest.len();
    }

    /// Whether a read into `room` bytes of hyper's buffer may go straight
    /// there: nothing is pending, the room is at least [`DIRECT_MIN`], and
    /// the phase judges bytes where they lie (a head, a body).
    fn reads_direct(&self, room: usize) -> bool {
        #[cfg(test)]
        if self.buffered_only {
            return false;
        }
        self.start == self.end
            && room >= DIRECT_MIN
            && matches!(
                self.phase,
                Phase::Head(_) | Phase::Sized(_) | Phase::Chunked(_)
            )
    }

    /// Stops reading the client and starts feeding hyper the refusal.
    fn refuse(&mut self, reject: Reject) {
        tracing::debug!(reason = reject.reason(), "request head refused");
        self.phase = Phase::Refused(reject, 0);
        self.start = 0;
        self.end = 0;
        self.ready = 0;
    }

    /// Makes room after `end` for more input: moves pending bytes to the front,
    /// or grows the buffer (up to the head limit).
    fn make_room(&mut self) {
        if self.end < self.buf.len() {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            return;
        }
        let cap = self.max_head.max(INITIAL_BUFFER);
        let grown = (self.buf.len() * 2).clamp(INITIAL_BUFFER, cap);
        if grown > self.buf.len() {
            self.buf.resize(grown, 0);
        }
    }
}

/// What the pending bytes (all of them, from their start) come to in
/// `phase`: how many may go to hyper, and the phase after them.
fn judge(phase: &mut Phase, first: bool, max_head: usize, pending: &[u8]) -> Step {
    match phase {
        Phase::Head(scan) => match scan.scan(pending, max_head) {
            Ok(None) => Step::Release(0, None),
            Ok(Some(len)) => match check_head(&pending[..len], first) {
                // Held back until the rest of the preface is in.
                Ok(Next::H2Preface) => Step::Release(0, Some(Phase::Preface)),
                Ok(Next::Sized(0)) => Step::Release(len, Some(Phase::Head(HeadScan::default()))),
                Ok(Next::Sized(n)) => Step::Release(len, Some(Phase::Sized(n))),
                Ok(Next::Chunked) => Step::Release(len, Some(Phase::Chunked(ChunkScan::default()))),
                Err(reject) => Step::Refuse(reject),
            },
            Err(reject) => Step::Refuse(reject),
        },
        Phase::Sized(left) => {
            let n = usize::try_from(*left).map_or(pending.len(), |l| l.min(pending.len()));
            // `n` ≤ `left`.
            let left = *left - n as u64;
            let then = if left == 0 {
                Phase::Head(HeadScan::default())
            } else {
                Phase::Sized(left)
            };
            Step::Release(n, Some(then))
        }
        Phase::Chunked(scan) => match scan.feed(pending) {
            (n, Ok(true)) => Step::Release(n, Some(Phase::Head(HeadScan::default()))),
            (n, Ok(false)) => Step::Release(n, None),
            (n, Err(reason)) => {
                tracing::debug!(reason, "chunked request body refused");
                Step::Release(n, Some(Phase::Broken(reason)))
            }
        },
        Phase::Preface => {
            let tail = &pending[H2_PREFACE_HEAD.len()..];
            let n = tail.len().min(H2_PREFACE_TAIL.len());
            if tail[..n] != H2_PREFACE_TAIL[..n] {
                Step::Refuse(Reject::BadRequest("broken HTTP/2 preface"))
            } else if n == H2_PREFACE_TAIL.len() {
                Step::Release(H2_PREFACE_HEAD.len() + n, Some(Phase::Tunnel))
            } else {
                Step::Release(0, None)
            }
        }
        Phase::Tunnel => Step::Release(pending.len(), None),
        Phase::Refused(..) | Phase::Broken(_) => Step::Release(0, None),
    }
}

impl<T: AsyncRead + Unpin> FramingGuard<T> {
    /// Reads more of the client's input; `Ok(0)` at its end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.make_room();
        let mut into = ReadBuf::new(&mut self.buf[self.end..]);
        if into.remaining() == 0 {
            // Unreachable: a full buffer holds a head over the limit, refused.
            return Poll::Ready(Err(io::Error::other("framing buffer full")));
        }
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut into))?;
        let n = into.filled().len();
        self.end += n;
        Poll::Ready(Ok(n))
    }

    /// Reads and drops what a refused client has already sent, up to
    /// [`DRAIN_LIMIT`], without waiting for more.
    fn drain(&mut self, cx: &mut Context<'_>) {
        let mut scratch = [0u8; 4096];
        let mut drained = 0;
        while drained < DRAIN_LIMIT {
            let mut into = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.io).poll_read(cx, &mut into) {
                Poll::Ready(Ok(())) if !into.filled().is_empty() => drained += into.filled().len(),
                _ => return,
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FramingGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        this.check_deadline(cx)?;
        loop {
            if this.ready > 0 {
                this.deliver(out);
                return Poll::Ready(Ok(()));
            }
            match &mut this.phase {
                Phase::Refused(reject, sent) => {
                    let rest = &reject.refusal()[*sent..];
                    let n = rest.len().min(out.remaining());
                    out.put_slice(&rest[..n]);
                    *sent += n;
                    // Once all is sent, this reads as the end of input.
                    return Poll::Ready(Ok(()));
                }
                Phase::Broken(reason) => {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, *reason)));
                }
                Phase::Tunnel if this.start == this.end => {
                    // HTTP/2 needs no checks: read straight into hyper's buffer.
                    this.buf = Vec::new();
                    return Pin::new(&mut this.io).poll_read(cx, out);
                }
                _ => {}
            }
            if this.start < this.end && this.check_pending() {
                continue;
            }
            if this.reads_direct(out.remaining()) {
                // Nothing pending: read into hyper's buffer and judge the
                // bytes there. What may go through stays; the rest moves to
                // ours. A request that arrives whole is copied once, and an
                // idle connection holds no buffer of ours.
                let before = out.filled().len();
                if Pin::new(&mut this.io).poll_read(cx, out)?.is_pending() {
                    if !this.timing && matches!(this.phase, Phase::Head(_)) {
                        // Between requests.
                        this.wait_idle(cx)?;
                    }
                    return Poll::Pending;
                }
                let Some(read) = out.filled().get(before..) else {
                    return Poll::Ready(Err(io::Error::other(
                        "the connection's read shrank the bytes already read",
                    )));
                };
                if read.is_empty() {
                    // The client is gone.
                    return Poll::Ready(Ok(()));
                }
                this.idle_since = None;
                let step = judge(&mut this.phase, this.first, this.max_head, read);
                let (through, keep_rest) = match &step {
                    // Nothing after a refused head or a broken body is read.
                    Step::Refuse(_) => (0, false),
                    Step::Release(len, Some(Phase::Broken(_))) => (*len, false),
                    Step::Release(len, _) => (*len, true),
                };
                let rest = &out.filled()[before + through..];
                if keep_rest && !rest.is_empty() {
                    this.stash(rest);
                }
                out.set_filled(before + through);
                this.apply(step);
                // Those bytes are in `out` already.
                this.ready = 0;
                if through > 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            match this.poll_fill(cx)? {
                // The client is gone; a partial head is never let through.
                Poll::Ready(0) => return Poll::Ready(Ok(())),
                Poll::Ready(_) => this.idle_since = None,
                Poll::Pending => {
                    if !this.timing && matches!(this.phase, Phase::Head(_)) {
                        if this.start < this.end {
                            // Part of a head is in and the rest awaited:
                            // from now on it is timed.
                            this.time_head(cx)?;
                        } else {
                            // Between requests.
                            this.wait_idle(cx)?;
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<T: AsyncWrite + AsyncRead + Unpin> AsyncWrite for FramingGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.io).poll_write(cx, buf));
        this.wrote();
        Poll::Ready(written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs));
        this.wrote();
        Poll::Ready(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
        if matches!(this.phase, Phase::Refused(..)) {
            this.drain(cx);
        }
        Poll::Ready(Ok(()))
    }
}

/// Runs a [`FramingGuard`] over `input` as a client would send it, in reads
/// of a size taken from the first byte, and returns what the guard passes on
/// to hyper, or `None` if it never came to an end. For the fuzz target and its
/// seed-corpus test: the oracle is that it never panics, always ends, and never
/// passes on more than it was given plus one refusal of our own
/// ([`fuzz_guard_bound`]).
#[doc(hidden)]
pub fn fuzz_guard(input: &[u8]) -> Option<Vec<u8>> {
    /// Plays `data` back in reads of at most `step` bytes.
    struct Pieces<'a> {
        data: &'a [u8],
        step: usize,
    }
    impl AsyncRead for Pieces<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self.step.min(self.data.len()).min(out.remaining());
            out.put_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Poll::Ready(Ok(()))
        }
    }
    let (step, data) = match input.split_first() {
        Some((&s, rest)) => (usize::from(s).max(1), rest),
        None => (1, input),
    };
    // A small head limit so that the 431 path is reachable by the fuzzer.
    let max_head = 64 + step * 16;
    let mut guard = FramingGuard::new(Pieces { data, step }, max_head);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut out = Vec::new();
    let mut scratch = [0u8; 512];
    // Every read makes progress or ends: each returns at least one byte, or
    // the end (0 bytes), or an error, so this is bounded by the input length.
    let bound = data.len() + REFUSE_TOO_LARGE_LEN + 2;
    for _ in 0..bound {
        let mut buf = ReadBuf::new(&mut scratch);
        match Pin::new(&mut guard).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => return Some(out),
            Poll::Ready(Ok(())) => out.extend_from_slice(buf.filled()),
            Poll::Ready(Err(_)) | Poll::Pending => return Some(out),
        }
    }
    None
}

/// The most [`fuzz_guard`] may pass on for an input of `len` bytes.
#[doc(hidden)]
pub fn fuzz_guard_bound(len: usize) -> usize {
    len + REFUSE_TOO_LARGE_LEN
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::VecDeque;
    use std::task::Waker;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    /// A client connection playing back `chunks`, one per read, with a
    /// `Pending` before each when `stall` is set; it records what is written.
    #[derive(Debug, Default)]
    struct Script {
        chunks: VecDeque<Vec<u8>>,
        stall: bool,
        stalled: bool,
        written: Vec<u8>,
        shut: bool,
        /// Out of chunks, wait (a keep-alive client) instead of closing.
        quiet_at_end: bool,
    }

    impl Script {
        fn new(chunks: impl IntoIterator<Item = Vec<u8>>, stall: bool) -> Self {
            Script {
                chunks: chunks.into_iter().collect(),
                stall,
                ..Script::default()
            }
        }
    }

    impl AsyncRead for Script {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.stall && !self.stalled {
                self.stalled = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.stalled = false;
            if self.chunks.is_empty() && self.quiet_at_end {
                return Poll::Pending;
            }
            if let Some(mut chunk) = self.chunks.pop_front() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                if n < chunk.len() {
                    self.chunks.push_front(chunk.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Script {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    /// Reads `guard` to its end as hyper would, `read_sizes` bytes at a time
    /// (cycling): what hyper gets, and the read error that ended it, if any.
    fn read_all(
        guard: &mut FramingGuard<Script>,
        read_sizes: &[usize],
    ) -> (Vec<u8>, Option<io::Error>) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut got = Vec::new();
        let mut pendings = 0;
        for size in read_sizes.iter().cycle() {
            let mut space = vec![0u8; *size];
            let mut buf = ReadBuf::new(&mut space);
            match Pin::new(&mut *guard).poll_read(&mut cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return (got, None),
                Poll::Ready(Ok(())) => got.extend_from_slice(buf.filled()),
                Poll::Ready(Err(e)) => return (got, Some(e)),
                Poll::Pending => {
                    pendings += 1;
                    assert!(pendings < 1_000_000, "never ends");
                }
            }
        }
        unreachable!()
    }

    #[tokio::test(start_paused = true)]
    async fn idleness_counts_from_the_answer_not_from_the_request() {
        let mut io = Script::new([b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()], false);
        io.quiet_at_end = true;
        let mut guard = FramingGuard::new(io, 1024)
            .with_head_timeout(Duration::from_secs(10))
            .with_idle_timeout(Duration::from_secs(2));
        let mut cx = Context::from_waker(Waker::noop());
        let mut space = [0u8; 256];
        let mut read = |guard: &mut FramingGuard<Script>| {
            let mut buf = ReadBuf::new(&mut space);
            match Pin::new(guard).poll_read(&mut cx, &mut buf) {
                Poll::Ready(Ok(())) => Some(Ok(buf.filled().len())),
                Poll::Ready(Err(e)) => Some(Err(e.kind())),
                Poll::Pending => None,
            }
        };
        assert!(matches!(read(&mut guard), Some(Ok(n)) if n > 0));
        // The request waits for its upstream far longer than the idle
        // timeout, while hyper keeps reading: not idle.
        assert_eq!(read(&mut guard), None);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(read(&mut guard), None, "closed while the request waited");
        // The answer goes out; from then on, 2 s of quiet close it.
        let mut wcx = Context::from_waker(Waker::noop());
        assert!(
            Pin::new(&mut guard)
                .poll_write(&mut wcx, b"HTTP/1.1 200 OK\r\n\r\n")
                .is_ready()
        );
        assert_eq!(read(&mut guard), None);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(read(&mut guard), None, "closed before its idle timeout");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(read(&mut guard), Some(Err(io::ErrorKind::TimedOut)));
    }

    #[test]
    fn requests_that_arrive_whole_go_through_without_a_buffer_of_ours() {
        let get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        let post = b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc".to_vec();
        let mut io = Script::new([get.clone(), get.clone()], false);
        io.quiet_at_end = true;
        let mut guard = FramingGuard::new(io, 1024);
        let mut cx = Context::from_waker(Waker::noop());
        let mut read = |guard: &mut FramingGuard<Script>| {
            let mut space = [0u8; 8192];
            let mut buf = ReadBuf::new(&mut space);
            match Pin::new(guard).poll_read(&mut cx, &mut buf) {
                Poll::Ready(Ok(())) => Some(buf.filled().to_vec()),
                Poll::Ready(Err(e)) => panic!("{e}"),
                Poll::Pending => None,
            }
        };
        assert_eq!(read(&mut guard), Some(get.clone()));
        assert_eq!(read(&mut guard), Some(get.clone()));
        assert_eq!(read(&mut guard), None, "idle");
        assert_eq!(
            guard.buf.capacity(),
            0,
            "an idle connection holds no buffer"
        );

        // Two requests in one read: the first goes through where it was
        // read, the second waits in our buffer until its turn.
        let mut both = get.clone();
        both.extend_from_slice(&post);
        let mut io = Script::new([both], false);
        io.quiet_at_end = true;
        let mut guard = FramingGuard::new(io, 1024);
        assert_eq!(read(&mut guard), Some(get.clone()));
        assert!(guard.buf.capacity() > 0);
        let mut rest = Vec::new();
        while let Some(bytes) = read(&mut guard) {
            rest.extend_from_slice(&bytes);
        }
        assert_eq!(rest, post);

        // hyper-util's first read asks for 24 bytes (to tell HTTP/2's
        // preface): it goes through our buffer, given back once the head is
        // through.
        let mut io = Script::new([get.clone(), get.clone()], false);
        io.quiet_at_end = true;
        let mut guard = FramingGuard::new(io, 1024);
        let mut first = [0u8; 24];
        let mut buf = ReadBuf::new(&mut first);
        let mut first_cx = Context::from_waker(Waker::noop());
        assert!(
            Pin::new(&mut guard)
                .poll_read(&mut first_cx, &mut buf)
                .is_ready()
        );
        assert_eq!(buf.filled(), &get[..24]);
        assert_eq!(guard.buf.len(), INITIAL_BUFFER);
        assert_eq!(read(&mut guard), Some(get[24..].to_vec()));
        assert_eq!(guard.buf.capacity(), 0, "given back once emptied");
        assert_eq!(read(&mut guard), Some(get.clone()));
        assert_eq!(read(&mut guard), None);
        assert_eq!(guard.buf.capacity(), 0);
    }

    #[test]
    fn bytes_already_in_hypers_buffer_stay_and_only_judged_bytes_follow() {
        let cases: [(&[u8], &[u8]); 3] = [
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            ),
            (b"GET / HTTP/1.1\r\nHos", b""),
            (
                b"GET / HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n",
                REFUSE_BAD_REQUEST,
            ),
        ];
        for (input, want) in cases {
            let mut io = Script::new([input.to_vec()], false);
            io.quiet_at_end = true;
            let mut guard = FramingGuard::new(io, 1024);
            let mut cx = Context::from_waker(Waker::noop());
            let mut space = [0u8; 4096];
            let mut buf = ReadBuf::new(&mut space);
            buf.put_slice(b"sentinel");
            let mut got = Vec::new();
            for _ in 0..4 {
                let before = buf.filled().len();
                match Pin::new(&mut guard).poll_read(&mut cx, &mut buf) {
                    Poll::Ready(Ok(())) if buf.filled().len() == before => break,
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => panic!("{e}"),
                    Poll::Pending => break,
                }
                assert!(buf.filled().starts_with(b"sentinel"));
                got = buf.filled()[8..].to_vec();
            }
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn a_split_preface_read_as_hyper_util_reads_passes_through() {
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        input.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0 frames");
        let pieces = [&input[..10], &input[10..18], &input[18..24], &input[24..]];
        let mut guard = FramingGuard::new(Script::new(pieces.map(<[u8]>::to_vec), false), 1024);
        let (got, err) = read_all(&mut guard, &[24, 8192]);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got, input);
    }

    /// What hyper gets from `input` arriving in one piece.
    fn through(input: &[u8], max_head: usize) -> (Vec<u8>, Option<io::Error>) {
        let mut guard = FramingGuard::new(Script::new([input.to_vec()], false), max_head);
        read_all(&mut guard, &[64 * 1024])
    }

    fn bad(reason: &'static str) -> Result<Next, Reject> {
        Err(Reject::BadRequest(reason))
    }

    #[test]
    fn heads_with_ambiguous_framing_are_bad_requests() {
        let both = "both content-length and transfer-encoding";
        for (head, want) in [
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                bad(both),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                bad(both),
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 0\r\n\r\n",
                bad(both),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                bad("differing content-lengths"),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
                bad("differing content-lengths"),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
                bad("malformed content-length"),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                bad("malformed content-length"),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n",
                bad("malformed content-length"),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5.0\r\n\r\n",
                bad("malformed content-length"),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
                bad("malformed content-length"),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                bad("malformed content-length"),
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                bad("chunked is not the final coding"),
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                bad("chunked is not the final coding"),
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
                bad("transfer-encoding is not chunked"),
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                bad("transfer-encoding is not chunked"),
            ),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                bad("transfer-encoding in HTTP/1.0"),
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
                bad("invalid header name"),
            ),
            (
                "GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n",
                bad("invalid byte in a header value"),
            ),
            (
                "GET / HTTP/1.1\r\nX-A: a\x01b\r\n\r\n",
                bad("invalid byte in a header value"),
            ),
            (
                "GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n",
                bad("invalid header name"),
            ),
            (
                "GET / HTTP/1.1\r\nX A: a\r\n\r\n",
                bad("invalid header name"),
            ),
            ("GET / HTTP/1.1\r\n: a\r\n\r\n", bad("invalid header name")),
            (
                "GET / HTTP/1.1\r\nX-\u{e9}: a\r\n\r\n",
                bad("invalid header name"),
            ),
            ("GET / HTTP/1.2\r\n\r\n", bad("malformed request line")),
            ("GET\0/ HTTP/1.1\r\n\r\n", bad("malformed request line")),
            ("PRI * HTTP/2.0\r\n\r\n", bad("malformed request line")),
        ] {
            assert_eq!(check_head(head.as_bytes(), false), want, "{head:?}");
        }
    }

    #[test]
    fn heads_with_clear_framing_pass() {
        for (head, want) in [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", Next::Sized(0)),
            ("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", Next::Sized(0)),
            ("GET / HTTP/1.0\r\n\r\n", Next::Sized(0)),
            (
                "POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n",
                Next::Sized(12),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 012\r\ncontent-length: 12\r\n\r\n",
                Next::Sized(12),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 12, 12\r\n\r\n",
                Next::Sized(12),
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Next::Chunked,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n",
                Next::Chunked,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
                Next::Chunked,
            ),
            ("GET / HTTP/1.1\r\nX-A: caf\u{e9}\t\r\n\r\n", Next::Sized(0)),
        ] {
            assert_eq!(check_head(head.as_bytes(), false), Ok(want), "{head:?}");
        }
        assert_eq!(check_head(H2_PREFACE_HEAD, true), Ok(Next::H2Preface));
    }

    #[test]
    fn a_hundred_fields_pass_and_one_more_is_too_large() {
        let head = |n: usize| {
            let mut h = b"GET / HTTP/1.1\r\n".to_vec();
            for i in 0..n {
                h.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
            }
            h.extend_from_slice(b"\r\n");
            h
        };
        assert_eq!(check_head(&head(MAX_HEADERS), false), Ok(Next::Sized(0)));
        assert_eq!(
            check_head(&head(MAX_HEADERS + 1), false),
            Err(Reject::TooLarge("too many header fields"))
        );
    }

    #[test]
    fn head_scan_finds_the_end_and_refuses_bare_cr_lf_and_oversize() {
        let scan = |head: &[u8], max: usize| HeadScan::default().scan(head, max);
        assert_eq!(
            scan(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest", 100),
            Ok(Some(24))
        );
        assert_eq!(scan(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 100), Ok(Some(22)));
        assert_eq!(scan(b"GET / HTTP/1.1\r\nA: b\r\n", 100), Ok(None));
        assert_eq!(
            scan(b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", 100),
            Err(Reject::BadRequest("bare CR in the request head"))
        );
        assert_eq!(
            scan(b"GET / HTTP/1.1\nA: b\r\n\r\n", 100),
            Err(Reject::BadRequest("bare LF in the request head"))
        );
        let head = b"GET / HTTP/1.1\r\nA: b\r\n\r\n";
        assert_eq!(scan(head, head.len()), Ok(Some(head.len())));
        assert_eq!(
            scan(head, head.len() - 1),
            Err(Reject::TooLarge("request head over the size limit"))
        );
        // Byte by byte, the scan resumes where it stopped.
        let mut s = HeadScan::default();
        let ends: Vec<_> = (1..=head.len())
            .map(|n| s.scan(&head[..n], 100).unwrap())
            .collect();
        assert_eq!(ends.iter().flatten().collect::<Vec<_>>(), [&head.len()]);
    }

    #[test]
    fn chunk_scan_follows_chunks_extensions_and_trailers() {
        let body = b"5\r\nhello\r\nA;ext=\"x\"\r\n0123456789\r\n1 \t\r\n!\r\n0\r\nT: 1\r\nU: 2\r\n\r\nNEXT";
        let mut scan = ChunkScan::default();
        let (n, outcome) = scan.feed(body);
        assert_eq!((n, outcome), (body.len() - 4, Ok(true)));
        // Byte by byte.
        let mut scan = ChunkScan::default();
        let mut total = 0;
        for b in body {
            let (n, outcome) = scan.feed(std::slice::from_ref(b));
            total += n;
            if outcome == Ok(true) {
                break;
            }
            assert_eq!(outcome, Ok(false));
        }
        assert_eq!(total, body.len() - 4);
    }

    #[test]
    fn chunk_scan_refuses_broken_framing() {
        for body in [
            &b"x\r\n"[..],
            b" 5\r\nhello\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\rX",
            b"5;a\nb\r\n",
            b"ffffffffffffffffff\r\n",
            b"0\r\nT: 1\n\r\n",
            b"0\r\n\n",
            b"0\r\n\rX",
        ] {
            let (_, outcome) = ChunkScan::default().feed(body);
            assert!(outcome.is_err(), "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn a_refused_head_feeds_hyper_the_refusal_and_nothing_of_the_request() {
        let ok = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        let mut input = ok.clone();
        input.extend_from_slice(b"POST /b HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /c HTTP/1.1\r\n\r\n");
        let (got, err) = through(&input, 1024);
        assert!(err.is_none());
        let mut want = ok;
        want.extend_from_slice(REFUSE_BAD_REQUEST);
        assert_eq!(got, want);
    }

    #[test]
    fn an_oversize_head_feeds_hyper_the_too_large_refusal() {
        let mut input = b"GET / HTTP/1.1\r\n".to_vec();
        input.extend_from_slice(&[b'a'; 2000]);
        let (got, _) = through(&input, 1024);
        assert_eq!(got, REFUSE_TOO_LARGE);
        // The refusal has more fields than hyper allows and never parses.
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        assert_eq!(
            httparse::Request::new(&mut fields).parse(&REFUSE_TOO_LARGE),
            Err(httparse::Error::TooManyHeaders)
        );
        let mut fields = vec![httparse::EMPTY_HEADER; FILLER_FIELDS + 1];
        assert!(
            httparse::Request::new(&mut fields)
                .parse(&REFUSE_TOO_LARGE)
                .is_err()
        );
        let mut fields = [httparse::EMPTY_HEADER; 1];
        assert!(
            httparse::Request::new(&mut fields)
                .parse(REFUSE_BAD_REQUEST)
                .is_err()
        );
    }

    #[test]
    fn the_h2_preface_passes_through_and_only_first() {
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        input.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0 anything \r\r\n at all");
        assert_eq!(through(&input, 1024).0, input);
        let (got, _) = through(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", 1024);
        assert_eq!(got, REFUSE_BAD_REQUEST);
        let second = b"GET / HTTP/1.1\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let (got, _) = through(second, 1024);
        assert_eq!(got, [&second[..18], REFUSE_BAD_REQUEST].concat());
    }

    #[test]
    fn a_partial_head_at_the_end_of_input_is_never_let_through() {
        let input = b"GET / HTTP/1.1\r\n\r\nGET /half HTTP/1.1\r\nHost:";
        assert_eq!(through(input, 1024).0, &input[..18]);
    }

    #[test]
    fn a_broken_chunked_body_ends_in_a_read_error_after_the_good_bytes() {
        let input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let (got, err) = through(input, 1024);
        let broken = input.windows(2).position(|w| w == b"zz").unwrap();
        assert_eq!(got, &input[..broken]);
        assert_eq!(err.unwrap().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn shutdown_after_a_refusal_drains_what_the_client_sent() {
        let mut guard = FramingGuard::new(
            Script::new(
                [
                    b"GET / HTTP/1.1\r\nX: \0\r\n\r\n".to_vec(),
                    vec![b'x'; 10_000],
                ],
                false,
            ),
            1024,
        );
        let (got, _) = read_all(&mut guard, &[4096]);
        assert_eq!(got, REFUSE_BAD_REQUEST);
        assert_eq!(guard.io.chunks.len(), 1);
        let mut cx = Context::from_waker(Waker::noop());
        let shut = Pin::new(&mut guard).poll_shutdown(&mut cx);
        assert!(matches!(shut, Poll::Ready(Ok(()))));
        assert!(guard.io.shut);
        assert!(guard.io.chunks.is_empty());
    }

    #[test]
    fn the_buffer_grows_for_a_large_head_and_is_given_back() {
        let big = [
            &b"GET / HTTP/1.1\r\nX-A: "[..],
            &[b'a'; 3 * INITIAL_BUFFER],
            b"\r\n\r\n",
        ]
        .concat();
        let input = [&big[..], b"GET / HTTP/1.1\r\n\r\n"].concat();
        // In pieces, as a large head comes off the network: its start waits
        // in our buffer, which grows for the rest.
        let pieces = input.chunks(1000).map(<[u8]>::to_vec);
        let mut guard = FramingGuard::new(Script::new(pieces, false), 64 * 1024);
        let (got, err) = read_all(&mut guard, &[64 * 1024]);
        assert!(err.is_none());
        assert_eq!(got, input);
        assert_eq!(guard.buf.capacity(), 0, "given back once emptied");
    }

    #[test]
    fn writes_go_straight_to_the_client() {
        let mut guard = FramingGuard::new(Script::default(), 1024);
        let mut cx = Context::from_waker(Waker::noop());
        let wrote = Pin::new(&mut guard).poll_write(&mut cx, b"HTTP/1.1 200 OK\r\n");
        assert!(matches!(wrote, Poll::Ready(Ok(17))));
        assert_eq!(guard.io.written, b"HTTP/1.1 200 OK\r\n");
    }

    /// One request of a generated stream.
    #[derive(Clone, Debug)]
    enum Body {
        None,
        Sized(Vec<u8>),
        Chunked(Vec<Vec<u8>>, Vec<(String, String)>),
    }

    fn field() -> impl Strategy<Value = (String, String)> {
        ("x-[a-z]{1,8}", "[ -~]{0,24}").prop_map(|(n, v)| (n, v.trim().to_owned()))
    }

    fn request() -> impl Strategy<Value = (Vec<(String, String)>, Body)> {
        let body = prop_oneof![
            Just(Body::None),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Body::Sized),
            (
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..100), 0..4),
                proptest::collection::vec(field(), 0..3),
            )
                .prop_map(|(c, t)| Body::Chunked(c, t)),
        ];
        (proptest::collection::vec(field(), 0..6), body)
    }

    fn encode((fields, body): &(Vec<(String, String)>, Body)) -> Vec<u8> {
        let mut out = b"POST /p?q=1 HTTP/1.1\r\nHost: web\r\n".to_vec();
        for (n, v) in fields {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        match body {
            Body::None => out.extend_from_slice(b"\r\n"),
            Body::Sized(bytes) => {
                out.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", bytes.len()).as_bytes(),
                );
                out.extend_from_slice(bytes);
            }
            Body::Chunked(chunks, trailers) => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for (i, chunk) in chunks.iter().enumerate() {
                    let size = if i % 2 == 0 {
                        format!("{:x}", chunk.len())
                    } else {
                        format!("{:X};i={i}", chunk.len())
                    };
                    out.extend_from_slice(size.as_bytes());
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n");
                for (n, v) in trailers {
                    out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }

    /// Heads that must be refused, and with what.
    fn bad_head() -> impl Strategy<Value = (Vec<u8>, &'static [u8])> {
        prop_oneof![
            Just((
                b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .to_vec(),
                REFUSE_BAD_REQUEST
            )),
            Just((
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
                    .to_vec(),
                REFUSE_BAD_REQUEST
            )),
            Just((
                b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n".to_vec(),
                REFUSE_BAD_REQUEST
            )),
            Just((
                b"GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n".to_vec(),
                REFUSE_BAD_REQUEST
            )),
            Just((
                b"GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n".to_vec(),
                REFUSE_BAD_REQUEST
            )),
            Just((
                b"GET / HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n".to_vec(),
                REFUSE_BAD_REQUEST
            )),
            Just((
                [&b"GET / HTTP/1.1\r\nX-A: "[..], &[b'a'; 600], b"\r\n\r\n"].concat(),
                &REFUSE_TOO_LARGE[..]
            )),
        ]
    }

    /// The room hyper reads into: small (through our buffer) or large
    /// (straight into hyper's).
    fn read_size() -> impl Strategy<Value = usize> {
        prop_oneof![1usize..300, DIRECT_MIN..3 * DIRECT_MIN]
    }

    /// `input` split at these points (taken modulo its length) into non-empty
    /// pieces (an empty read is the end of input).
    fn split(input: &[u8], mut cuts: Vec<usize>) -> Vec<Vec<u8>> {
        for c in &mut cuts {
            *c %= input.len() + 1;
        }
        cuts.push(0);
        cuts.push(input.len());
        cuts.sort_unstable();
        cuts.dedup();
        cuts.windows(2)
            .map(|w| input[w[0]..w[1]].to_vec())
            .collect()
    }

    /// The byte-at-a-time scan `HeadScan::scan` replaced.
    fn scan_bytewise(
        state: &mut HeadScan,
        head: &[u8],
        max: usize,
    ) -> Result<Option<usize>, Reject> {
        let upto = head.len().min(max);
        while state.scanned < upto {
            let b = head[state.scanned];
            state.scanned += 1;
            if state.after_cr {
                if b != b'\n' {
                    return Err(Reject::BadRequest("bare CR in the request head"));
                }
                state.after_cr = false;
                if state.line_has_content {
                    state.started = true;
                    state.line_has_content = false;
                } else if state.started {
                    return Ok(Some(state.scanned));
                }
            } else if b == b'\r' {
                state.after_cr = true;
            } else if b == b'\n' {
                return Err(Reject::BadRequest("bare LF in the request head"));
            } else {
                state.line_has_content = true;
            }
        }
        if state.scanned >= max {
            return Err(Reject::TooLarge("request head over the size limit"));
        }
        Ok(None)
    }

    proptest! {
        /// Fed in any pieces, the scan ends, refuses and waits exactly where
        /// the byte-at-a-time scan did.
        #[test]
        fn head_scan_agrees_with_a_bytewise_scan(
            head in proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b' '), Just(b':'), Just(b'\r'), Just(b'\n')],
                0..80,
            ),
            cuts in proptest::collection::vec(0usize..80, 0..6),
            max in 1usize..90,
        ) {
            let (mut fast, mut slow) = (HeadScan::default(), HeadScan::default());
            let mut ends: Vec<usize> = cuts.into_iter().filter(|&c| c < head.len()).collect();
            ends.push(head.len());
            ends.sort_unstable();
            for end in ends {
                let got = fast.scan(&head[..end], max);
                let want = scan_bytewise(&mut slow, &head[..end], max);
                prop_assert_eq!(format!("{got:?}"), format!("{want:?}"));
                if want.is_err() || matches!(want, Ok(Some(_))) {
                    break;
                }
                prop_assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Valid pipelined requests arrive at hyper byte for byte, however
        /// they are split on the wire and however hyper reads.
        #[test]
        fn valid_requests_pass_unchanged_whatever_the_splits(
            requests in proptest::collection::vec(request(), 1..5),
            cuts in proptest::collection::vec(any::<usize>(), 0..40),
            read_sizes in proptest::collection::vec(read_size(), 1..5),
            stall in any::<bool>(),
        ) {
            let input: Vec<u8> = requests.iter().flat_map(encode).collect();
            let mut guard = FramingGuard::new(Script::new(split(&input, cuts), stall), 512);
            let (got, err) = read_all(&mut guard, &read_sizes);
            prop_assert!(err.is_none(), "{err:?}");
            prop_assert_eq!(got, input);
        }

        /// After valid requests, a bad head gets hyper exactly the good
        /// requests and then the refusal, whatever the splits and whatever
        /// follows the bad head.
        #[test]
        fn a_bad_head_is_refused_whatever_the_splits(
            before in proptest::collection::vec(request(), 0..3),
            (bad, refusal) in bad_head(),
            after in proptest::collection::vec(any::<u8>(), 0..100),
            cuts in proptest::collection::vec(any::<usize>(), 0..40),
            read_sizes in proptest::collection::vec(read_size(), 1..5),
            stall in any::<bool>(),
        ) {
            let good: Vec<u8> = before.iter().flat_map(encode).collect();
            let input = [&good[..], &bad, &after].concat();
            let mut guard = FramingGuard::new(Script::new(split(&input, cuts), stall), 512);
            let (got, err) = read_all(&mut guard, &read_sizes);
            prop_assert!(err.is_none(), "{err:?}");
            prop_assert_eq!(got, [&good[..], refusal].concat());
        }

        /// Reading straight into hyper's buffer gives hyper exactly what
        /// reading through ours does, and ends the same way: for valid
        /// requests, bad heads, the HTTP/2 preface and arbitrary bytes, cut
        /// anywhere and read in any sizes.
        #[test]
        fn direct_reads_give_what_buffered_reads_give(
            before in proptest::collection::vec(request(), 0..3),
            middle in prop_oneof![
                bad_head().prop_map(|(bad, _)| bad),
                Just(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..200),
            ],
            after in proptest::collection::vec(request(), 0..2),
            cuts in proptest::collection::vec(any::<usize>(), 0..40),
            read_sizes in proptest::collection::vec(read_size(), 1..5),
        ) {
            let input = [
                before.iter().flat_map(encode).collect::<Vec<u8>>(),
                middle,
                after.iter().flat_map(encode).collect(),
            ]
            .concat();
            let run = |buffered_only: bool| {
                let pieces = split(&input, cuts.clone());
                let mut guard = FramingGuard::new(Script::new(pieces, false), 512);
                guard.buffered_only = buffered_only;
                let (got, err) = read_all(&mut guard, &read_sizes);
                (got, err.map(|e| (e.kind(), e.to_string())))
            };
            prop_assert_eq!(run(false), run(true));
        }

        /// Arbitrary bytes never make the guard panic, loop or let through
        /// more than it was given (or the refusal).
        #[test]
        fn arbitrary_input_never_panics(
            input in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            let mut guard = FramingGuard::new(Script::new(split(&input, cuts), false), 256);
            let (got, _) = read_all(&mut guard, &[7, 64, DIRECT_MIN]);
            prop_assert!(input.starts_with(&got)
                || got.ends_with(REFUSE_BAD_REQUEST)
                || got.ends_with(&REFUSE_TOO_LARGE));
        }
    }
}
