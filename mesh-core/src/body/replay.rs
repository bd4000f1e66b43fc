//! A request body that can be sent more than once (retries, mirrors).

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::error::BoxError;

/// The default cap of a [`ReplayBody`]'s copy: 64 KiB, as Linkerd uses.
pub const DEFAULT_REPLAY_CAP: usize = 64 * 1024;

/// A body that streams through while keeping a copy of up to `cap` bytes, so
/// that [`try_clone`](Self::try_clone)s can send the same bytes and trailers
/// again.
///
/// Clones share one buffer and one inner body. The first clone polled reads
/// the inner body and appends what it reads to the buffer; any other clone
/// first replays the buffer, then waits for (or, once the reader is dropped,
/// takes over) the inner body, so a retry started before the first attempt
/// finished sending still gets every byte. Past the cap the copy is dropped,
/// the clone that is reading streams on undisturbed, and the body reports
/// itself [capped](Self::is_capped): no new clone can be made, and a clone that
/// would need the discarded bytes fails with [`ReplayError::Capped`]. It never
/// holds more than `cap` bytes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use http_body_util::{BodyExt, Full};
/// use mesh_core::body::ReplayBody;
///
/// let body = ReplayBody::new(Full::new(bytes::Bytes::from_static(b"hello")), 1024);
/// let first = body.try_clone().unwrap();
/// assert_eq!(first.collect().await.unwrap().to_bytes(), "hello");
/// let retry = body.try_clone().expect("under the cap, so replayable");
/// assert_eq!(retry.collect().await.unwrap().to_bytes(), "hello");
/// # }
/// ```
pub struct ReplayBody<B> {
    shared: Arc<Shared<B>>,
    /// The inner body, while this clone is the one reading it.
    reader: Option<Pin<Box<B>>>,
    /// How many buffered chunks this clone has yielded.
    pos: usize,
    /// Bytes this clone has yielded, for the size hint.
    yielded: u64,
    trailers_sent: bool,
    /// This clone read the inner body to its end (or error): nothing follows.
    done: bool,
}

struct Shared<B> {
    cap: usize,
    size_hint: SizeHint,
    state: Mutex<State<B>>,
}

struct State<B> {
    chunks: Vec<Bytes>,
    buffered: usize,
    trailers: Option<HeaderMap>,
    /// The inner body when no clone is reading it.
    inner: Option<Pin<Box<B>>>,
    ended: bool,
    capped: bool,
    failed: bool,
    waiters: Vec<Waker>,
}

impl<B> State<B> {
    fn wake_all(&mut self) {
        for w in self.waiters.drain(..) {
            w.wake();
        }
    }
}

/// Why a replayed body could not yield its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayError {
    /// The body passed the cap, so the bytes this clone needs were not kept.
    Capped,
    /// The original body failed while another clone was reading it.
    SourceFailed,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            ReplayError::Capped => "request body is larger than the replay buffer",
            ReplayError::SourceFailed => "original request body failed",
        })
    }
}

impl std::error::Error for ReplayError {}

impl<B: Body> ReplayBody<B> {
    /// Wraps `body`, keeping a copy of up to `cap` bytes.
    pub fn new(body: B, cap: usize) -> Self {
        let ended = body.is_end_stream();
        let shared = Shared {
            cap,
            size_hint: body.size_hint(),
            state: Mutex::new(State {
                chunks: Vec::new(),
                buffered: 0,
                trailers: None,
                inner: if ended { None } else { Some(Box::pin(body)) },
                ended,
                capped: false,
                failed: false,
                waiters: Vec::new(),
            }),
        };
        ReplayBody {
            shared: Arc::new(shared),
            reader: None,
            pos: 0,
            yielded: 0,
            trailers_sent: false,
            done: false,
        }
    }
}

impl<B> ReplayBody<B> {
    fn lock(&self) -> MutexGuard<'_, State<B>> {
        lock(&self.shared)
    }

    /// A clone that yields the body from its start, or `None` once the body
    /// passed the cap (or its source failed): it can no longer be replayed.
    pub fn try_clone(&self) -> Option<Self> {
        let state = self.lock();
        if state.capped || state.failed {
            return None;
        }
        Some(ReplayBody {
            shared: self.shared.clone(),
            reader: None,
            pos: 0,
            yielded: 0,
            trailers_sent: false,
            done: false,
        })
    }

    /// Whether the body passed the cap and is no longer replayable.
    pub fn is_capped(&self) -> bool {
        self.lock().capped
    }

    /// How many bytes the copy holds now (never more than the cap).
    pub fn buffered_len(&self) -> usize {
        self.lock().buffered
    }

    /// The cap this body was made with.
    pub fn cap(&self) -> usize {
        self.shared.cap
    }
}

