use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::Fault;
use crate::config::{AbortStatus, ConfigError, ConfigErrorKind, FaultConfig};
use crate::util::Fraction;

/// A checked fault config.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Compiled {
    pub(crate) delay: Option<(Duration, Fraction)>,
    pub(crate) abort: Option<(AbortStatus, Fraction)>,
}

/// Applies [`Fault`] to a service. See the [module docs](crate::fault).
#[derive(Clone, Debug)]
pub struct FaultLayer {
    pub(crate) config: Option<Arc<Compiled>>,
}

impl FaultLayer {
    /// The layer injecting `config`'s faults, checked as Istio validates them:
    /// percentages within 0–100, a delay of at least 1 ms, an HTTP abort
    /// status within 200–599.
    pub fn new(config: FaultConfig) -> Result<Self, ConfigError> {
        let delay = match config.delay {
            Some(d) => {
                if d.fixed_delay < Duration::from_millis(1) {
                    return Err(ConfigErrorKind::DelayTooShort(d.fixed_delay).into());
                }
                let f = Fraction::from_percent(d.percentage, "fault.delay")?;
                (!f.is_zero()).then_some((d.fixed_delay, f))
            }
            None => None,
        };
        let abort = match config.abort {
            Some(a) => {
                if let AbortStatus::Http(s) = a.status
                    && !(200..=599).contains(&s.as_u16())
                {
                    return Err(ConfigErrorKind::AbortStatus(s).into());
                }
                let f = Fraction::from_percent(a.percentage, "fault.abort")?;
                (!f.is_zero()).then_some((a.status, f))
            }
            None => None,
        };
        let config =
            (delay.is_some() || abort.is_some()).then(|| Arc::new(Compiled { delay, abort }));
        Ok(FaultLayer { config })
    }

    /// A layer injecting nothing (a pass-through).
    pub fn none() -> Self {
        FaultLayer { config: None }
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = Fault<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Fault {
            inner,
            config: self.config.clone(),
        }
    }
}
