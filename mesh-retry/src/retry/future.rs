//! [`ResponseFuture`]: one request through the retry layer, all its attempts,
//! backoffs and timeouts.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body::Body;
use mesh_core::classify::{Classified, Classify, Outcome};
use mesh_core::context::{
    Attempt, AttemptDeadline, ChosenEndpoint, EndpointError, EndpointSlot, RequestContext,
    TriedEndpoints,
};
use mesh_core::{BoxError, MeshError, RESPONSE_FLAGS_HEADER, ResponseFlag, ResponseFlags};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep, sleep_until};
use tower::Service;

use super::attempt::{Started, TryFuture, per_try_error};
use super::head::Head;
use super::shared::{Handle, RetryPermit};
use crate::body::{BodySource, RetryBody};

/// `x-envoy-attempt-count`: which try this request is, from 1.
pub const ATTEMPT_COUNT_HEADER: HeaderName = HeaderName::from_static("x-envoy-attempt-count");

pin_project! {
    /// The response future of [`Retry`](super::Retry).
    ///
    /// The primary attempt and the request's one timer are pinned in place.
    /// The timer fires at the earlier of the overall deadline and the primary
    /// attempt's per-try timeout, and is moved (not remade) for each new
    /// attempt: a request with both timeouts registers one timer, not two.
    /// It is made when the request first waits: an answer at hand never
    /// touches the timer wheel.
    ///
    /// What a retry needs (the request head, the body source, and the
    /// service retries go to, cloned when the first retry needs it) is one
    /// box, made only when the policy can retry: it keeps the future small
    /// (every layer above moves it) for one allocation beside the head copy
    /// a retry needs anyway. What only retries and hedges use
    /// (the phase, the hedged attempt, the backoff or hedge timer, the result
    /// held during a backoff, the granted slots) is another box, made when a
    /// retry or hedge is first needed.
    pub struct ResponseFuture<S, B, RB, C>
    where
        S: Service<Request<RetryBody<B>>, Response = Response<RB>>,
    {
        #[pin]
        primary: Option<S::Future>,
        #[pin]
        timer: Option<Sleep>,
        ctl: Control<S, B, RB, C>,
    }
}

/// The unpinned part of a request's state.
struct Control<S, B, RB, C>
where
    S: Service<Request<RetryBody<B>>, Response = Response<RB>>,
{
    handle: Handle<S, C>,
    retry: Option<Box<RetryState<S, B>>>,
    /// Retries and hedges under way; `None` until the first is needed.
    cold: Option<Box<Cold<S::Future, RB>>>,
    /// When the primary attempt's per-try timeout expires.
    per_try_at: Option<Instant>,
    /// Where the balancer writes the primary attempt's endpoint.
    slot: Option<EndpointSlot>,
    /// The request's overall deadline.
    overall: Option<Instant>,
    /// The effective overall timeout, for its error.
    timeout: Duration,
}

/// What a request needs to make another attempt.
pub(super) struct RetryState<S, B> {
    /// The service retries go to: a clone of the layer's, made when the
    /// first retry or hedge needs it.
    pub(super) svc: Option<S>,
    /// The request's head as it came.
    pub(super) head: Head,
    pub(super) body: BodySource<B>,
    pub(super) attempt: Attempt,
    pub(super) retries_left: u32,
    pub(super) tried: Option<TriedEndpoints>,
}

/// The state only retries and hedges use.
struct Cold<F, RB> {
    phase: Phase,
    /// A hedged attempt running beside `primary`.
    secondary: Option<Pin<Box<TryFuture<F>>>>,
    /// The backoff (in [`Phase::Backoff`]) or hedge delay (in
    /// [`Phase::Running`]).
    timer: Option<Pin<Box<Sleep>>>,
    /// The last retryable result, returned if no further attempt answers.
    last: Option<Result<Response<RB>, BoxError>>,
    /// A retry granted (backoff or hedge) whose attempt has not started.
    permit: Option<RetryPermit>,
    /// The retry slot the primary attempt holds.
    primary_permit: Option<RetryPermit>,
    /// A hedge is granted and waits for the inner service to be ready.
    hedge_wanted: bool,
    /// `timer` is the hedge delay (in [`Phase::Running`]).
    hedge_armed: bool,
}

