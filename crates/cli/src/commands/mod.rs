//! One module per subcommand; `run` composes the others.

pub(crate) mod check;
pub(crate) mod export;
pub(crate) mod extract;
pub(crate) mod generate;
pub(crate) mod ingest;
pub(crate) mod key;
pub(crate) mod run;
pub(crate) mod serve;
pub(crate) mod stages;
pub(crate) mod status;
pub(crate) mod verify;
