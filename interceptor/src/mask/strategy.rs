//! What a masked value becomes.

use std::fmt;

use serde::Serialize;

/// How values of one category are shown to one identity. Ordered from the
/// least to the most strict: when a value derives from several categories
/// the strictest strategy among them applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The real value (an identity explicitly allowed to see it).
    Raw,
    /// Only the last `n` letters and digits shown (the domain of an e-mail
    /// address); the rest replaced by `*`, separators kept.
    Partial(u8),
    /// A deterministic keyed token: the same value gives the same token under
    /// the same key, so joins and GROUP BY still work on masked values.
    Hash,
    /// A fixed `[REDACTED:<category>]` text.
    Redact,
    /// SQL NULL.
    Null,
}

impl Strategy {
    /// Parses `raw`, `redact`, `null`, `hash`, `partial` or `partial:N`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "raw" => Ok(Self::Raw),
            "redact" => Ok(Self::Redact),
            "null" => Ok(Self::Null),
            "hash" | "token" => Ok(Self::Hash),
            "partial" => Ok(Self::Partial(4)),
            other => match other.strip_prefix("partial:").map(str::parse::<u8>) {
                Some(Ok(n)) if n > 0 && n <= 16 => Ok(Self::Partial(n)),
                _ => Err(format!(
                    "unknown masking strategy `{other}`: use raw, redact, null, hash, partial or partial:N (1-16)"
                )),
            },
        }
    }

    /// [`Self::apply`] on bytes, appending the masked value to `out`
    /// (the hot path of result rows: no allocation of its own). `false`
    /// means SQL NULL (nothing appended).
    pub fn apply_into(
        self,
        category: &str,
        value: &[u8],
        key: &[u8; 32],
        out: &mut Vec<u8>,
    ) -> bool {
        match self {
            Self::Null => false,
            Self::Raw => {
                out.extend_from_slice(value);
                true
            }
            Self::Redact => {
                out.extend_from_slice(b"[REDACTED:");
                out.extend_from_slice(category.as_bytes());
                out.push(b']');
                true
            }
            Self::Hash => {
                out.extend_from_slice(token(category, value, key).as_bytes());
                true
            }
            Self::Partial(n)
                if value.is_ascii() && category != "email" && !value.contains(&b'@') =>
            {
                let keep = n as usize;
                let alnum = value.iter().filter(|b| b.is_ascii_alphanumeric()).count();
                let mut hide = if alnum <= keep * 2 {
                    alnum
                } else {
                    alnum - keep
                };
                out.extend(value.iter().map(|&b| {
                    if b.is_ascii_alphanumeric() && hide > 0 {
                        hide -= 1;
                        b'*'
                    } else {
                        b
                    }
                }));
                true
            }
            Self::Partial(n) => {
                out.extend_from_slice(
                    partial(category, &String::from_utf8_lossy(value), n as usize).as_bytes(),
                );
                true
            }
        }
    }

    /// Masks a text value of `category`. `None` means SQL NULL.
    pub fn apply(self, category: &str, value: &str, key: &[u8; 32]) -> Option<String> {
        match self {
            Self::Raw => Some(value.to_owned()),
            Self::Null => None,
            Self::Redact => Some(format!("[REDACTED:{category}]")),
            Self::Hash => Some(token(category, value.as_bytes(), key)),
            Self::Partial(n) => Some(partial(category, value, n as usize)),
        }
    }
}

impl Strategy {
    /// Strictness: the kind, then (for partial) fewer characters shown.
    fn rank(self) -> (u8, u8) {
        match self {
            Self::Raw => (0, 0),
            Self::Partial(n) => (1, u8::MAX - n),
            Self::Hash => (2, 0),
            Self::Redact => (3, 0),
            Self::Null => (4, 0),
        }
    }
}

impl PartialOrd for Strategy {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Strategy {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Raw => f.write_str("raw"),
            Self::Partial(n) => write!(f, "partial:{n}"),
            Self::Hash => f.write_str("hash"),
            Self::Redact => f.write_str("redact"),
            Self::Null => f.write_str("null"),
        }
    }
}