impl<F, RB> Default for Cold<F, RB> {
    fn default() -> Self {
        Cold {
            phase: Phase::Running,
            secondary: None,
            timer: None,
            last: None,
            permit: None,
            primary_permit: None,
            hedge_wanted: false,
            hedge_armed: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// One or two attempts are in flight.
    Running,
    /// Waiting out the backoff before a retry.
    Backoff,
    /// Waiting for the inner service to be ready for a retry.
    Ready,
}

enum Step<RB> {
    Return(Result<Response<RB>, BoxError>),
    /// Another attempt is still running: let it answer.
    Wait,
    /// A retry is granted; the backoff timer is set.
    Backoff,
}

impl<S, B, RB, C> ResponseFuture<S, B, RB, C>
where
    S: Service<Request<RetryBody<B>>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    B: Body,
    C: Classify,
{
    /// `first` is the first attempt, `per_try_at` when its per-try timeout
    /// expires, `overall` the request's deadline (for `timeout`).
    #[inline(always)]
    pub(super) fn new(
        handle: Handle<S, C>,
        first: S::Future,
        per_try_at: Option<Instant>,
        overall: Option<Instant>,
        timeout: Option<Duration>,
        slot: Option<EndpointSlot>,
        retry: Option<Box<RetryState<S, B>>>,
    ) -> Self {
        let cold = hedge_delay(&handle, retry.as_deref()).map(|d| {
            Box::new(Cold {
                timer: Some(Box::pin(sleep(d))),
                hedge_armed: true,
                ..Cold::default()
            })
        });
        ResponseFuture {
            primary: Some(first),
            // Made when the request first waits: an answer at hand never
            // touches the timer wheel or the runtime's handle.
            timer: None,
            ctl: Control {
                handle,
                retry,
                cold,
                per_try_at,
                slot,
                overall,
                timeout: timeout.unwrap_or_default(),
            },
        }
    }
}

/// The hedge delay, when a hedge could be made.
#[inline]
fn hedge_delay<C, S, B>(
    handle: &Handle<S, C>,
    retry: Option<&RetryState<S, B>>,
) -> Option<Duration> {
    let state = retry?;
    let delay = handle.shared().policy.hedge_delay?;
    (state.retries_left > 0 && state.body.is_replayable()).then_some(delay)
}

impl<S, B, RB, C> Future for ResponseFuture<S, B, RB, C>
where
    S: Service<Request<RetryBody<B>>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    C: Classify,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            // The success path: one attempt, no retry or hedge under way.
            if this.ctl.cold.is_none()
                && let Some(fut) = this.primary.as_mut().as_pin_mut()
                && let Poll::Ready(result) = fut.poll(cx)
            {
                this.primary.set(None);
                // Most answers are settled by their status alone: returned
                // without being moved through the retry decision.
                if let Ok(res) = &result
                    && this.ctl.settled(res)
                {
                    return Poll::Ready(result.map_err(Into::into));
                }
                if let Step::Return(result) = this.ctl.on_result(result.map_err(Into::into), false)
                {
                    return Poll::Ready(result);
                }
            }
            if this.ctl.cold.is_some()
                && let Poll::Ready(result) =
                    poll_attempts(cx, this.primary.as_mut(), this.timer.as_mut(), this.ctl)
            {
                return Poll::Ready(result);
            }
            // The one timer, made and checked only when the request would
            // wait, so an answer at hand never touches it.
            if this.timer.is_none() {
                match this.ctl.timer_deadline(this.primary.is_some()) {
                    Some(at) => this.timer.set(Some(sleep_until(at))),
                    None => return Poll::Pending,
                }
            }
            if let Some(timer) = this.timer.as_mut().as_pin_mut()
                && timer.poll(cx).is_pending()
            {
                return Poll::Pending;
            }
            let at = this.timer.as_ref().get_ref().as_ref().map(Sleep::deadline);
            // The overall timeout bounds everything: attempts, backoffs,
            // readiness.
            if let (Some(at), Some(overall)) = (at, this.ctl.overall)
                && at >= overall
            {
                this.primary.set(None);
                if let Some(cold) = this.ctl.cold.as_mut() {
                    cold.secondary = None;
                }
                this.ctl.handle.shared().stats.inc_request_timeouts();
                return Poll::Ready(Err(MeshError::RequestTimeout(this.ctl.timeout).into()));
            }
            // Else the primary attempt's per-try timeout.
            if this.primary.is_some() && this.ctl.per_try_at.is_some_and(|p| at >= Some(p)) {
                this.primary.set(None);
                let per_try = this.ctl.handle.shared().policy.per_try_timeout;
                let err = per_try_error(per_try.unwrap_or_default(), this.ctl.slot.as_ref());
                let other = this.ctl.end_primary();
                if let Step::Return(result) = this.ctl.on_result(Err(err), other) {
                    if let Some(cold) = this.ctl.cold.as_mut() {
                        cold.secondary = None;
                    }
                    return Poll::Ready(result);
                }
            }
            // What is left to time: the overall deadline (a retry moves the
            // timer to its own per-try timeout when it starts).
            let next = this.ctl.timer_deadline(this.primary.is_some());
            arm(this.timer.as_mut(), next);
        }
    }
}

