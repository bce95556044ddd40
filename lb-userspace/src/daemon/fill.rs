//! The agent's view of the bounded tables' fill ([`kernel::fill`]),
//! counted every [`EVERY`] on a blocking thread and shown as
//! `lb_map_entries` / `lb_map_capacity`.

use std::{path::PathBuf, sync::Arc, time::Duration};

use super::shared::Shared;
use crate::{core::tables::Tables, kernel::fill};

/// How often the tables are counted.
pub const EVERY: Duration = Duration::from_secs(10);

/// Counts every [`EVERY`] into `shared.fill`; returns at once.
pub fn spawn<T: Tables + Send + 'static>(shared: Arc<Shared<T>>, pin_dir: PathBuf) {
    tokio::spawn(async move {
        loop {
            let dir = pin_dir.clone();
            if let Ok(fill) = tokio::task::spawn_blocking(move || fill::count(&dir)).await {
                *shared.fill.lock().expect("not poisoned") = fill;
            }
            tokio::time::sleep(EVERY).await;
        }
    });
}
