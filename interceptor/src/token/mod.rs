//! Workload tokens: a CI provider's OIDC ID token (GitHub Actions, GitLab
//! CI, ...) or a token this host issued, presented as the PostgreSQL
//! password and checked here before its claims select a policy identity.
//!
//! # Layout
//!
//! - [`config`]: `[token]` and `[[token.issuer]]` (issuer, audiences, JWKS
//!   file or URL, refresh, algorithm allow-list, leeway), validated.
//! - [`jwks`](self): each issuer's key set, cached with a refresh interval and
//!   a last good copy; an unknown `kid` causes at most one early reload per
//!   `refetch_min` (key rotation).
//! - [`Validator`]: signature, `alg` allow-list (never `none` nor HMAC),
//!   `iss`, `aud`, `exp`/`nbf`/`iat` with leeway, revocation; the result is
//!   a [`VerifiedToken`], the refusal a [`TokenError`] with a stable
//!   [`TokenError::reason`] and a message that never echoes the token.
//! - [`host`]: the host's own EdDSA issuer (`interceptor token issue` /
//!   `revoke`), its key and its persisted issued/revoked records.
//! - [`admin`]: the `token.*` operations of the admin socket.

pub mod admin;
pub mod config;
mod error;
pub mod host;
mod jwks;
mod validate;

#[cfg(test)]
mod tests;

pub use config::{HOST_ISSUER_NAME, IssuerConfig, TokenConfig, TokenConfigError};
pub use error::TokenError;
pub use host::{HostIssuer, HostIssuerConfig, HostTokenError};
pub use validate::{DEFAULT_MAX_TOKEN_BYTES, HostTrust, Revocations, Validator, VerifiedToken};