/// The earlier of two optional instants.
pub(super) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Moves the request's timer to `at` (not remaking it), or drops it when
/// there is nothing left to time. A timer not made yet stays so: the future
/// makes it from [`Control::timer_deadline`] when it first waits.
fn arm(mut timer: Pin<&mut Option<Sleep>>, at: Option<Instant>) {
    match (timer.as_mut().as_pin_mut(), at) {
        (Some(sleep), Some(at)) => {
            if sleep.deadline() != at {
                sleep.reset(at);
            }
        }
        (Some(_), None) => timer.set(None),
        (None, _) => {}
    }
}

/// Makes `started` the primary attempt, timed by the request's timer.
fn run_primary<S, B, RB, C>(
    mut primary: Pin<&mut Option<S::Future>>,
    timer: Pin<&mut Option<Sleep>>,
    ctl: &mut Control<S, B, RB, C>,
    started: Started<S::Future>,
) where
    S: Service<Request<RetryBody<B>>, Response = Response<RB>>,
{
    primary.set(Some(started.fut));
    ctl.per_try_at = started.per_try_at;
    ctl.slot = started.slot;
    if let Some(cold) = ctl.cold.as_mut() {
        cold.primary_permit = started.permit;
    }
    arm(timer, earliest(ctl.per_try_at, ctl.overall));
}

