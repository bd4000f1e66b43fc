//! Keeping only the endpoints of a subset.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::{Stream, TryStream};
use pin_project_lite::pin_project;
use tower::discover::Change;

use super::EndpointChange;
use crate::endpoint::LabelSelector;

pin_project! {
    /// A discovery stream narrowed to the endpoints a [`LabelSelector`]
    /// matches; made by [`DiscoverExt::subset`](super::DiscoverExt::subset).
    ///
    /// An insert of a non-matching endpoint becomes a remove of its address, so
    /// an endpoint relabelled out of the subset leaves it (removing an address
    /// the consumer never saw is harmless).
    #[derive(Debug)]
    pub struct Subset<D> {
        #[pin]
        inner: D,
        selector: LabelSelector,
    }
}

impl<D> Subset<D> {
    /// Narrows `inner` to `selector`.
    pub fn new(inner: D, selector: LabelSelector) -> Self {
        Subset { inner, selector }
    }
}

impl<D: TryStream<Ok = EndpointChange>> Stream for Subset<D> {
    type Item = Result<EndpointChange, D::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let change = ready!(this.inner.try_poll_next(cx));
        Poll::Ready(change.map(|change| {
            change.map(|change| match change {
                Change::Insert(addr, ep) if !this.selector.matches(&ep) => Change::Remove(addr),
                other => other,
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::{DiscoverExt, EndpointSet};
    use crate::endpoint::Endpoint;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn relabelled_endpoints_leave_the_subset() {
        let ep = Endpoint::new(([127, 0, 0, 1], 1).into()).with_label("version", "v1");
        let set = EndpointSet::from_endpoints([ep.clone()]);
        let mut v1 = set
            .discover()
            .subset(LabelSelector::new([("version", "v1")]));
        assert!(matches!(v1.next().await, Some(Ok(Change::Insert(..)))));
        set.insert(ep.clone().with_label("version", "v2"));
        assert!(matches!(v1.next().await, Some(Ok(Change::Remove(a))) if a == ep.addr()));
    }
}
