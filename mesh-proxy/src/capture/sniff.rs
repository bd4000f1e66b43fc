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
    if prefix.is_empty() {
        return None;
    }
    let n = prefix.len().min(H2_PREFACE.len());
    if prefix[..n] == H2_PREFACE[..n] {
        return (n == H2_PREFACE.len()).then_some(Sniffed::Http);
    }
    // An HTTP/1 request line opens with a method token and a space.
    for (i, &b) in prefix.iter().enumerate().take(MAX_METHOD + 1) {
        match b {
            b' ' if i > 0 => return Some(Sniffed::Http),
            b'A'..=b'Z' | b'-' | b'_' if i < MAX_METHOD => {}
            _ => return Some(Sniffed::Opaque),
        }
    }
    None
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
        if buf.len() >= 64 {
            break Sniffed::Opaque;
        }
        let mut chunk = [0u8; 64];
        let want = 64 - buf.len();
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