/// Drives the attempts, backoffs and hedges of one request once a retry or
/// hedge is under way (`ctl.cold` is set).
fn poll_attempts<S, B, RB, C>(
    cx: &mut Context<'_>,
    mut primary: Pin<&mut Option<S::Future>>,
    mut timer: Pin<&mut Option<Sleep>>,
    ctl: &mut Control<S, B, RB, C>,
) -> Poll<Result<Response<RB>, BoxError>>
where
    S: Service<Request<RetryBody<B>>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    C: Classify,
{
    loop {
        let Some(cold) = ctl.cold.as_mut() else {
            return Poll::Pending;
        };
        match cold.phase {
            Phase::Backoff => {
                if let Some(backoff) = cold.timer.as_mut() {
                    ready!(backoff.as_mut().poll(cx));
                }
                cold.timer = None;
                cold.phase = Phase::Ready;
            }
            Phase::Ready => {
                let Some(svc) = ctl.retry_service() else {
                    return Poll::Ready(ctl.give_up());
                };
                // Never call a service that has not said it is ready.
                if let Err(e) = ready!(svc.poll_ready(cx)) {
                    let e: BoxError = e.into();
                    tracing::debug!(error = %e, "inner service failed before a retry");
                    return Poll::Ready(ctl.give_up());
                }
                let permit = ctl.cold_mut().permit.take();
                let Some(attempt) = ctl.start(permit) else {
                    ctl.handle.shared().stats.inc_abandoned();
                    return Poll::Ready(ctl.give_up());
                };
                run_primary(primary.as_mut(), timer.as_mut(), ctl, attempt);
                ctl.cold_mut().phase = Phase::Running;
                ctl.arm_hedge();
            }
            Phase::Running => {
                if cold.hedge_armed
                    && let Some(hedge) = cold.timer.as_mut()
                    && hedge.as_mut().poll(cx).is_ready()
                {
                    cold.timer = None;
                    cold.hedge_armed = false;
                    let granted = ctl.grant_hedge();
                    ctl.cold_mut().hedge_wanted = granted;
                }
                if ctl.cold_mut().hedge_wanted
                    && let Some(attempt) = ctl.poll_hedge(cx)
                {
                    if primary.is_none() {
                        run_primary(primary.as_mut(), timer.as_mut(), ctl, attempt);
                    } else {
                        let per_try = ctl.handle.shared().policy.per_try_timeout;
                        let hedge = TryFuture::new(attempt, per_try.unwrap_or_default());
                        ctl.cold_mut().secondary = Some(Box::pin(hedge));
                    }
                }

                if let Some(fut) = primary.as_mut().as_pin_mut()
                    && let Poll::Ready(result) = fut.poll(cx)
                {
                    primary.set(None);
                    let other = ctl.end_primary();
                    match ctl.on_result(result.map_err(Into::into), other) {
                        Step::Return(result) => {
                            ctl.cold_mut().secondary = None;
                            return Poll::Ready(result);
                        }
                        Step::Wait => {}
                        Step::Backoff => continue,
                    }
                }
                let cold = ctl.cold_mut();
                if let Some(fut) = cold.secondary.as_mut()
                    && let Poll::Ready(result) = fut.as_mut().poll(cx)
                {
                    cold.secondary = None;
                    match ctl.on_result(result, primary.is_some()) {
                        Step::Return(result) => {
                            primary.set(None);
                            return Poll::Ready(result);
                        }
                        Step::Wait => {}
                        Step::Backoff => continue,
                    }
                }
                return Poll::Pending;
            }
        }
    }
}