fn lock<B>(shared: &Shared<B>) -> MutexGuard<'_, State<B>> {
    // The state stays consistent across a panic in a waker; keep going.
    shared.state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            if let Some(reader) = this.reader.as_mut() {
                let frame = match reader.as_mut().poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(frame) => frame,
                };
                let mut state = lock(&this.shared);
                return Poll::Ready(match frame {
                    None => {
                        state.ended = true;
                        state.wake_all();
                        this.reader = None;
                        this.done = true;
                        None
                    }
                    Some(Err(err)) => {
                        state.failed = true;
                        state.wake_all();
                        this.reader = None;
                        this.done = true;
                        Some(Err(err.into()))
                    }
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(mut data) => {
                            let bytes = data.copy_to_bytes(data.remaining());
                            if !state.capped {
                                if state.buffered + bytes.len() > this.shared.cap {
                                    // Past the cap: drop the copy; this reader streams on.
                                    state.capped = true;
                                    state.chunks = Vec::new();
                                    state.buffered = 0;
                                } else {
                                    state.buffered += bytes.len();
                                    state.chunks.push(bytes.clone());
                                    this.pos = state.chunks.len();
                                }
                                state.wake_all();
                            }
                            this.yielded += bytes.len() as u64;
                            Some(Ok(Frame::data(bytes)))
                        }
                        Err(frame) => match frame.into_trailers() {
                            Ok(trailers) => {
                                state.trailers = Some(trailers.clone());
                                state.ended = true;
                                state.wake_all();
                                this.trailers_sent = true;
                                this.reader = None;
                                this.done = true;
                                Some(Ok(Frame::trailers(trailers)))
                            }
                            // http-body 1 frames are data or trailers; skip anything else.
                            Err(_) => continue,
                        },
                    },
                });
            }

            let mut state = lock(&this.shared);
            if state.capped {
                return Poll::Ready(Some(Err(ReplayError::Capped.into())));
            }
            if let Some(chunk) = state.chunks.get(this.pos).cloned() {
                this.pos += 1;
                this.yielded += chunk.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if state.failed {
                return Poll::Ready(Some(Err(ReplayError::SourceFailed.into())));
            }
            if state.ended {
                if !this.trailers_sent {
                    this.trailers_sent = true;
                    if let Some(trailers) = state.trailers.clone() {
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                }
                return Poll::Ready(None);
            }
            match state.inner.take() {
                Some(inner) => {
                    drop(state);
                    this.reader = Some(inner);
                }
                None => {
                    // Another clone is reading; it wakes us when it appends or stops.
                    if !state.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                        state.waiters.push(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.done {
            return true;
        }
        if let Some(reader) = &self.reader {
            return reader.is_end_stream();
        }
        let state = self.lock();
        state.ended
            && !state.capped
            && self.pos >= state.chunks.len()
            && (self.trailers_sent || state.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        let hint = &self.shared.size_hint;
        let mut out = SizeHint::new();
        out.set_lower(hint.lower().saturating_sub(self.yielded));
        if let Some(upper) = hint.upper() {
            out.set_upper(upper.saturating_sub(self.yielded));
        }
        out
    }
}

impl<B> Drop for ReplayBody<B> {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.take() {
            // Hand the inner body back so another clone can continue from here.
            let mut state = lock(&self.shared);
            state.inner = Some(reader);
            state.wake_all();
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("ReplayBody")
            .field("cap", &self.shared.cap)
            .field("buffered", &state.buffered)
            .field("capped", &state.capped)
            .field("ended", &state.ended)
            .field("reading", &self.reader.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use http_body_util::{BodyExt, Empty, Full, StreamBody};
    use proptest::prelude::*;
    use std::convert::Infallible;

    type Frames = Vec<Result<Frame<Bytes>, Infallible>>;
    type TestBody = StreamBody<
        futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>,
    >;

    fn body_of(chunks: &[Vec<u8>], trailers: Option<HeaderMap>) -> TestBody {
        let mut frames: Frames = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from(c.clone()))))
            .collect();
        if let Some(t) = trailers {
            frames.push(Ok(Frame::trailers(t)));
        }
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn trailers() -> HeaderMap {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", "0".parse().unwrap());
        t
    }

    /// Polls a body to its end synchronously (test bodies never pend), checking
    /// after every frame that the copy stays under the cap.
    fn drain<B>(
        mut body: ReplayBody<B>,
        watch: &ReplayBody<B>,
    ) -> Result<(Vec<u8>, Option<HeaderMap>), BoxError>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let mut data = Vec::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().now_or_never().expect("test bodies are ready") {
            assert!(watch.buffered_len() <= watch.cap());
            let frame = frame?;
            match frame.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(f) => trailers = f.into_trailers().ok(),
            }
        }
        Ok((data, trailers))
    }

    proptest! {
        #[test]
        fn replays_exactly_the_original_under_the_cap(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16),
            with_trailers in any::<bool>(),
        ) {
            let total: usize = chunks.iter().map(Vec::len).sum();
            let expected: Vec<u8> = chunks.concat();
            let t = with_trailers.then(trailers);
            let body = ReplayBody::new(body_of(&chunks, t.clone()), total);
            for _ in 0..3 {
                let clone = body.try_clone().expect("replayable at exactly the cap");
                let (data, got_trailers) = drain(clone, &body).unwrap();
                prop_assert_eq!(&data, &expected);
                prop_assert_eq!(&got_trailers, &t);
            }
            prop_assert!(!body.is_capped());
        }

        #[test]
        fn over_the_cap_streams_on_but_is_not_replayable(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..64), 1..16),
            cut in 0usize..1000,
        ) {
            let total: usize = chunks.iter().map(Vec::len).sum();
            let cap = cut % total; // strictly below the total
            let expected: Vec<u8> = chunks.concat();
            let body = ReplayBody::new(body_of(&chunks, Some(trailers())), cap);
            let first = body.try_clone().unwrap();
            let (data, t) = drain(first, &body).unwrap();
            prop_assert_eq!(data, expected, "the first pass is intact");
            prop_assert_eq!(t, Some(trailers()));
            prop_assert!(body.is_capped());
            prop_assert_eq!(body.buffered_len(), 0);
            prop_assert!(body.try_clone().is_none());
        }

        #[test]
        fn a_clone_takes_over_a_partly_read_body(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..32), 1..12),
            read_first in 0usize..12,
        ) {
            let expected: Vec<u8> = chunks.concat();
            let body = ReplayBody::new(body_of(&chunks, None), usize::MAX);
            let mut first = body.try_clone().unwrap();
            for _ in 0..read_first.min(chunks.len()) {
                let _ = first.frame().now_or_never().unwrap();
            }
            drop(first);
            let (data, _) = drain(body.try_clone().unwrap(), &body).unwrap();
            prop_assert_eq!(data, expected);
        }
    }

    #[tokio::test]
    async fn a_second_clone_follows_the_first_as_it_reads() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
            );
        let body = ReplayBody::new(StreamBody::new(stream), 1024);
        let mut primary = body.try_clone().unwrap();
        let mut mirror = body.try_clone().unwrap();

        tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
            .await
            .unwrap();
        let f = primary.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "a");
        assert_eq!(
            mirror.frame().await.unwrap().unwrap().into_data().unwrap(),
            "a"
        );
        // The mirror is caught up and the primary holds the source: it must wait.
        let mut next = Box::pin(mirror.frame());
        assert!(next.as_mut().now_or_never().is_none());
        tx.send(Ok(Frame::data(Bytes::from_static(b"b"))))
            .await
            .unwrap();
        drop(tx);
        assert_eq!(
            primary.frame().await.unwrap().unwrap().into_data().unwrap(),
            "b"
        );
        assert!(primary.frame().await.is_none());
        drop(next);
        assert_eq!(
            mirror.frame().await.unwrap().unwrap().into_data().unwrap(),
            "b"
        );
        assert!(mirror.frame().await.is_none());
    }

    #[test]
    fn empty_bodies_are_ended_from_the_start_and_keep_size_hints() {
        let body = ReplayBody::new(Empty::<Bytes>::new(), 16);
        assert!(body.try_clone().unwrap().is_end_stream());
        let full = ReplayBody::new(Full::new(Bytes::from_static(b"abc")), 16);
        assert_eq!(full.try_clone().unwrap().size_hint().exact(), Some(3));
    }

    #[tokio::test]
    async fn source_errors_reach_the_reader_and_stop_replays() {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> =
            vec![Err(std::io::Error::other("boom"))];
        let body = ReplayBody::new(StreamBody::new(futures_util::stream::iter(frames)), 16);
        let first = body.try_clone().unwrap();
        assert!(first.collect().await.is_err());
        assert!(body.try_clone().is_none());
    }
}
