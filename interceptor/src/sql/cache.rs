//! A bounded cache of analyses by exact SQL text.
//!
//! Analysis is a pure function of the text (and the limits, fixed for the
//! daemon), and clients repeat texts all the time: `BEGIN`, `COMMIT`, an
//! ORM's or psql's queries, a prepared statement parsed again on every
//! connection. Only the analysis is cached; the decision is made afresh from
//! the policy in force. Bounded in entries and text length; when full it is
//! cleared (it refills with what is in use).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use super::{Analysis, Limits, SqlError, analyze};

/// Longest text cached; longer ones are analysed every time.
const MAX_TEXT: usize = 4096;
/// Entries before the cache is cleared.
const MAX_ENTRIES: usize = 2048;

type Entry = Arc<Result<Analysis, SqlError>>;

fn cache() -> &'static Mutex<HashMap<String, Entry>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Entry>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// [`analyze`], remembering the result for texts seen before.
pub fn analyze_cached(sql: &str, limits: &Limits) -> Entry {
    // The cache holds analyses made with the default limits (the daemon's).
    if sql.len() > MAX_TEXT || *limits != Limits::default() {
        return Arc::new(analyze(sql, limits));
    }
    let lock = || {
        cache()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some(hit) = lock().get(sql) {
        return Arc::clone(hit);
    }
    let fresh = Arc::new(analyze(sql, limits));
    let mut map = lock();
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(sql.to_owned(), Arc::clone(&fresh));
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_same_analysis() {
        let l = Limits::default();
        let a = analyze_cached("select 1 from cache_probe_t", &l);
        let b = analyze_cached("select 1 from cache_probe_t", &l);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(*a, analyze("select 1 from cache_probe_t", &l));
        let c = analyze_cached("select 2 from cache_probe_t", &l);
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
