//! Certificate rotation: a [`CredentialStore`] shared by acceptors and
//! connectors, and a [`Reloader`] that swaps in new credentials when the PEM
//! files change.
//!
//! rustls asks the store for the certificate and the roots on every handshake
//! (through this crate's resolvers and verifiers), so a swap takes effect for
//! the next handshake; connections already open keep the keys they
//! negotiated. A file that fails to parse (half-written, wrong key, no SPIFFE
//! ID) is reported with `tracing::warn!` once and the old credentials stay.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::credentials::{Credentials, CredentialsError, IdentityFiles};
use crate::identity::SpiffeId;

/// The current credentials of a workload, swappable at run time. Cloning
/// shares the same store.
#[derive(Clone, Debug)]
pub struct CredentialStore {
    current: Arc<ArcSwap<Credentials>>,
}

impl CredentialStore {
    /// A store holding `creds`.
    pub fn new(creds: Credentials) -> CredentialStore {
        CredentialStore {
            current: Arc::new(ArcSwap::from_pointee(creds)),
        }
    }

    /// Loads the files once (no watching).
    pub fn load(files: &IdentityFiles) -> Result<CredentialStore, CredentialsError> {
        files.load().map(CredentialStore::new)
    }

    /// Loads the files and returns the store with a [`Reloader`] watching them.
    /// Run the reloader with [`Reloader::spawn`], or call
    /// [`Reloader::check`] yourself.
    pub fn watch(files: IdentityFiles) -> Result<(CredentialStore, Reloader), CredentialsError> {
        let bytes = files.read()?;
        let [ca, cert, key] = &bytes;
        let store = CredentialStore::new(Credentials::from_pem(ca, cert, key)?);
        let reloader = Reloader {
            files,
            store: store.clone(),
            seen: Some(bytes),
            last_error: None,
        };
        Ok((store, reloader))
    }

    /// The credentials new handshakes use.
    pub fn current(&self) -> Arc<Credentials> {
        self.current.load_full()
    }

    /// Replaces the credentials for new handshakes.
    pub fn replace(&self, creds: Credentials) {
        self.current.store(Arc::new(creds));
    }

    pub(crate) fn guard(&self) -> arc_swap::Guard<Arc<Credentials>> {
        self.current.load()
    }
}

/// What one [`Reloader::check`] did.
#[derive(Debug)]
#[non_exhaustive]
pub enum Reload {
    /// The files are as last seen.
    Unchanged,
    /// New credentials were loaded and are now in use.
    Reloaded(SpiffeId),
    /// The files changed but could not be loaded; the old credentials stay.
    Failed(CredentialsError),
}

/// Watches identity files by content and swaps new credentials into a
/// [`CredentialStore`].
///
/// Polling compares the files' bytes (a few KiB) with what was last seen, so
/// it does not depend on modification-time granularity and sees atomic
/// renames. Files are read with blocking calls; they are small.
#[derive(Debug)]
pub struct Reloader {
    files: IdentityFiles,
    store: CredentialStore,
    seen: Option<[Vec<u8>; 3]>,
    last_error: Option<String>,
}

impl Reloader {
    /// A reloader for `files` into `store`; its first check loads the files.
    pub fn new(store: CredentialStore, files: IdentityFiles) -> Reloader {
        Reloader {
            files,
            store,
            seen: None,
            last_error: None,
        }
    }

    /// Checks the files once, and swaps in new credentials if they changed and
    /// parse. Failures are logged once per distinct error.
    pub fn check(&mut self) -> Reload {
        let outcome = match self.files.read() {
            Ok(bytes) if self.seen.as_ref() == Some(&bytes) => return Reload::Unchanged,
            Ok(bytes) => {
                let [ca, cert, key] = &bytes;
                let loaded = Credentials::from_pem(ca, cert, key);
                self.seen = Some(bytes);
                match loaded {
                    Ok(creds) => {
                        let id = creds.id().clone();
                        self.store.replace(creds);
                        tracing::info!(identity = %id, "mesh-tls: credentials reloaded");
                        Reload::Reloaded(id)
                    }
                    Err(e) => Reload::Failed(e),
                }
            }
            Err(e) => Reload::Failed(e),
        };
        match &outcome {
            Reload::Failed(e) => {
                let msg = e.to_string();
                if self.last_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(error = %msg, "mesh-tls: new credentials refused, keeping the current ones");
                    self.last_error = Some(msg);
                }
            }
            _ => self.last_error = None,
        }
        outcome
    }

    /// Runs [`check`](Reloader::check) every `interval` on the tokio runtime
    /// until the handle is aborted.
    pub fn spawn(mut self, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                self.check();
            }
        })
    }
}
