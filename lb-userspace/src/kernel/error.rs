//! What can go wrong loading, attaching and adopting the data path.

use std::path::PathBuf;

use aya::{
    maps::MapError,
    programs::{ProgramError, XdpMode},
};

use crate::core::tables::TablesError;

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("loading the XDP object failed")]
    Load(#[source] aya::EbpfError),
    #[error("map {name} is missing from the object")]
    MissingMap { name: &'static str },
    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error(transparent)]
    Tables(#[from] TablesError),
    #[error("program {name}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("ring of {got} slots does not match ring_size {want}")]
    RingSize { got: usize, want: u32 },
    #[error(
        "the pinned state in {dir} does not fit this configuration: map {map}: {what}. \
         Restart with --reset-state to discard it (this resets the connection table), \
         or go back to the settings it was created with"
    )]
    IncompatiblePin {
        dir: PathBuf,
        map: &'static str,
        what: String,
    },
    #[error("memory-mapping the ring table failed: {0}")]
    Mmap(std::io::Error),
    #[error("{what} {path}: {source}")]
    Pin {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("attaching to {iface} ({mode:?} mode)")]
    Attach {
        iface: String,
        mode: XdpMode,
        #[source]
        source: ProgramError,
    },
}

/// A map access error, named.
pub(crate) fn map_err(name: &'static str) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { name, source }
}

/// A map access error as the core's tables report it.
pub(crate) fn tables_err(map: &'static str) -> impl FnOnce(MapError) -> TablesError {
    move |source| TablesError::Map {
        map,
        error: Box::new(source),
    }
}