impl<S, B, RB, C> Control<S, B, RB, C>
where
    S: Service<Request<RetryBody<B>>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    C: Classify,
{
    /// When the request's one timer fires: the overall deadline, or the
    /// primary attempt's per-try deadline when earlier and an attempt runs.
    #[inline]
    fn timer_deadline(&self, primary_running: bool) -> Option<Instant> {
        match primary_running {
            true => earliest(self.per_try_at, self.overall),
            false => self.overall,
        }
    }

    /// Whether `res` is the answer whatever the policy says: no retries, or a
    /// status below 400 that no condition of the policy retries.
    #[inline]
    fn settled(&self, res: &Response<RB>) -> bool {
        self.retry.is_none()
            || (res.status().as_u16() < 400 && !self.handle.shared().retries_below_400)
    }

    /// The primary attempt has ended: gives back its retry slot. Returns
    /// whether a hedged attempt is still running.
    fn end_primary(&mut self) -> bool {
        match self.cold.as_mut() {
            Some(cold) => {
                cold.primary_permit = None;
                cold.secondary.is_some()
            }
            None => false,
        }
    }

    /// The service this request's retries go to, cloned from the layer's on
    /// first use; `None` when the policy cannot retry.
    fn retry_service(&mut self) -> Option<&mut S> {
        let state = self.retry.as_mut()?;
        let local = &self.handle.local;
        Some(state.svc.get_or_insert_with(|| local.service()))
    }

    /// The retry state, made on first use.
    fn cold_mut(&mut self) -> &mut Cold<S::Future, RB> {
        self.cold.get_or_insert_with(Box::default)
    }

    /// Judges an attempt's result: return it, wait for the other attempt, or
    /// back off and retry.
    fn on_result(
        &mut self,
        result: Result<Response<RB>, BoxError>,
        other_running: bool,
    ) -> Step<RB> {
        let shared = self.handle.shared();
        let Some(state) = self.retry.as_mut() else {
            // Retries are off: the result is the answer, whatever it is.
            if let Err(err) = &result
                && matches!(MeshError::find(&**err), Some(MeshError::PerTryTimeout(_)))
            {
                shared.stats.inc_per_try_timeouts();
            }
            return Step::Return(result);
        };
        let retry_on = &shared.policy.retry_on;
        let retryable = match &result {
            Ok(res) => {
                // Only `5xx` and `gateway-error` read the classification; the
                // other conditions read the status and headers themselves. A
                // success below 500 skips it when the classifier allows.
                let classified = if shared.classify
                    && (shared.classify_below_500 || res.status().is_server_error())
                {
                    shared.classifier.classify_response(res)
                } else {
                    Classified::Ready(Outcome::Success)
                };
                retry_on.should_retry_response(&classified, res)
            }
            Err(err) => {
                if matches!(MeshError::find(&**err), Some(MeshError::PerTryTimeout(_))) {
                    shared.stats.inc_per_try_timeouts();
                }
                shared
                    .classifier
                    .classify_error(&**err)
                    .failure()
                    .is_some_and(|failure| retry_on.should_retry_error(failure, &**err))
            }
        };
        if !retryable {
            return Step::Return(result);
        }
        // The endpoint this attempt used: from the response, or from an error
        // naming it (a reset, a refused connection, a per-try timeout).
        let endpoint = match &result {
            Ok(res) => res.extensions().get::<ChosenEndpoint>().map(|c| c.0),
            Err(err) => EndpointError::find(&**err).map(EndpointError::addr),
        };
        if let Some(addr) = endpoint {
            let head = &state.head;
            state
                .tried
                .get_or_insert_with(|| {
                    RequestContext::get(head.extensions())
                        .map(|c| c.tried.clone())
                        .unwrap_or_default()
                })
                .push(addr);
        }
        let cold = self.cold.get_or_insert_with(Box::default);
        if other_running {
            // Hedging: the other attempt may still succeed.
            cold.last = Some(result);
            return Step::Wait;
        }
        if cold.hedge_wanted {
            // A hedge was granted but never started: it becomes this retry.
            cold.hedge_wanted = false;
        } else {
            if state.retries_left == 0 {
                shared.stats.inc_limit_exceeded();
                return Step::Return(flag_retry_limit(result));
            }
            if !state.body.is_replayable() {
                shared.stats.inc_abandoned();
                return Step::Return(result);
            }
            let Some(permit) = shared.try_retry() else {
                shared.stats.inc_overflow();
                return Step::Return(result);
            };
            cold.permit = Some(permit);
            state.retries_left -= 1;
        }
        let wait = shared
            .policy
            .backoff
            .wait(state.attempt.get(), &mut rand::rng());
        tracing::debug!(attempt = state.attempt.get(), ?wait, "retrying");
        cold.last = Some(result);
        cold.timer = Some(Box::pin(sleep(wait)));
        cold.hedge_armed = false;
        cold.phase = Phase::Backoff;
        Step::Backoff
    }

    /// Sets the hedge timer for the attempt just started, if a hedge could be
    /// made.
    fn arm_hedge(&mut self) {
        match hedge_delay(&self.handle, self.retry.as_deref()) {
            Some(delay) => {
                let cold = self.cold_mut();
                cold.timer = Some(Box::pin(sleep(delay)));
                cold.hedge_armed = true;
            }
            None => self.cold_mut().hedge_armed = false,
        }
    }

    /// Whether a hedge may start now (an attempt left, a replayable body, a
    /// retry slot); takes the attempt and the slot.
    fn grant_hedge(&mut self) -> bool {
        let shared = self.handle.shared();
        let Some(state) = self.retry.as_mut() else {
            return false;
        };
        if state.retries_left == 0 || !state.body.is_replayable() {
            return false;
        }
        let Some(permit) = shared.try_retry() else {
            shared.stats.inc_overflow();
            return false;
        };
        self.cold.get_or_insert_with(Box::default).permit = Some(permit);
        state.retries_left -= 1;
        true
    }

    /// Starts the granted hedge once the inner service is ready.
    fn poll_hedge(&mut self, cx: &mut Context<'_>) -> Option<Started<S::Future>> {
        match self.retry_service()?.poll_ready(cx) {
            Poll::Pending => None,
            Poll::Ready(Err(_)) => {
                if let Some(state) = self.retry.as_mut() {
                    state.retries_left += 1;
                }
                let cold = self.cold_mut();
                cold.hedge_wanted = false;
                cold.permit = None;
                None
            }
            Poll::Ready(Ok(())) => {
                let cold = self.cold_mut();
                cold.hedge_wanted = false;
                let permit = cold.permit.take();
                let attempt = self.start(permit);
                if attempt.is_some() {
                    self.handle.shared().stats.inc_hedges();
                }
                attempt
            }
        }
    }

    /// Calls the (ready) inner service with the next attempt, or `None` if
    /// the body can no longer be replayed or the head not be built again
    /// (see [`Head::request`]).
    fn start(&mut self, permit: Option<RetryPermit>) -> Option<Started<S::Future>> {
        let shared = self.handle.shared();
        let policy = &shared.policy;
        let state = self.retry.as_mut()?;
        let body = state.body.next()?;
        let mut req = state.head.request(body)?;
        state.attempt = state.attempt.next();
        mark_attempt_header(
            req.headers_mut(),
            state.attempt,
            policy.attempt_count_header,
        );
        // One context for all this attempt tells the layers below.
        let ctx = RequestContext::get_mut(req.extensions_mut());
        ctx.attempt = state.attempt;
        if let Some(tried) = &state.tried {
            ctx.tried.clone_from(tried);
        }
        let per_try_at = policy
            .per_try_timeout
            .and_then(|d| Instant::now().checked_add(d));
        let slot = (policy.attempt_endpoint && per_try_at.is_some()).then(EndpointSlot::new);
        ctx.slot.clone_from(&slot);
        ctx.deadline = match policy.attempt_deadline {
            true => earliest(per_try_at, self.overall).map(AttemptDeadline),
            false => None,
        };
        let fut = state.svc.as_mut()?.call(req);
        shared.stats.inc_retries();
        Some(Started {
            fut,
            per_try_at,
            permit,
            slot,
        })
    }

    /// The result to return when no further attempt can be made.
    fn give_up(&mut self) -> Result<Response<RB>, BoxError> {
        self.cold
            .as_mut()
            .and_then(|cold| cold.last.take())
            .unwrap_or_else(|| Err(MeshError::RetryBudgetExhausted.into()))
    }
}

