//! Masking of sensitive values in results.
//!
//! - [`policy`]: the policy's `[[sensitive]]` column tags, `[[masking]]`
//!   profiles per identity and `[[detector]]`s, compiled.
//! - [`strategy`]: what a masked value becomes (redaction, partial, keyed
//!   token, NULL).
//! - [`detect`]: content detectors run on every text value whatever its
//!   lineage (SSNs, Luhn-checked card numbers, e-mail addresses, secrets).
//! - [`lineage`]: which base columns each output column of a statement
//!   derives from, traced through the parsed SQL with the catalog.
//! - [`catalog`]: the proxy's own upstream connection per target and
//!   database, resolving relations, columns and view definitions (cached).
//! - [`plan`]: a statement's masking plan: refuse it, or how to mask each
//!   result column.
//! - [`rows`]: rewriting `DataRow`, COPY data, errors, notices,
//!   `ParameterStatus` and notifications on their way to the client.

pub mod catalog;
pub mod detect;
pub mod lineage;
pub mod own;
pub mod plan;
pub mod policy;
pub mod rows;
pub mod strategy;

pub use policy::{MaskPolicy, Profile};
pub use strategy::Strategy;
