//! SQL-level `PREPARE` / `EXECUTE` / `DEALLOCATE`: the names and bodies
//! the session remembers, so an `EXECUTE` is decided as the statement it runs.

/// The name in `PREPARE name ...`, `EXECUTE name ...` or `DEALLOCATE
/// [PREPARE] name`, folded as PostgreSQL folds identifiers.
pub fn prepared_name(text: &str) -> Option<String> {
    let mut words = text.split(|c: char| c.is_whitespace() || c == '(' || c == ';').filter(|w| !w.is_empty());
    let _verb = words.next()?;
    let mut name = words.next()?;
    if name.eq_ignore_ascii_case("prepare") {
        name = words.next()?;
    }
    Some(match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => name.to_ascii_lowercase(),
    })
}

/// The statement after `AS` in `PREPARE name [(types)] AS statement`.
pub fn prepare_body(text: &str) -> Option<&str> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower[from..].find("as") {
        let at = from + pos;
        let before = lower[..at].chars().last().is_none_or(|c| c.is_whitespace() || c == ')');
        let after = lower[at + 2..].chars().next().is_none_or(char::is_whitespace);
        if before && after && at > 0 {
            return Some(text[at + 2..].trim());
        }
        from = at + 2;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_names() {
        assert_eq!(prepared_name("PREPARE Foo (int) AS SELECT 1").as_deref(), Some("foo"));
        assert_eq!(prepared_name("EXECUTE \"Foo\"(1)").as_deref(), Some("Foo"));
        assert_eq!(prepared_name("DEALLOCATE PREPARE foo").as_deref(), Some("foo"));
        assert_eq!(prepare_body("PREPARE q(int) AS DELETE FROM t WHERE id = $1"), Some("DELETE FROM t WHERE id = $1"));
        assert_eq!(prepare_body("prepare q as select 1"), Some("select 1"));
    }

}
