use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};

pin_project_lite::pin_project! {
    /// The response body of [`Authorization`](super::Authorization): the
    /// inner service's body, or the `RBAC: access denied` text.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Denied { text: Option<&'static str> },
        Inner { #[pin] body: B },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn denied(text: &'static str) -> Self {
        ResponseBody {
            kind: Kind::Denied { text: Some(text) },
        }
    }

    pub(crate) fn inner(body: B) -> Self {
        ResponseBody {
            kind: Kind::Inner { body },
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Denied { .. } => f.write_str("ResponseBody::Denied"),
            Kind::Inner { .. } => f.write_str("ResponseBody::Inner"),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: From<&'static str>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Denied { text } => {
                Poll::Ready(text.take().map(|t| Ok(Frame::data(B::Data::from(t)))))
            }
            KindProj::Inner { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Denied { text } => text.is_none(),
            Kind::Inner { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Denied { text } => SizeHint::with_exact(text.map_or(0, |t| t.len() as u64)),
            Kind::Inner { body } => body.size_hint(),
        }
    }
}
