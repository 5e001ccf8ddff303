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

/// `tok_<category>_<16 hex>`: BLAKE3 keyed hash of the category and value.
pub fn token(category: &str, value: &[u8], key: &[u8; 32]) -> String {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(category.as_bytes());
    h.update(&[0]);
    h.update(value);
    let digest = h.finalize();
    format!("tok_{category}_{}", &digest.to_hex()[..16])
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
    let alnum = value.chars().filter(char::is_ascii_alphanumeric).count();
    if alnum <= keep * 2 {
        return value.chars().map(|c| if c.is_alphanumeric() { '*' } else { c }).collect();
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
        assert_eq!(Strategy::Redact.apply("ssn", "123-45-6789", &KEY).unwrap(), "[REDACTED:ssn]");
        assert_eq!(Strategy::Null.apply("ssn", "123-45-6789", &KEY), None);
        assert_eq!(Strategy::Partial(4).apply("ssn", "123-45-6789", &KEY).unwrap(), "***-**-6789");
        assert_eq!(
            Strategy::Partial(4).apply("card", "4111 1111 1111 1111", &KEY).unwrap(),
            "**** **** **** 1111"
        );
        assert_eq!(Strategy::Partial(4).apply("email", "jane.doe@example.com", &KEY).unwrap(), "j***@example.com");
        assert_eq!(Strategy::Partial(4).apply("secret", "abc123", &KEY).unwrap(), "******");
        let a = Strategy::Hash.apply("ssn", "123-45-6789", &KEY).unwrap();
        assert_eq!(a, Strategy::Hash.apply("ssn", "123-45-6789", &KEY).unwrap());
        assert_ne!(a, Strategy::Hash.apply("ssn", "123-45-6780", &KEY).unwrap());
        assert_ne!(a, Strategy::Hash.apply("ssn", "123-45-6789", &[8; 32]).unwrap());
        assert!(!a.contains("6789"));
    }

    #[test]
    fn strictness_and_parsing() {
        assert!(Strategy::Null > Strategy::Redact && Strategy::Redact > Strategy::Hash);
        assert!(Strategy::Hash > Strategy::Partial(4) && Strategy::Partial(2) > Strategy::Raw);
        assert_eq!(Strategy::parse("partial:2").unwrap(), Strategy::Partial(2));
        assert!(Strategy::parse("partial:0").is_err());
        assert!(Strategy::parse("scramble").unwrap_err().contains("unknown masking strategy"));
    }
}
