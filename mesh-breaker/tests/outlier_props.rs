//! Property tests of outlier ejection bounds, over random sequences of outcomes
//! and clock steps on tokio's paused clock:
//!
//! - the number of ejected endpoints never exceeds the cap
//!   (`(ejected)/hosts ≤ max_ejection_percent`, or one when
//!   `always_eject_one_host` allows a first ejection past it);
//! - no endpoint stays ejected past its ejection time plus one interval.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic on its own setup

use std::future::poll_fn;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::FutureExt;
use http::{Request, Response};
use mesh_breaker::outlier::{OutlierDetection, OutlierDetector};
use mesh_core::BoxError;
use proptest::prelude::*;
use tower::Service;

#[derive(Clone, Debug)]
enum Op {
    /// A request to endpoint `.0` answered with status `.1` (0: connect refused).
    Call(usize, u16),
    /// The clock moves on by this many milliseconds.
    Advance(u64),
}

fn op(hosts: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..hosts, prop_oneof![Just(200u16), Just(500), Just(503), Just(0)])
            .prop_map(|(h, s)| Op::Call(h, s)),
        1 => (1u64..25_000).prop_map(Op::Advance),
    ]
}

fn case() -> impl Strategy<Value = (usize, u32, bool, Vec<Op>)> {
    (1usize..12, 0u32..=100, any::<bool>()).prop_flat_map(|(hosts, pct, one)| {
        (
            Just(hosts),
            Just(pct),
            Just(one),
            prop::collection::vec(op(hosts), 1..200),
        )
    })
}

fn endpoint()
-> impl Service<Request<u16>, Response = Response<()>, Error = BoxError, Future: Send> + Clone {
    tower::service_fn(|req: Request<u16>| async move {
        match *req.body() {
            0 => Err::<_, BoxError>(
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
            ),
            s => Ok(Response::builder().status(s).body(()).unwrap_or_default()),
        }
    })
}

fn check(hosts: usize, pct: u32, one: bool, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let config = OutlierDetection {
            consecutive_5xx: 3,
            consecutive_gateway_errors: 2,
            max_ejection_percent: pct,
            always_eject_one_host: one,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(100),
            ..OutlierDetection::default()
        };
        let interval = config.interval;
        let d = OutlierDetector::new(config);
        let mut gates: Vec<_> = (0..hosts)
            .map(|i| d.gate(SocketAddr::from(([127, 0, 0, 1], i as u16 + 1)), endpoint()))
            .collect();
        let cap = (pct as usize * hosts) / 100;
        let cap = if one { cap.max(1) } else { cap };
        for op in ops {
            match op {
                Op::Call(h, status) => {
                    let gate = &mut gates[h];
                    // An ejected endpoint is not ready; the balancer skips it.
                    if let Some(ready) = poll_fn(|cx| gate.poll_ready(cx)).now_or_never() {
                        ready.unwrap();
                        let _ = gate.call(Request::new(status)).await;
                    }
                }
                Op::Advance(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            }
            let stats = d.stats();
            prop_assert!(
                stats.ejections_active <= cap,
                "{} ejected of {hosts} at {pct}% (one: {one})",
                stats.ejections_active
            );
            for e in d.endpoints() {
                if let (Some(for_), Some(time)) = (e.ejected_for, e.ejection_time) {
                    prop_assert!(for_ <= time + interval, "{e:?}");
                    prop_assert!(time <= Duration::from_secs(100));
                }
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn ejections_stay_within_the_cap_and_their_time(
        (hosts, pct, one, ops) in case()
    ) {
        check(hosts, pct, one, ops)?;
    }
}
