//! Telling TLS from plaintext on the first byte of a connection, without
//! consuming it (`TcpStream::peek`).
//!
//! Every TLS connection opens with a handshake record, content type `0x16`;
//! no text protocol (HTTP/1 methods, the HTTP/2 preface `PRI`) starts with
//! that control character. rustls then validates the rest of the ClientHello.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

/// The TLS record content type of a handshake message.
const TLS_HANDSHAKE: u8 = 0x16;

/// What the first bytes of a connection look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// A TLS handshake record (a ClientHello).
    Tls,
    /// Anything else.
    Plaintext,
}

/// Classifies the first bytes of a connection; `None` when there are none.
///
/// ```
/// use mesh_tls::detect::{classify, Protocol};
///
/// assert_eq!(classify(&[0x16, 0x03, 0x01]), Some(Protocol::Tls));
/// assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Protocol::Plaintext));
/// assert_eq!(classify(b"PRI * HTTP/2.0"), Some(Protocol::Plaintext));
/// assert_eq!(classify(b""), None);
/// ```
pub fn classify(prefix: &[u8]) -> Option<Protocol> {
    let first = *prefix.first()?;
    // A second byte, when present, is the record's major version (3).
    let tls = first == TLS_HANDSHAKE && prefix.get(1).is_none_or(|&b| b == 0x03);
    Some(if tls {
        Protocol::Tls
    } else {
        Protocol::Plaintext
    })
}

/// Why detection failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum DetectError {
    /// The peer closed the connection before sending anything.
    Closed,
    /// The peer sent nothing within the timeout.
    Timeout(Duration),
    /// Reading from the socket failed.
    Io(io::Error),
}

impl std::fmt::Display for DetectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DetectError::Closed => f.write_str("peer closed the connection before sending data"),
            DetectError::Timeout(d) => write!(f, "peer sent nothing within {d:?}"),
            DetectError::Io(e) => write!(f, "reading the first bytes failed: {e}"),
        }
    }
}

impl std::error::Error for DetectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DetectError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Waits (up to `timeout`) for the first bytes of `tcp` and classifies them,
/// leaving them in the socket for whoever reads next.
pub async fn detect(tcp: &TcpStream, timeout: Duration) -> Result<Protocol, DetectError> {
    let mut buf = [0u8; 2];
    let n = tokio::time::timeout(timeout, tcp.peek(&mut buf))
        .await
        .map_err(|_| DetectError::Timeout(timeout))?
        .map_err(DetectError::Io)?;
    classify(&buf[..n]).ok_or(DetectError::Closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_first_bytes() {
        assert_eq!(classify(&[0x16]), Some(Protocol::Tls));
        assert_eq!(classify(&[0x16, 0x03]), Some(Protocol::Tls));
        assert_eq!(classify(&[0x16, 0x04]), Some(Protocol::Plaintext));
        assert_eq!(classify(&[0x00, 0x03]), Some(Protocol::Plaintext));
        for method in ["GET", "POST", "PUT", "DELETE", "OPTIONS", "PRI", "CONNECT"] {
            assert_eq!(classify(method.as_bytes()), Some(Protocol::Plaintext));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn silent_peer_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let err = detect(&server, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, DetectError::Timeout(_)), "{err}");
    }

    #[tokio::test]
    async fn peek_does_not_consume_and_eof_is_closed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        client.write_all(b"GET /").await.unwrap();
        let p = detect(&server, Duration::from_secs(5)).await.unwrap();
        assert_eq!(p, Protocol::Plaintext);
        let mut got = [0u8; 5];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"GET /");

        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        drop(client);
        let err = detect(&server, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, DetectError::Closed), "{err}");
    }
}
