use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{HeaderName, HeaderValue, Request, Response};
use tower::{Service, ServiceExt};

use super::Split;
use crate::config::{ConfigErrorKind, HeaderOperations, Headers};

type Svc = tower::util::BoxCloneSyncService<Request<()>, Response<usize>, Infallible>;

/// A service answering `i` and counting its calls.
fn counted(i: usize, counts: &Arc<Vec<AtomicUsize>>) -> Svc {
    let counts = counts.clone();
    Svc::new(tower::service_fn(move |_: Request<()>| {
        counts[i].fetch_add(1, Ordering::Relaxed);
        async move { Ok(Response::new(i)) }
    }))
}

fn counters(n: usize) -> Arc<Vec<AtomicUsize>> {
    Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect())
}

async fn drive(split: &mut Split<Svc>, n: usize) {
    for _ in 0..n {
        split
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn eighty_twenty_within_a_chi_square_bound() {
    // 10,000 requests over 80/20. Under the null hypothesis the statistic
    // follows chi-square with 1 degree of freedom; 23.93 is its 1e-6 upper
    // quantile, so a correct split fails this test once in a million runs,
    // while a 79/21 split (stat ≈ 62) or a swapped one always fails it.
    let counts = counters(2);
    let mut split = Split::new([(counted(0, &counts), 80), (counted(1, &counts), 20)]).unwrap();
    drive(&mut split, 10_000).await;
    let observed = [0, 1].map(|i| counts[i].load(Ordering::Relaxed) as f64);
    let expected = [8000.0, 2000.0];
    let chi2: f64 = observed
        .iter()
        .zip(expected)
        .map(|(o, e)| (o - e).powi(2) / e)
        .sum();
    assert_eq!(observed.iter().sum::<f64>(), 10_000.0);
    assert!(chi2 < 23.93, "chi2 = {chi2}, observed {observed:?}");
}

#[tokio::test]
async fn weights_are_relative() {
    // 1:3 is the same split as 25:75, not "1 % and 3 %".
    let counts = counters(2);
    let mut split = Split::new([(counted(0, &counts), 1), (counted(1, &counts), 3)]).unwrap();
    drive(&mut split, 4_000).await;
    let first = counts[0].load(Ordering::Relaxed) as f64;
    // Binomial(4000, 0.25): sd ≈ 27.4; ±165 is 6 sd.
    assert!((first - 1000.0).abs() < 165.0, "{first}");
}

#[tokio::test]
async fn lone_destination_takes_all_and_zero_weights_get_nothing() {
    let counts = counters(3);
    let mut lone = Split::new([(counted(0, &counts), 0)]).unwrap();
    drive(&mut lone, 100).await;
    assert_eq!(counts[0].load(Ordering::Relaxed), 100);

    let counts = counters(3);
    let mut split = Split::new([
        (counted(0, &counts), 0),
        (counted(1, &counts), 50),
        (counted(2, &counts), 0),
    ])
    .unwrap();
    drive(&mut split, 1_000).await;
    assert_eq!(counts[0].load(Ordering::Relaxed), 0);
    assert_eq!(counts[1].load(Ordering::Relaxed), 1_000);
    assert_eq!(counts[2].load(Ordering::Relaxed), 0);
}

#[test]
fn all_zero_and_empty_are_refused() {
    let counts = counters(2);
    let err = Split::new([(counted(0, &counts), 0), (counted(1, &counts), 0)]).unwrap_err();
    assert!(matches!(err.kind(), ConfigErrorKind::ZeroWeights));
    assert_eq!(err.to_string(), "total destination weight = 0");
    let err = Split::<Svc>::new([]).unwrap_err();
    assert!(matches!(err.kind(), ConfigErrorKind::NoDestination));
}

#[tokio::test]
async fn destination_headers_apply_only_to_the_one_picked() {
    let tag = HeaderName::from_static("x-dest");
    let seen = Arc::new(AtomicUsize::new(0));
    let make = |i: usize| {
        let tag = tag.clone();
        let seen = seen.clone();
        tower::service_fn(move |req: Request<()>| {
            let tag = tag.clone();
            let seen = seen.clone();
            async move {
                // Each destination sees only its own tag.
                let got = req.headers().get(&tag).cloned();
                assert_eq!(got, Some(HeaderValue::from(i)));
                seen.fetch_add(1, Ordering::Relaxed);
                Ok::<_, Infallible>(Response::new(i))
            }
        })
    };
    let ops = |i: usize| Headers {
        request: HeaderOperations {
            set: vec![(tag.clone(), HeaderValue::from(i))],
            ..Default::default()
        },
        response: HeaderOperations {
            add: vec![(HeaderName::from_static("x-from"), HeaderValue::from(i))],
            ..Default::default()
        },
    };
    let split = Split::with_headers([(make(0), 50, ops(0)), (make(1), 50, ops(1))]).unwrap();
    for _ in 0..50 {
        let res = split.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(res.headers()["x-from"], HeaderValue::from(*res.body()));
    }
    assert_eq!(seen.load(Ordering::Relaxed), 50);
}

#[tokio::test(start_paused = true)]
async fn an_unready_destination_holds_back_only_its_own_requests() {
    // Destination 0 is never ready; it is never called (PendingReady panics
    // if it were), the split stays ready, and requests that drew
    // destination 1 complete while those that drew 0 wait.
    let zero = tower::service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(0)) });
    let one = tower::service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(1)) });
    let split = Split::new([
        (tower::util::Either::Left(PendingReady(zero)), 1),
        (tower::util::Either::Right(one), 1),
    ])
    .unwrap();
    let mut done = 0;
    let mut waiting = 0;
    for _ in 0..64 {
        let call = split.clone().oneshot(Request::new(()));
        match tokio::time::timeout(std::time::Duration::from_secs(1), call).await {
            Ok(res) => {
                assert_eq!(*res.unwrap().body(), 1);
                done += 1;
            }
            Err(_) => waiting += 1,
        }
    }
    // Each side has probability 2^-64 of getting nothing.
    assert!(done > 0 && waiting > 0, "done {done}, waiting {waiting}");
}

/// A service that is never ready.
#[derive(Clone)]
struct PendingReady<S>(S);

impl<S: Service<R>, R> Service<R> for PendingReady<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        std::task::Poll::Pending
    }
    fn call(&mut self, _: R) -> S::Future {
        unreachable!("called while not ready")
    }
}
