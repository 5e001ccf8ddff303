//! Message type bytes, named as the PostgreSQL protocol docs name the
//! messages ("Message Formats"). The same byte means different messages in
//! the two directions, hence two modules.

/// Messages sent by the client.
pub mod frontend {
    /// `Query` (simple query protocol).
    pub const QUERY: u8 = b'Q';
    /// `Parse` (extended query protocol).
    pub const PARSE: u8 = b'P';
    /// `Bind`.
    pub const BIND: u8 = b'B';
    /// `Describe`.
    pub const DESCRIBE: u8 = b'D';
    /// `Execute`.
    pub const EXECUTE: u8 = b'E';
    /// `Sync`.
    pub const SYNC: u8 = b'S';
    /// `Flush`.
    pub const FLUSH: u8 = b'H';
    /// `Close` (statement or portal).
    pub const CLOSE: u8 = b'C';
    /// `FunctionCall` (fast-path function call).
    pub const FUNCTION_CALL: u8 = b'F';
    /// `CopyData`.
    pub const COPY_DATA: u8 = b'd';
    /// `CopyDone`.
    pub const COPY_DONE: u8 = b'c';
    /// `CopyFail`.
    pub const COPY_FAIL: u8 = b'f';
    /// `Terminate`.
    pub const TERMINATE: u8 = b'X';
    /// `PasswordMessage`, `SASLInitialResponse`, `SASLResponse`, `GSSResponse`.
    pub const PASSWORD: u8 = b'p';
}

/// Messages sent by the server.
pub mod backend {
    /// `Authentication*` family.
    pub const AUTHENTICATION: u8 = b'R';
    /// `ParameterStatus`.
    pub const PARAMETER_STATUS: u8 = b'S';
    /// `BackendKeyData`.
    pub const BACKEND_KEY_DATA: u8 = b'K';
    /// `NegotiateProtocolVersion`.
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    /// `ReadyForQuery`.
    pub const READY_FOR_QUERY: u8 = b'Z';
    /// `ErrorResponse`.
    pub const ERROR_RESPONSE: u8 = b'E';
    /// `NoticeResponse`.
    pub const NOTICE_RESPONSE: u8 = b'N';
    /// `NotificationResponse` (LISTEN/NOTIFY).
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    /// `RowDescription`.
    pub const ROW_DESCRIPTION: u8 = b'T';
    /// `DataRow`.
    pub const DATA_ROW: u8 = b'D';
    /// `CommandComplete`.
    pub const COMMAND_COMPLETE: u8 = b'C';
    /// `EmptyQueryResponse`.
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    /// `ParseComplete`.
    pub const PARSE_COMPLETE: u8 = b'1';
    /// `BindComplete`.
    pub const BIND_COMPLETE: u8 = b'2';
    /// `CloseComplete`.
    pub const CLOSE_COMPLETE: u8 = b'3';
    /// `ParameterDescription`.
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    /// `NoData`.
    pub const NO_DATA: u8 = b'n';
    /// `PortalSuspended`.
    pub const PORTAL_SUSPENDED: u8 = b's';
    /// `CopyInResponse`.
    pub const COPY_IN_RESPONSE: u8 = b'G';
    /// `CopyOutResponse`.
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    /// `CopyBothResponse`.
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    /// `CopyData`.
    pub const COPY_DATA: u8 = b'd';
    /// `CopyDone`.
    pub const COPY_DONE: u8 = b'c';
    /// `FunctionCallResponse`.
    pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
}