/// Puts the attempt number in `x-envoy-attempt-count`, if asked.
#[inline(always)]
pub(super) fn mark_attempt_header(headers: &mut HeaderMap, attempt: Attempt, header: bool) {
    if header {
        set_attempt_header(headers, attempt);
    }
}

fn set_attempt_header(headers: &mut HeaderMap, attempt: Attempt) {
    headers.insert(ATTEMPT_COUNT_HEADER, attempt_value(attempt.get()));
}

fn attempt_value(n: u32) -> HeaderValue {
    const SMALL: [&str; 9] = ["1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match n.checked_sub(1).and_then(|i| SMALL.get(i as usize)) {
        Some(s) => HeaderValue::from_static(s),
        None => HeaderValue::from(n),
    }
}

/// Adds `URX` to a response: the retries ran out on a retryable failure.
fn flag_retry_limit<RB>(result: Result<Response<RB>, BoxError>) -> Result<Response<RB>, BoxError> {
    result.map(|mut res| {
        let from_header = res
            .headers()
            .get(RESPONSE_FLAGS_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<ResponseFlags>().ok())
            .unwrap_or_default();
        let flags = res
            .extensions()
            .get::<ResponseFlags>()
            .copied()
            .unwrap_or_default()
            .union(from_header)
            .with(ResponseFlag::UpstreamRetryLimitExceeded);
        if let Ok(value) = HeaderValue::from_str(&flags.to_string()) {
            res.headers_mut().insert(RESPONSE_FLAGS_HEADER, value);
        }
        res.extensions_mut().insert(flags);
        res
    })
}

impl<S, B, RB, C> fmt::Debug for ResponseFuture<S, B, RB, C>
where
    S: Service<Request<RetryBody<B>>, Response = Response<RB>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cold = self.ctl.cold.as_deref();
        let secondary = cold.is_some_and(|c| c.secondary.is_some());
        f.debug_struct("ResponseFuture")
            .field("phase", &cold.map_or(Phase::Running, |c| c.phase))
            .field(
                "attempts_in_flight",
                &(u8::from(self.primary.is_some()) + u8::from(secondary)),
            )
            .finish_non_exhaustive()
    }
}
