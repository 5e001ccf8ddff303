//! PostgreSQL wire protocol: framing and the messages the proxy looks inside.
