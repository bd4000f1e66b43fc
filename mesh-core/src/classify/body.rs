//! A response body that reports the request's outcome when it ends.

use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::{Classified, ClassifyEos, Outcome};

pin_project! {
    /// Wraps a response body and calls `on_outcome` exactly once, when the body
    /// ends: with the head's outcome, or the deferred classifier's verdict on the
    /// trailers. A body error becomes a failure classified from the error; a
    /// body dropped before its end reports what is known (the head's outcome,
    /// or for a deferred classification a failure of kind
    /// [`Failure::Other`](super::Failure::Other)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use http_body_util::{BodyExt, Full};
    /// use mesh_core::classify::{Classified, ClassifyBody, NeverEos, Outcome};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let seen = Arc::new(Mutex::new(None));
    /// let sink = seen.clone();
    /// let body = ClassifyBody::new(
    ///     Full::new(bytes::Bytes::from_static(b"hi")),
    ///     Classified::<NeverEos>::Ready(Outcome::Success),
    ///     move |o| *sink.lock().unwrap() = Some(o),
    /// );
    /// body.collect().await.unwrap();
    /// assert_eq!(*seen.lock().unwrap(), Some(Outcome::Success));
    /// # }
    /// ```
    pub struct ClassifyBody<B, C, F>
    where
        F: FnOnce(Outcome),
    {
        #[pin]
        inner: B,
        pending: Option<(Classified<C>, F)>,
    }

    impl<B, C, F> PinnedDrop for ClassifyBody<B, C, F>
    where
        F: FnOnce(Outcome),
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some((classified, f)) = this.pending.take() {
                f(match classified {
                    Classified::Ready(outcome) => outcome,
                    Classified::RequiresEos(_) => Outcome::Failure(super::Failure::Other),
                });
            }
        }
    }
}

impl<B, C, F> ClassifyBody<B, C, F>
where
    C: ClassifyEos,
    F: FnOnce(Outcome),
{
    /// Wraps `inner`; `on_outcome` runs once when the body ends, fails or is
    /// dropped.
    pub fn new(inner: B, classified: Classified<C>, on_outcome: F) -> Self {
        ClassifyBody {
            inner,
            pending: Some((classified, on_outcome)),
        }
    }
}

fn report<C: ClassifyEos, F: FnOnce(Outcome)>(
    pending: &mut Option<(Classified<C>, F)>,
    trailers: Option<&HeaderMap>,
) {
    if let Some((classified, f)) = pending.take() {
        f(classified.resolve(trailers));
    }
}

impl<B, C, F> Body for ClassifyBody<B, C, F>
where
    B: Body,
    B::Error: StdError + 'static,
    C: ClassifyEos,
    F: FnOnce(Outcome),
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            None => report(this.pending, None),
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    report(this.pending, Some(trailers));
                } else if this.inner.is_end_stream() {
                    report(this.pending, None);
                }
            }
            Some(Err(err)) => {
                if let Some((classified, f)) = this.pending.take() {
                    f(match classified {
                        Classified::Ready(_) => Outcome::from_error(err),
                        Classified::RequiresEos(eos) => eos.classify_error(err),
                    });
                }
            }
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

impl<B: fmt::Debug, C, F: FnOnce(Outcome)> fmt::Debug for ClassifyBody<B, C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifyBody")
            .field("inner", &self.inner)
            .field("reported", &self.pending.is_none())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Classify, Failure, GrpcClassifier, GrpcCode};
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};
    use std::io;
    use std::sync::{Arc, Mutex};

    type Frames = Vec<Result<Frame<Bytes>, io::Error>>;
    type TestBody =
        StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, io::Error>>>>;

    fn stream(frames: Frames) -> TestBody {
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn grpc_eos() -> Classified<crate::classify::GrpcEos> {
        let res = http::Response::builder()
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        GrpcClassifier::new().classify_response(&res)
    }

    fn recorder() -> (Arc<Mutex<Vec<Outcome>>>, impl FnOnce(Outcome)) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        (seen, move |o| sink.lock().unwrap().push(o))
    }

    #[tokio::test]
    async fn grpc_status_in_trailers_is_reported_once() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "14".parse().unwrap());
        let (seen, f) = recorder();
        let body = ClassifyBody::new(
            stream(vec![
                Ok(Frame::data(Bytes::from_static(b"x"))),
                Ok(Frame::trailers(trailers)),
            ]),
            grpc_eos(),
            f,
        );
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "14");
        assert_eq!(
            *seen.lock().unwrap(),
            vec![Outcome::Failure(Failure::Grpc(GrpcCode::Unavailable))]
        );
    }

    #[tokio::test]
    async fn body_errors_are_failures() {
        let (seen, f) = recorder();
        let body = ClassifyBody::new(
            stream(vec![Err(io::Error::from(io::ErrorKind::ConnectionReset))]),
            Classified::<crate::classify::NeverEos>::Ready(Outcome::Success),
            f,
        );
        assert!(body.collect().await.is_err());
        assert_eq!(
            *seen.lock().unwrap(),
            vec![Outcome::Failure(Failure::Reset)]
        );
    }

    #[test]
    fn dropping_early_reports_what_is_known() {
        let (seen, f) = recorder();
        drop(ClassifyBody::new(stream(vec![]), grpc_eos(), f));
        assert_eq!(
            *seen.lock().unwrap(),
            vec![Outcome::Failure(Failure::Other)]
        );

        let (seen, f) = recorder();
        drop(ClassifyBody::new(
            http_body_util::Empty::<Bytes>::new(),
            Classified::<crate::classify::NeverEos>::Ready(Outcome::Success),
            f,
        ));
        assert_eq!(*seen.lock().unwrap(), vec![Outcome::Success]);
    }
}
