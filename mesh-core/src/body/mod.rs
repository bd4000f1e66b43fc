//! Body wrappers shared by the layers.

mod replay;

pub use self::replay::{DEFAULT_REPLAY_CAP, ReplayBody, ReplayError};
