//! Statement text as the audit log records it: proof of what ran, without
//! the secrets a statement carries.
//!
//! PostgreSQL's own lexer (`pg_query::scan_tokens`) finds every constant of
//! the text. A constant is a secret when
//! - it follows the keyword `PASSWORD` (`CREATE/ALTER ROLE ... [ENCRYPTED]
//!   PASSWORD '...'`) or the option name `password` / `passwd` (`CREATE USER
//!   MAPPING ... OPTIONS (password '...')`, `CREATE SERVER ... OPTIONS`),
//! - it is a connection string holding `password=` (`dblink_connect`,
//!   `postgres_fdw` options),
//! - or a content detector (SSN, card, e-mail ... as configured) finds a
//!   value in it (`INSERT INTO people VALUES (..., '111-22-3333')`).
//! Each secret is replaced by `'[REDACTED:<why>:<mac>]'`, where `<mac>` is
//! the first 12 hex digits of HMAC-SHA256 of the constant under the host's
//! masking key: equal values get equal marks (a security team can follow
//! one value through the log) and nobody without the key can test a guess,
//! not even for values of low entropy such as an SSN. The rest of the text
//! is kept byte for byte. Text the lexer cannot read (an unterminated
//! quote) is recorded as a placeholder, never in clear.

use hmac::{Hmac, Mac};
use pg_query::protobuf::Token;
use sha2::Sha256;

use crate::mask::detect::Detectors;

/// The recorded text and what was taken out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    /// The text with each secret replaced.
    pub text: String,
    /// Why each replacement was made (`password`, `conninfo`, a detector
    /// category), in order.
    pub reasons: Vec<String>,
}

/// `text` as the audit log records it (see the module documentation).
pub fn redact(text: &str, detectors: &Detectors, key: &[u8; 32]) -> Redacted {
    // No quote, no dollar and no digit: no constant can hold anything.
    if !text
        .bytes()
        .any(|b| b == b'\'' || b == b'$' || b.is_ascii_digit())
    {
        return Redacted {
            text: text.to_owned(),
            reasons: Vec::new(),
        };
    }
    let tokens = match pg_query::scan_tokens(text) {
        Ok(t) => t,
        Err(_) => {
            // Up to the first quote nothing can be a string constant.
            let safe = text.find(['\'', '$']).unwrap_or(0);
            let (head, rest) = text.split_at(safe);
            let head = head.trim_end_matches(|c: char| c.is_ascii_digit());
            return Redacted {
                text: format!(
                    "{head}[not recorded: {} bytes PostgreSQL's lexer cannot read; {}]",
                    text.len() - head.len(),
                    mark(key, rest)
                ),
                reasons: vec!["unlexable".to_owned()],
            };
        }
    };
    let mut out = String::with_capacity(text.len());
    let mut reasons = Vec::new();
    let mut at = 0;
    let significant: Vec<&pg_query::protobuf::ScanToken> = tokens
        .iter()
        .filter(|t| {
            !matches!(
                Token::try_from(t.token),
                Ok(Token::SqlComment | Token::CComment)
            )
        })
        .collect();
    for (i, t) in significant.iter().enumerate() {
        let kind = Token::try_from(t.token).unwrap_or(Token::Nul);
        let (start, end) = (t.start as usize, t.end as usize);
        let Some(raw) = text.get(start..end) else {
            continue;
        };
        let why = match kind {
            Token::Sconst | Token::Usconst => {
                let value = string_value(raw);
                let after_password = i > 0 && {
                    let prev = significant[i - 1];
                    let word = text
                        .get(prev.start as usize..prev.end as usize)
                        .unwrap_or_default();
                    matches!(Token::try_from(prev.token), Ok(Token::Password))
                        || word.eq_ignore_ascii_case("password")
                        || word.eq_ignore_ascii_case("passwd")
                        || word.eq_ignore_ascii_case("\"password\"")
                };
                if after_password {
                    Some("password".to_owned())
                } else if value.to_ascii_lowercase().contains("password=") {
                    Some("conninfo".to_owned())
                } else {
                    detectors
                        .scan(&value)
                        .first()
                        .map(|h| h.category.to_owned())
                }
            }
            Token::Iconst | Token::Fconst => {
                detectors.scan(raw).first().map(|h| h.category.to_owned())
            }
            _ => None,
        };
        if let Some(why) = why {
            out.push_str(&text[at..start]);
            out.push_str(&format!("'[REDACTED:{why}:{}]'", mark(key, raw)));
            at = end;
            reasons.push(why);
        }
    }
    out.push_str(&text[at..]);
    Redacted { text: out, reasons }
}

/// A command-line argument of an attested process as it is recorded: the
/// SQL in `psql -c '...'` and connection strings (`password=...`) carry
/// secrets too. Connection-string passwords are cut first, then the
/// argument goes through [`redact`] with the built-in detectors when it
/// holds a quote (unkeyed marks: attestation has no key, the kind is said).
pub fn redact_arg(arg: &str) -> String {
    use std::sync::OnceLock;
    static PASSWORD: OnceLock<regex::Regex> = OnceLock::new();
    static DETECTORS: OnceLock<Detectors> = OnceLock::new();
    let password = PASSWORD.get_or_init(|| {
        regex::Regex::new(r"(?i)\b(password|passwd|pgpassword)\s*=\s*('[^']*'|[^\s']*)")
            .expect("valid")
    });
    let cut = password.replace_all(arg, "$1=[REDACTED:conninfo]");
    if !cut.contains('\'') && !cut.contains('$') {
        return cut.into_owned();
    }
    let detectors = DETECTORS.get_or_init(|| Detectors::new(crate::mask::detect::builtin()));
    let r = redact(&cut, detectors, &[0; 32]);
    if r.reasons.is_empty() {
        return r.text;
    }
    // The zero key's marks would be a dictionary: drop them.
    let mark = MARK
        .get_or_init(|| regex::Regex::new(r"\[REDACTED:([a-z_]+):[0-9a-f]{12}\]").expect("valid"));
    mark.replace_all(&r.text, "[REDACTED:$1]").into_owned()
}

