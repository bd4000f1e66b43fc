//! A fixed list of endpoints.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tower::discover::Change;

use super::EndpointChange;
use crate::endpoint::Endpoint;

/// Yields an insert for each endpoint, then nothing more (the stream stays
/// pending, never ends: the set is simply stable).
#[derive(Debug)]
pub struct StaticEndpoints {
    pending: VecDeque<Endpoint>,
}

impl StaticEndpoints {
    /// A source of these endpoints.
    pub fn new(endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        StaticEndpoints {
            pending: endpoints.into_iter().collect(),
        }
    }
}

impl Stream for StaticEndpoints {
    type Item = Result<EndpointChange, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.pending.pop_front() {
            Some(ep) => Poll::Ready(Some(Ok(Change::Insert(ep.addr(), ep)))),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{FutureExt, StreamExt};

    #[tokio::test]
    async fn yields_each_endpoint_then_stays_pending() {
        let eps: Vec<_> = (1..=3)
            .map(|p| Endpoint::new(([127, 0, 0, 1], p).into()))
            .collect();
        let mut s = StaticEndpoints::new(eps.clone());
        for ep in &eps {
            match s.next().await {
                Some(Ok(Change::Insert(addr, got))) => {
                    assert_eq!(addr, ep.addr());
                    assert_eq!(&got, ep);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(s.next().now_or_never().is_none(), "must stay pending");
    }
}
