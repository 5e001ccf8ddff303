//! Content detectors: defence in depth on every text value that reaches a
//! client, whatever the value's lineage. A hit is masked by its category's
//! strategy for the identity.
//!
//! Built in: `ssn` (US social security numbers, `123-45-6789`), `card`
//! (13-19 digit payment card numbers, Luhn-checked), `email`, and `secret`
//! (AWS access key ids, JWTs, PEM private key blocks). Policies add their own
//! (`[[detector]]`) and may switch built-in ones off.

use regex::Regex;

/// One detector.
#[derive(Debug, Clone)]
pub struct Detector {
    /// Name (`ssn`, `card`, ... or the policy's).
    pub name: String,
    /// Category its hits are masked as.
    pub category: String,
    regex: Regex,
    /// Hits must pass the Luhn check (card numbers).
    luhn: bool,
}

impl Detector {
    /// A detector from a pattern; the error names what is wrong.
    pub fn new(name: &str, category: &str, pattern: &str, luhn: bool) -> Result<Self, String> {
        let regex = regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("detector `{name}`: invalid regex: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            category: category.to_owned(),
            regex,
            luhn,
        })
    }
}

/// The built-in detectors, by name.
pub fn builtin() -> Vec<Detector> {
    let d = |name, category, pattern, luhn| {
        Detector::new(name, category, pattern, luhn).expect("built-in patterns compile")
    };
    vec![
        d(
            "ssn",
            "ssn",
            r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)",
            false,
        ),
        d(
            "card",
            "card",
            r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\b)",
            true,
        ),
        d(
            "email",
            "email",
            r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
            false,
        ),
        d(
            "aws-access-key",
            "secret",
            r"(?-u:\b)(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}(?-u:\b)",
            false,
        ),
        d(
            "jwt",
            "secret",
            r"(?-u:\b)eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
            false,
        ),
        d(
            "private-key",
            "secret",
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
            false,
        ),
    ]
}

/// A hit: byte range in the value and the detector's category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit<'a> {
    /// Start byte.
    pub start: usize,
    /// End byte (exclusive).
    pub end: usize,
    /// Category to mask it as.
    pub category: &'a str,
}

/// A set of detectors run together.
#[derive(Debug, Clone, Default)]
pub struct Detectors {
    list: Vec<Detector>,
    /// All patterns in one automaton: most values match none, and are
    /// cleared in one pass instead of one per detector.
    any: Option<regex::RegexSet>,
    /// Only built-in detectors: a byte scan clears values none of them
    /// could match before any automaton runs.
    builtin_only: bool,
}

impl Detectors {
    /// These detectors.
    pub fn new(list: Vec<Detector>) -> Self {
        let any = regex::RegexSetBuilder::new(list.iter().map(|d| d.regex.as_str()))
            .size_limit(8 << 20)
            .build()
            .ok();
        let builtins = if list
            .iter()
            .all(|d| BUILTIN_NAMES.contains(&d.name.as_str()))
        {
            builtin()
        } else {
            Vec::new()
        };
        let builtin_only = !builtins.is_empty()
            && list.iter().all(|d| {
                builtins
                    .iter()
                    .any(|b| b.name == d.name && b.regex.as_str() == d.regex.as_str())
            });
        Self {
            list,
            any,
            builtin_only,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The detectors.
    pub fn list(&self) -> &[Detector] {
        &self.list
    }

    /// Non-overlapping hits in `value`, in order (earlier detectors win an
    /// overlap).
    pub fn scan<'a>(&'a self, value: &str) -> Vec<Hit<'a>> {
        let mut hits: Vec<Hit<'a>> = Vec::new();
        if !worth_scanning(value.as_bytes())
            || (self.builtin_only && !builtin_could_match(value.as_bytes()))
            || self.any.as_ref().is_some_and(|set| !set.is_match(value))
        {
            return hits;
        }
        for d in &self.list {
            for m in d.regex.find_iter(value) {
                if d.luhn && !luhn(m.as_str()) {
                    continue;
                }
                if hits.iter().any(|h| m.start() < h.end && h.start < m.end()) {
                    continue;
                }
                hits.push(Hit {
                    start: m.start(),
                    end: m.end(),
                    category: &d.category,
                });
            }
        }
        hits.sort_by_key(|h| h.start);
        hits
    }
}

/// Every built-in pattern needs a digit, an `@`, or a run of letters of some
/// length: values of one or two characters, and pure-letter short words, are
/// skipped without running the regexes. Custom detectors may match anything,
/// so this only gates on length.
fn worth_scanning(v: &[u8]) -> bool {
    v.len() >= 3
}

/// Names of the built-in detectors.
const BUILTIN_NAMES: &[&str] = &[
    "ssn",
    "card",
    "email",
    "aws-access-key",
    "jwt",
    "private-key",
];

/// Whether any built-in detector could match: an SSN has 9 digits and a
/// card 13, an e-mail an `@`, a JWT `eyJ`, a PEM block `-----BEGIN`, an AWS
/// key id 16 digits or capitals after its prefix (so at least one `A`).
fn builtin_could_match(v: &[u8]) -> bool {
    let mut digits = 0;
    let (mut at, mut dash, mut cap_a, mut e) = (false, false, false, false);
    for &b in v {
        match b {
            b'0'..=b'9' => digits += 1,
            b'@' => at = true,
            b'-' => dash = true,
            b'A' => cap_a = true,
            b'e' => e = true,
            _ => {}
        }
    }
    digits >= 9
        || at
        || (dash && v.windows(10).any(|w| w == b"-----BEGIN"))
        || cap_a
        || (e && v.windows(3).any(|w| w == b"eyJ"))
}

/// The Luhn checksum of the digits in `s`.
pub fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats(v: &str) -> Vec<String> {
        let d = Detectors::new(builtin());
        d.scan(v)
            .iter()
            .map(|h| format!("{}:{}", h.category, &v[h.start..h.end]))
            .collect()
    }

    #[test]
    fn finds_each_kind() {
        assert_eq!(cats("ssn 123-45-6789 here"), ["ssn:123-45-6789"]);
        assert_eq!(
            cats("card 4111 1111 1111 1111."),
            ["card:4111 1111 1111 1111"]
        );
        assert_eq!(cats("4111111111111111"), ["card:4111111111111111"]);
        assert!(cats("4111111111111112").is_empty(), "fails Luhn");
        assert_eq!(
            cats("mail jane.doe@example.com!"),
            ["email:jane.doe@example.com"]
        );
        assert_eq!(
            cats("key AKIAIOSFODNN7EXAMPLE"),
            ["secret:AKIAIOSFODNN7EXAMPLE"]
        );
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(cats(jwt), [format!("secret:{jwt}")]);
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----";
        assert_eq!(cats(pem), [format!("secret:{pem}")]);
        assert_eq!(
            cats("{\"ssn\": \"987-65-4321\", \"n\": 1}"),
            ["ssn:987-65-4321"]
        );
        assert!(cats("order 12345, 2026-11-21").is_empty());
    }

    #[test]
    fn luhn_check() {
        assert!(luhn("4111-1111-1111-1111"));
        assert!(luhn("5500 0000 0000 0004"));
        assert!(!luhn("1234567812345678"));
        assert!(!luhn("42"));
    }
}