static MARK: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();

/// The keyed mark of a secret: 12 hex digits of HMAC-SHA256.
fn mark(key: &[u8; 32], secret: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(secret.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..6])
}

/// The value of a string constant as written (`'it''s'`, `E'\n'`,
/// `$$x$$`, `U&'...'`): close enough for the detectors, which look for
/// shapes, not exact bytes.
fn string_value(raw: &str) -> String {
    let body = raw.trim_start_matches(['E', 'e', 'U', 'u', '&']);
    if let Some(rest) = body.strip_prefix('$') {
        // $tag$ ... $tag$
        if let Some(open_end) = rest.find('$') {
            let tag = &rest[..open_end];
            let inner = &rest[open_end + 1..];
            let close = format!("${tag}$");
            return inner
                .strip_suffix(close.as_str())
                .unwrap_or(inner)
                .to_owned();
        }
    }
    body.trim_start_matches('\'')
        .trim_end_matches('\'')
        .replace("''", "'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detectors() -> Detectors {
        Detectors::new(crate::mask::detect::builtin())
    }

    fn r(text: &str) -> Redacted {
        redact(text, &detectors(), &[7; 32])
    }

    #[test]
    fn passwords_are_never_recorded() {
        for (sql, secret) in [
            ("ALTER ROLE app PASSWORD 'hunter2'", "hunter2"),
            (
                "CREATE ROLE x LOGIN ENCRYPTED PASSWORD 'SCRAM-SHA-256$4096:abc'",
                "SCRAM-SHA-256",
            ),
            ("alter user app with password E'hun\\'ter2'", "ter2"),
            ("ALTER USER app PASSWORD $pw$s3cr3t$pw$", "s3cr3t"),
            (
                "CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'u', password 'pw-123')",
                "pw-123",
            ),
            (
                "CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'h', \"password\" 'x9x9')",
                "x9x9",
            ),
            (
                "SELECT dblink_connect('host=db user=u password=topsecret')",
                "topsecret",
            ),
            ("ALTER ROLE app PASSWORD /* c */ 'hunter2'", "hunter2"),
        ] {
            let out = r(sql);
            assert!(!out.text.contains(secret), "{sql} -> {}", out.text);
            assert!(out.text.contains("[REDACTED:"), "{}", out.text);
        }
        assert!(
            r("ALTER ROLE app PASSWORD 'hunter2'")
                .text
                .starts_with("ALTER ROLE app PASSWORD '[REDACTED:password:")
        );
    }

    #[test]
    fn tagged_looking_values_are_replaced_with_a_keyed_mark() {
        let out =
            r("INSERT INTO people VALUES (4, 'Alan', '111-22-3333'), (5, 'Kurt', '111-22-3333')");
        assert!(!out.text.contains("111-22-3333"), "{}", out.text);
        assert!(
            out.text
                .starts_with("INSERT INTO people VALUES (4, 'Alan', '[REDACTED:ssn:"),
            "{}",
            out.text
        );
        // The same value, the same mark; another key, another mark.
        let marks: Vec<&str> = out
            .text
            .match_indices("[REDACTED:ssn:")
            .map(|(i, _)| &out.text[i..i + 27])
            .collect();
        assert_eq!(marks.len(), 2);
        assert_eq!(marks[0], marks[1]);
        let other = redact("SELECT '111-22-3333'", &detectors(), &[8; 32]).text;
        assert!(
            !other.contains(&marks[0][14..26]),
            "{other} vs {}",
            marks[0]
        );
        let out = r("SELECT * FROM cards WHERE number = 4111111111111111");
        assert!(!out.text.contains("4111111111111111"), "{}", out.text);
    }

    #[test]
    fn command_lines_lose_their_secrets() {
        assert_eq!(
            redact_arg("host=db user=app password=hunter2 dbname=x"),
            "host=db user=app password=[REDACTED:conninfo] dbname=x"
        );
        assert_eq!(redact_arg("PASSWORD='a b'"), "PASSWORD=[REDACTED:conninfo]");
        let sql = redact_arg("ALTER ROLE app PASSWORD 'hunter2'");
        assert_eq!(sql, "ALTER ROLE app PASSWORD '[REDACTED:password]'");
        assert!(!redact_arg("select '111-22-3333'").contains("111-22-3333"));
        assert_eq!(redact_arg("/usr/bin/psql"), "/usr/bin/psql");
        assert_eq!(
            redact_arg("select count(*) from t where id = 5"),
            "select count(*) from t where id = 5"
        );
    }

    #[test]
    fn the_rest_is_kept_byte_for_byte() {
        for sql in [
            "SELECT id, name FROM customers WHERE id = 42 AND name = 'Ada'",
            "select 1",
            "SELECT 'it''s' -- password 'x' in a comment is not a constant\n",
        ] {
            assert_eq!(r(sql).text, sql);
        }
        let cut = r("SELECT 'unterminated").text;
        assert!(
            cut.starts_with("SELECT [not recorded:") && !cut.contains("unterminated"),
            "{cut}"
        );
    }
}