/// `tok_<category>_<16 hex>`: the first 64 bits of SipHash-2-4-128, a
/// keyed pseudorandom function made for short inputs, of the category and
/// the value, keyed with the first 16 bytes of the masking key. Without the
/// key a token cannot be computed or reversed (an SSN cannot be found by
/// trying all of them); with the same key the same value always gives the
/// same token.
pub fn token(category: &str, value: &[u8], key: &[u8; 32]) -> String {
    use siphasher::sip128::{Hasher128, SipHasher24};
    use std::hash::Hasher;
    let mut k = [0u8; 16];
    k.copy_from_slice(&key[..16]);
    let mut h = SipHasher24::new_with_key(&k);
    h.write(category.as_bytes());
    h.write_u8(0);
    h.write(value);
    let digest = h.finish128().as_bytes();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(5 + category.len() + 17);
    out.push_str("tok_");
    out.push_str(category);
    out.push('_');
    for b in &digest[..8] {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

/// Keeps the last `keep` letters/digits (for e-mail addresses: the domain,
/// and the first letter of the local part); a value too short to hide
/// anything by that rule is hidden whole.
fn partial(category: &str, value: &str, keep: usize) -> String {
    if (category == "email" || value.contains('@'))
        && let Some((local, domain)) = value.rsplit_once('@')
    {
        let first: String = local.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    if value.is_ascii() {
        // The common case, on bytes.
        let alnum = value.bytes().filter(u8::is_ascii_alphanumeric).count();
        if alnum <= keep * 2 {
            return value
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() {
                        '*'
                    } else {
                        b as char
                    }
                })
                .collect();
        }
        let mut hide = alnum - keep;
        return value
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() && hide > 0 {
                    hide -= 1;
                    '*'
                } else {
                    b as char
                }
            })
            .collect();
    }
    let alnum = value.chars().filter(char::is_ascii_alphanumeric).count();
    if alnum <= keep * 2 {
        return value
            .chars()
            .map(|c| if c.is_alphanumeric() { '*' } else { c })
            .collect();
    }
    let mut shown = 0;
    let mut out: Vec<char> = value
        .chars()
        .rev()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                shown += 1;
                if shown <= keep { c } else { '*' }
            } else if c.is_alphanumeric() {
                '*'
            } else {
                c
            }
        })
        .collect();
    out.reverse();
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn strategies() {
        assert_eq!(
            Strategy::Redact.apply("ssn", "123-45-6789", &KEY).unwrap(),
            "[REDACTED:ssn]"
        );
        assert_eq!(Strategy::Null.apply("ssn", "123-45-6789", &KEY), None);
        assert_eq!(
            Strategy::Partial(4)
                .apply("ssn", "123-45-6789", &KEY)
                .unwrap(),
            "***-**-6789"
        );
        assert_eq!(
            Strategy::Partial(4)
                .apply("card", "4111 1111 1111 1111", &KEY)
                .unwrap(),
            "**** **** **** 1111"
        );
        assert_eq!(
            Strategy::Partial(4)
                .apply("email", "jane.doe@example.com", &KEY)
                .unwrap(),
            "j***@example.com"
        );
        assert_eq!(
            Strategy::Partial(4)
                .apply("secret", "abc123", &KEY)
                .unwrap(),
            "******"
        );
        let a = Strategy::Hash.apply("ssn", "123-45-6789", &KEY).unwrap();
        assert_eq!(a, Strategy::Hash.apply("ssn", "123-45-6789", &KEY).unwrap());
        assert_ne!(a, Strategy::Hash.apply("ssn", "123-45-6780", &KEY).unwrap());
        assert_ne!(
            a,
            Strategy::Hash
                .apply("ssn", "123-45-6789", &[8; 32])
                .unwrap()
        );
        assert!(!a.contains("6789"));
        // The byte path gives the same text as the string path.
        for s in [
            Strategy::Redact,
            Strategy::Hash,
            Strategy::Partial(4),
            Strategy::Partial(2),
            Strategy::Raw,
        ] {
            for v in [
                "123-45-6789",
                "4111 1111 1111 1111",
                "ab",
                "jane@example.com",
                "名前-1234-5678",
            ] {
                let mut out = Vec::new();
                assert!(s.apply_into("ssn", v.as_bytes(), &KEY, &mut out));
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    s.apply("ssn", v, &KEY).unwrap(),
                    "{s} {v}"
                );
            }
        }
        assert!(!Strategy::Null.apply_into("ssn", b"x", &KEY, &mut Vec::new()));
        // A long value works the same.
        let long = "x".repeat(300);
        assert_eq!(
            token("ssn", long.as_bytes(), &KEY),
            token("ssn", long.as_bytes(), &KEY)
        );
        assert_ne!(
            token("ssn", long.as_bytes(), &KEY),
            token("card", long.as_bytes(), &KEY)
        );
        // The byte path gives the same text as the string path.
        for s in [
            Strategy::Redact,
            Strategy::Hash,
            Strategy::Partial(4),
            Strategy::Partial(2),
            Strategy::Raw,
        ] {
            for v in [
                "123-45-6789",
                "4111 1111 1111 1111",
                "ab",
                "jane@example.com",
                "名前-1234-5678",
            ] {
                let mut out = Vec::new();
                assert!(s.apply_into("ssn", v.as_bytes(), &KEY, &mut out));
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    s.apply("ssn", v, &KEY).unwrap(),
                    "{s} {v}"
                );
            }
        }
        assert!(!Strategy::Null.apply_into("ssn", b"x", &KEY, &mut Vec::new()));
    }

    #[test]
    fn strictness_and_parsing() {
        assert!(Strategy::Null > Strategy::Redact && Strategy::Redact > Strategy::Hash);
        assert!(Strategy::Hash > Strategy::Partial(4) && Strategy::Partial(2) > Strategy::Raw);
        assert_eq!(Strategy::parse("partial:2").unwrap(), Strategy::Partial(2));
        assert!(Strategy::parse("partial:0").is_err());
        assert!(
            Strategy::parse("scramble")
                .unwrap_err()
                .contains("unknown masking strategy")
        );
    }
}
