//! Telling HTTP from opaque TCP on a captured connection by its first bytes
//! (Istio's protocol sniffing), and giving those bytes back to whoever serves
//! the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// How long a captured connection may stay silent before it is taken for a
/// server-first protocol and passed through as TCP (Istio's
/// `protocolDetectionTimeout` was 100 ms by default).
pub(crate) const DETECTION_TIMEOUT: Duration = Duration::from_millis(100);

/// The HTTP/2 connection preface's start.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// The longest HTTP method we wait for (`PROPPATCH`, `MKCALENDAR`, with room).
const MAX_METHOD: usize = 16;

/// The most bytes read to find an HTTP/1 request line's version: a longer
/// target is taken for opaque bytes (Envoy's HTTP inspector also gives up
/// after a bounded read).
const MAX_SNIFF: usize = 8 * 1024;

/// What a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sniffed {
    /// HTTP/1.x or HTTP/2 with prior knowledge.
    Http,
    /// Anything else: passed through as bytes.
    Opaque,
}

/// Classifies a prefix; `None` while it could still go either way.
pub(crate) fn classify(prefix: &[u8]) -> Option<Sniffed> {
    // Empty lines before a request line are skipped, as HTTP servers do (RFC
    // 9112 §2.2; so do hyper and the framing guard): HTTP behind a blank
    // line is HTTP, not opaque bytes to pass to the app around the HTTP
    // path (its `x-forwarded-client-cert` unchecked, its policies unapplied).
    // A bare CR or LF is skipped too: such a request goes to the HTTP path,
    // where the framing guard refuses it (400), rather than to the app.
    let start = prefix
        .iter()
        .position(|&b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(prefix.len());
    if start >= MAX_SNIFF {
        return Some(Sniffed::Opaque);
    }
    let prefix = &prefix[start..];
    if prefix.is_empty() {
        return None;
    }
    let n = prefix.len().min(H2_PREFACE.len());
    if prefix[..n] == H2_PREFACE[..n] {
        return (n == H2_PREFACE.len()).then_some(Sniffed::Http);
    }
    // An HTTP/1 request line: a method token, a space, a target without
    // spaces, a space and `HTTP/1.0` or `HTTP/1.1`. The version is checked
    // too, so that a text protocol's command (Redis's `SET k v`) is not
    // taken for HTTP.
    let mut method_end = None;
    for (i, &b) in prefix.iter().enumerate().take(MAX_METHOD + 1) {
        match b {
            b' ' if i > 0 => {
                method_end = Some(i);
                break;
            }
            b'A'..=b'Z' | b'-' | b'_' if i < MAX_METHOD => {}
            _ => return Some(Sniffed::Opaque),
        }
    }
    let after_method = &prefix[method_end? + 1..];
    // The target ends at a space; a line end before it is not HTTP.
    let Some(target_len) = after_method
        .iter()
        .position(|&b| matches!(b, b' ' | b'\r' | b'\n'))
    else {
        return (prefix.len() >= MAX_SNIFF).then_some(Sniffed::Opaque);
    };
    if after_method[target_len] != b' ' {
        return Some(Sniffed::Opaque);
    }
    const VERSION: &[u8] = b"HTTP/1.";
    let version = &after_method[target_len + 1..];
    let seen = version.len().min(VERSION.len());
    if target_len == 0 || version[..seen] != VERSION[..seen] {
        return Some(Sniffed::Opaque);
    }
    match version.get(VERSION.len()) {
        None => None,
        Some(b'0' | b'1') => Some(Sniffed::Http),
        Some(_) => Some(Sniffed::Opaque),
    }
}

/// Reads from `io` until its first bytes say what it speaks, or until it has
/// been silent for `timeout` (a server-first protocol: opaque) or closed.
/// Returns the verdict and the stream with the bytes read put back.
pub(crate) async fn sniff<S>(mut io: S, timeout: Duration) -> io::Result<(Sniffed, Prefixed<S>)>
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(64);
    let verdict = loop {
        if let Some(v) = classify(&buf) {
            break v;
        }
        if buf.len() >= MAX_SNIFF {
            break Sniffed::Opaque;
        }
        let mut chunk = [0u8; 1024];
        let want = (MAX_SNIFF - buf.len()).min(chunk.len());
        match tokio::time::timeout(timeout, io.read(&mut chunk[..want])).await {
            Err(_) | Ok(Ok(0)) => break Sniffed::Opaque,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(e),
        }
    };
    Ok((
        verdict,
        Prefixed {
            prefix: buf,
            pos: 0,
            io,
        },
    ))
}

