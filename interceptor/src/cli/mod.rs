//! The command's parts: the daemon (`daemon`), policy tools (`policy`),
//! and the commands that talk to a running daemon (`admin`). `main.rs`
//! holds the clap tree and dispatches.

pub(crate) mod admin;
pub(crate) mod daemon;
pub(crate) mod policy;
