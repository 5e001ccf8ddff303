//! PostgreSQL wire protocol: framing and the messages the proxy looks inside.
//!
//! - [`frame`]: regular messages as raw [`Frame`]s (type byte, length, body
//!   kept as one `Bytes`), split off a read buffer with the size limit
//!   enforced from the header alone; decoded lazily, only by whoever needs to.
//! - [`startup`]: the startup phase (`StartupMessage`, `SSLRequest`,
//!   `GSSENCRequest`, `CancelRequest`), parsed strictly.
//! - [`auth`]: `Authentication*` requests from the upstream and the
//!   password/SASL answers the proxy sends.
//! - [`status`]: `ParameterStatus`, `BackendKeyData`, `ReadyForQuery`,
//!   `NegotiateProtocolVersion`, `Terminate`.
//! - [`error_response`]: `ErrorResponse` built by the proxy ([`PgError`]) or
//!   parsed from the upstream; SQLSTATE codes.
//! - [`tag`]: message type bytes, per direction.
//!
//! The message structs are pgwire's (`pgwire::messages::*`); this module adds
//! the framing and the guards pgwire's decoders assume (they read fixed
//! fields with panicking `get_*` calls, so lengths are checked first).

pub mod auth;
mod error;
pub mod error_response;
pub mod frame;
pub mod startup;
pub mod status;
pub mod tag;
pub mod values;

pub use error::WireError;
pub use error_response::{PgError, sqlstate};
pub use frame::{Frame, read_frame, split_frame};
pub use startup::{StartupPacket, read_startup_packet};