/// A stream whose first bytes were already read: they are returned first.
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    io: S,
}

impl<S> Prefixed<S> {
    /// The stream underneath (its unread prefix is lost).
    #[cfg(test)]
    pub(crate) fn into_inner(self) -> S {
        self.io
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let rest = &this.prefix[this.pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn classifies_http_methods_the_h2_preface_and_the_rest() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Sniffed::Http));
        assert_eq!(classify(b"M-SEARCH * HTTP/1.1"), Some(Sniffed::Http));
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n\r\nSM"), Some(Sniffed::Http));
        assert_eq!(classify(b"PRI * HT"), None);
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"hello\n"), Some(Sniffed::Opaque));
        assert_eq!(classify(&[0x16, 0x03, 0x01]), Some(Sniffed::Opaque));
        assert_eq!(classify(b" GET"), Some(Sniffed::Opaque));
        assert_eq!(classify(&[b'A'; 17]), Some(Sniffed::Opaque));
        // The version decides: a text protocol's command is not HTTP.
        assert_eq!(classify(b"SET k v\r\n"), Some(Sniffed::Opaque));
        assert_eq!(classify(b"AUTH x\r\n"), Some(Sniffed::Opaque));
        assert_eq!(classify(b"GET /a HTTP/2.0\r\n"), Some(Sniffed::Opaque));
        // Empty lines before the request line are skipped, as servers do.
        assert_eq!(classify(b"\r\nGET / HTTP/1.1\r\n"), Some(Sniffed::Http));
        assert_eq!(
            classify(b"\n\r\n\nPOST /x HTTP/1.0\r\n"),
            Some(Sniffed::Http)
        );
        assert_eq!(classify(b"\r\n\r\n"), None);
        assert_eq!(classify(b"\r\nSET k v\r\n"), Some(Sniffed::Opaque));
        assert_eq!(classify(&[b'\n'; MAX_SNIFF]), Some(Sniffed::Opaque));
        assert_eq!(classify(b"GET /a HTTP/1"), None);
        assert_eq!(classify(b"GET /a HTTP/1.0"), Some(Sniffed::Http));
        assert_eq!(classify(b"GET /a"), None);
        assert_eq!(classify(b"GET  /a HTTP/1.1"), Some(Sniffed::Opaque));
        let mut long = b"GET /".to_vec();
        long.resize(MAX_SNIFF, b'a');
        assert_eq!(classify(&long), Some(Sniffed::Opaque));
    }

    proptest::proptest! {
        /// Whatever the bytes, no panic, and a verdict once given stands
        /// however many more bytes arrive.
        #[test]
        fn a_verdict_does_not_change_with_more_bytes(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::Just(b'G'), proptest::prelude::Just(b' '),
                    proptest::prelude::Just(b'/'), proptest::prelude::Just(b'H'),
                    proptest::prelude::Just(b'T'), proptest::prelude::Just(b'P'),
                    proptest::prelude::Just(b'1'), proptest::prelude::Just(b'.'),
                    proptest::prelude::Just(b'\r'), proptest::prelude::Just(b'\n'),
                    proptest::prelude::any::<u8>(),
                ],
                0..40,
            ),
        ) {
            let mut first = None;
            for end in 0..=bytes.len() {
                match (first, classify(&bytes[..end])) {
                    (None, v) => first = v,
                    (Some(a), b) => proptest::prop_assert_eq!(Some(a), b),
                }
            }
        }
    }

    #[tokio::test]
    async fn the_sniffed_bytes_are_read_again() {
        let (mut client, server) = tokio::io::duplex(1024);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"PING\r\nmore")
            .await
            .unwrap();
        drop(client);
        let (verdict, mut stream) = sniff(server, DETECTION_TIMEOUT).await.unwrap();
        assert_eq!(verdict, Sniffed::Opaque);
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"PING\r\nmore");
        let _ = stream.into_inner();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_opaque_after_the_timeout() {
        let (_client, server) = tokio::io::duplex(1024);
        let started = tokio::time::Instant::now();
        let (verdict, _) = sniff(server, DETECTION_TIMEOUT).await.unwrap();
        assert_eq!(verdict, Sniffed::Opaque);
        assert_eq!(started.elapsed(), DETECTION_TIMEOUT);
    }
}
