//! The response body of a pooled request: it gives its HTTP/1.1 connection
//! back to the pool when it has been read to the end.

use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use super::idle::{Connections, Http1Conn};

/// An HTTP/1.1 connection on its way back to its pool.
pub(super) struct Release {
    conn: Http1Conn,
    pool: Arc<Connections>,
}

impl Release {
    pub(super) fn new(conn: Http1Conn, pool: Arc<Connections>) -> Self {
        Release { conn, pool }
    }

    /// Back to the idle list if the connection can take the next request
    /// now; else once it can (its task has not yet seen the end of the
    /// exchange, or the request body is still being written), in a small
    /// task, as hyper-util does. A closed connection is dropped.
    fn release(self) {
        let Release { mut conn, pool } = self;
        if conn.tx.is_ready() {
            pool.put(conn);
        } else if !conn.tx.is_closed()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if poll_fn(|cx| conn.tx.poll_ready(cx)).await.is_ok() {
                    pool.put(conn);
                }
            });
        }
    }
}

pin_project! {
    /// A response body from a [`Pool`](super::Pool). Read to its end, it
    /// gives its HTTP/1.1 connection back to the pool; dropped before its
    /// end or failed, it drops the connection, which closes it.
    pub(crate) struct PoolBody {
        #[pin]
        inner: Incoming,
        release: Option<Release>,
    }
}

impl PoolBody {
    /// `inner`, giving `release`'s connection back at its end (at once if it
    /// is empty: nobody need poll an empty body).
    pub(super) fn new(inner: Incoming, release: Option<Release>) -> Self {
        let mut body = PoolBody { inner, release };
        if http_body::Body::is_end_stream(&body.inner)
            && let Some(release) = body.release.take()
        {
            release.release();
        }
        body
    }
}

impl http_body::Body for PoolBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let ended = match &frame {
            None => true,
            // Whoever reads the body may stop at the last frame without
            // polling for the end.
            Some(Ok(_)) => this.inner.is_end_stream(),
            Some(Err(_)) => {
                this.release.take();
                false
            }
        };
        if ended && let Some(release) = this.release.take() {
            release.release();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl fmt::Debug for PoolBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBody")
            .field("inner", &self.inner)
            .field("pooled", &self.release.is_some())
            .finish()
    }
}
