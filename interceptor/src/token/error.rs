//! Why a token was refused: one variant per condition a client, an operator
//! or the audit log tells apart. Messages never contain the token, nor any
//! part of it (the issuer of an unverified token is attacker-chosen text).

/// A token that was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was presented where the identity requires one.
    #[error(
        "a token is required for this connection: pass the CI job's ID token or a host-issued token as the password"
    )]
    Missing,
    /// Longer than `[token] max_token_bytes`.
    #[error("the token is too large")]
    TooLarge,
    /// Not three base64url parts of JSON (header, claims, signature).
    #[error("the password is not a well-formed JWT")]
    Malformed,
    /// `alg` is `none`, an HMAC algorithm, or not in the issuer's allow-list.
    #[error("the token's signing algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// `iss` names no trusted issuer.
    #[error("the token's issuer is not trusted")]
    UnknownIssuer,
    /// The issuer's key set has no key with the token's `kid` (also after a refetch).
    #[error("the token is signed with a key its issuer does not publish")]
    UnknownKey,
    /// The issuer's keys could not be loaded and there is no last good copy.
    #[error("the token's issuer keys are unavailable; try again later")]
    KeysUnavailable,
    /// The signature does not verify with the issuer's key.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `aud` names none of the issuer's configured audiences.
    #[error("the token is for another audience")]
    WrongAudience,
    /// A claim the validator needs (`exp`, `iss`, `aud`) is missing or of the wrong type.
    #[error("the token lacks the required claim `{0}`")]
    MissingClaim(&'static str),
    /// The token's id (`jti`) was revoked.
    #[error("the token has been revoked")]
    Revoked,
}

impl TokenError {
    /// Stable code for audit records, logs and the documentation; never renamed.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "token_missing",
            Self::TooLarge => "token_too_large",
            Self::Malformed => "token_malformed",
            Self::AlgorithmNotAllowed => "token_algorithm_not_allowed",
            Self::UnknownIssuer => "token_unknown_issuer",
            Self::UnknownKey => "token_unknown_key",
            Self::KeysUnavailable => "token_keys_unavailable",
            Self::BadSignature => "token_bad_signature",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongAudience => "token_wrong_audience",
            Self::MissingClaim(_) => "token_missing_claim",
            Self::Revoked => "token_revoked",
        }
    }

    /// The message a client sees (`interceptor: ` is added by the caller).
    pub fn message(&self) -> String {
        self.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::TokenError;

    #[test]
    fn reasons_are_distinct() {
        let all = [
            TokenError::Missing,
            TokenError::TooLarge,
            TokenError::Malformed,
            TokenError::AlgorithmNotAllowed,
            TokenError::UnknownIssuer,
            TokenError::UnknownKey,
            TokenError::KeysUnavailable,
            TokenError::BadSignature,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::WrongAudience,
            TokenError::MissingClaim("exp"),
            TokenError::Revoked,
        ];
        let reasons: std::collections::HashSet<_> = all.iter().map(TokenError::reason).collect();
        let messages: std::collections::HashSet<_> = all.iter().map(TokenError::message).collect();
        assert_eq!(reasons.len(), all.len());
        assert_eq!(messages.len(), all.len());
    }
}
