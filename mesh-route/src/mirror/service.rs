use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, request};
use http_body::Body;
use mesh_core::body::ReplayBody;
use mesh_core::limit::Permit;
use tokio::sync::watch;
use tower::{Service, ServiceExt};

use super::MirrorStats;
use super::layer::{Settings, Target};
use crate::body::RouteBody;
use crate::util::{authority_of, set_authority, shadow_authority};

/// Copies requests to shadow services, fire-and-forget, and forwards the
/// original to the inner service unchanged. See the
/// [module docs](crate::mirror).
///
/// `poll_ready` is the inner service's: shadows are driven to readiness in
/// their own task (`oneshot`), never called unready, and never make the
/// primary wait.
#[derive(Clone, Debug)]
pub struct Mirror<S, M> {
    pub(crate) inner: S,
    pub(crate) targets: Arc<[Target<M>]>,
    pub(crate) settings: Arc<Settings>,
}

impl<S, M> Mirror<S, M> {
    /// The counters of this layer's copies.
    pub fn stats(&self) -> &MirrorStats {
        &self.settings.stats
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, M, B> Service<Request<B>> for Mirror<S, M>
where
    S: Service<Request<RouteBody<B>>>,
    M: Service<Request<RouteBody<B>>> + Clone + Send + 'static,
    M::Future: Send + 'static,
    B: Body + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if self.targets.is_empty() {
            return self.inner.call(req.map(RouteBody::new));
        }
        let mut rng = rand::rng();
        let chosen: Vec<&Target<M>> = self
            .targets
            .iter()
            .filter(|t| t.fraction.sample(&mut rng))
            .collect();
        if chosen.is_empty() {
            return self.inner.call(req.map(RouteBody::new));
        }
        let settings = &*self.settings;
        let stats = &settings.stats;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            for _ in &chosen {
                stats.incr_no_runtime();
            }
            return self.inner.call(req.map(RouteBody::new));
        };

        let (parts, body) = req.into_parts();
        // A body already at its end needs no waiting: the shadows go at once.
        let (done_tx, done_rx) = if body.is_end_stream() {
            (None, None)
        } else {
            let (tx, rx) = watch::channel(false);
            (Some(tx), Some(rx))
        };
        let replay = ReplayBody::new(body, settings.cap);
        for target in chosen {
            let Some(permit) = settings.limit.try_acquire() else {
                stats.incr_overflow();
                continue;
            };
            let Some(copy) = replay.try_clone() else {
                stats.incr_too_large();
                continue;
            };
            let shadow = Shadow {
                service: target.service.clone(),
                head: shadow_head(&parts, settings.suffix),
                body: copy,
                done: done_rx.clone(),
                stats: stats.clone(),
                _permit: permit,
            };
            stats.incr_spawned();
            runtime.spawn(shadow.run(settings.timeout));
        }
        drop(done_rx);
        self.inner.call(Request::from_parts(
            parts,
            RouteBody::primary(replay, done_tx),
        ))
    }
}

/// The copy's head: the original's, with `-shadow` appended to the authority.
fn shadow_head(parts: &request::Parts, suffix: bool) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = parts.method.clone();
    *head.uri_mut() = parts.uri.clone();
    *head.version_mut() = parts.version;
    *head.headers_mut() = parts.headers.clone();
    *head.extensions_mut() = parts.extensions.clone();
    if suffix && let Some(shadow) = authority_of(&head).map(shadow_authority) {
        set_authority(&mut head, &shadow);
    }
    head
}

/// One copy on its way.
struct Shadow<M, B> {
    service: M,
    head: Request<()>,
    body: ReplayBody<B>,
    done: Option<watch::Receiver<bool>>,
    stats: MirrorStats,
    _permit: Permit,
}

impl<M, B> Shadow<M, B>
where
    M: Service<Request<RouteBody<B>>>,
{
    async fn run(self, timeout: Option<Duration>) {
        let stats = self.stats.clone();
        let send = self.send();
        let outcome = match timeout {
            Some(t) => tokio::time::timeout(t, send).await.ok(),
            None => Some(send.await),
        };
        match outcome {
            Some(Some(true)) => stats.incr_completed(),
            Some(Some(false)) | None => stats.incr_failed(),
            // Not sent; counted already.
            Some(None) => {}
        }
    }

    /// Waits for the primary to read the whole body, then sends the copy.
    /// `None`: not sent; `Some(ok)`: sent, and whether the shadow answered.
    async fn send(self) -> Option<bool> {
        let Shadow {
            service,
            head,
            body,
            done,
            stats,
            _permit,
        } = self;
        if let Some(mut done) = done
            && done.wait_for(|whole| *whole).await.is_err()
        {
            stats.incr_incomplete();
            return None;
        }
        if body.is_capped() {
            stats.incr_too_large();
            return None;
        }
        let req = head.map(|()| RouteBody::shadow(body));
        // The response (and its body) is dropped unread.
        Some(service.oneshot(req).await.is_ok())
    }
}
