//! Names as PostgreSQL resolves their spelling: unquoted identifiers folded to
//! lower case, every identifier truncated to NAMEDATALEN-1 bytes.
//!
//! Source: `downcase_identifier` and `truncate_identifier` in PostgreSQL's
//! `src/backend/parser/scansup.c`. With a UTF-8 server encoding only ASCII
//! letters are folded; multi-byte characters are kept as they are.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

use super::Relation;

/// NAMEDATALEN - 1: the longest identifier PostgreSQL keeps, in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// An identifier as PostgreSQL stores it.
pub fn fold_ident(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        truncate(&ident.value).to_owned()
    } else {
        truncate(&ident.value.to_ascii_lowercase()).to_owned()
    }
}

/// Cut to at most 63 bytes without splitting a character (`pg_mbcliplen`).
pub fn truncate(name: &str) -> &str {
    if name.len() <= MAX_IDENTIFIER_BYTES {
        return name;
    }
    let mut end = MAX_IDENTIFIER_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// The identifiers of an object name, folded; `None` when a part is not a
/// plain identifier (dialect extensions PostgreSQL does not have).
pub fn folded_parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => Some(fold_ident(ident)),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

/// A relation from `[catalog.][schema.]name`. The catalog, when given, must be
/// the current database in PostgreSQL and does not change what is named.
pub fn relation(name: &ObjectName) -> Option<Relation> {
    let mut parts = folded_parts(name)?;
    let rel = parts.pop()?;
    Some(Relation {
        schema: parts.pop(),
        name: rel,
    })
}

/// A single-part (search_path-relative) name, folded; used for CTE lookups.
pub fn single(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => Some(fold_ident(ident)),
        _ => None,
    }
}

/// A function name as policy sees it: folded, `pg_catalog.` dropped, other
/// schemas kept (`myschema.f`).
pub fn function(name: &ObjectName) -> String {
    match folded_parts(name) {
        Some(parts) => function_from_parts(&parts),
        None => name.to_string().to_ascii_lowercase(),
    }
}

/// Same as [`function`], from already folded parts (pg_query's summary).
pub fn function_from_parts(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [name] => name.clone(),
        [.., schema, name] if schema == "pg_catalog" => name.clone(),
        [.., schema, name] => format!("{schema}.{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(value: &str, quoted: bool) -> Ident {
        if quoted {
            Ident::with_quote('"', value)
        } else {
            Ident::new(value)
        }
    }

    #[test]
    fn unquoted_folds_ascii_only() {
        assert_eq!(fold_ident(&ident("MixedCase", false)), "mixedcase");
        assert_eq!(fold_ident(&ident("MixedCase", true)), "MixedCase");
        assert_eq!(fold_ident(&ident("ÄBC", false)), "Äbc");
    }

    #[test]
    fn truncates_at_63_bytes_on_a_char_boundary() {
        let long = "a".repeat(70);
        assert_eq!(fold_ident(&ident(&long, false)).len(), 63);
        let multi = format!("{}é", "a".repeat(62));
        assert_eq!(truncate(&multi), "a".repeat(62));
    }

    #[test]
    fn function_names() {
        assert_eq!(
            function_from_parts(&["pg_catalog".into(), "set_config".into()]),
            "set_config"
        );
        assert_eq!(function_from_parts(&["s".into(), "f".into()]), "s.f");
        assert_eq!(
            function_from_parts(&["db".into(), "s".into(), "f".into()]),
            "s.f"
        );
    }
}
