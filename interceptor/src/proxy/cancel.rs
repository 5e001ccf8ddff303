//! Cancel routing. Clients get a proxy-made `BackendKeyData`; a
//! `CancelRequest` with that key, arriving on a new connection, is sent on to
//! the upstream backend with the upstream's own key.
//!
//! The proxy key is random (pid and secret: 62 unguessable bits), so a
//! caller can only cancel a query of a session it was told the key of.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

/// The proxy-issued key a client cancels with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CancelKey {
    /// `BackendKeyData` process id (random, positive).
    pub pid: i32,
    /// `BackendKeyData` secret.
    pub secret: i32,
}

/// Where a cancel for one session goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelTarget {
    /// Target name, for logs.
    pub target: String,
    /// Upstream address the session is connected to.
    pub addr: SocketAddr,
    /// The upstream's `BackendKeyData` pid.
    pub pid: i32,
    /// The upstream's `BackendKeyData` secret.
    pub secret: i32,
    /// Whether the upstream connection uses TLS (the cancel connection then
    /// does too, with the same target settings).
    pub tls: bool,
    /// The proxy session ([`super::hooks::SessionInfo::id`]): a cancel may
    /// be for a statement the session's hooks hold (approval), which never
    /// reached the upstream.
    pub session: u64,
}

/// Proxy key -> upstream backend, for the sessions alive now.
#[derive(Debug, Default)]
pub struct CancelMap {
    /// Guarded by a plain mutex: held for a hash-map operation only.
    inner: Mutex<HashMap<CancelKey, CancelTarget>>,
}

impl CancelMap {
    /// An empty map.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Issues a fresh proxy key for `target`. The key is forgotten when the
    /// returned guard is dropped (the session ended).
    pub fn register(self: &Arc<Self>, target: CancelTarget) -> CancelRegistration {
        let mut map = self.lock();
        let key = loop {
            // Positive pid: some clients print or compare it as a process id.
            let key = CancelKey {
                pid: rand::random::<i32>() & i32::MAX,
                secret: rand::random(),
            };
            if key.pid != 0 && !map.contains_key(&key) {
                break key;
            }
        };
        map.insert(key, target);
        CancelRegistration {
            map: Arc::clone(self),
            key,
        }
    }

    /// The backend a `CancelRequest` with `key` is for.
    pub fn get(&self, key: CancelKey) -> Option<CancelTarget> {
        self.lock().get(&key).cloned()
    }

    /// Number of sessions with a key.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session has a key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CancelKey, CancelTarget>> {
        // A panic while holding the lock leaves a consistent map (single
        // insert/remove): keep using it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A live session's key; removes it from the map on drop.
#[derive(Debug)]
pub struct CancelRegistration {
    /// The map the key is in.
    map: Arc<CancelMap>,
    /// The key.
    key: CancelKey,
}

impl CancelRegistration {
    /// The key to give the client in `BackendKeyData`.
    pub fn key(&self) -> CancelKey {
        self.key
    }
}

impl Drop for CancelRegistration {
    fn drop(&mut self) {
        self.map.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(pid: i32) -> CancelTarget {
        CancelTarget {
            target: "db".into(),
            addr: "127.0.0.1:5432".parse().unwrap(),
            pid,
            secret: pid * 10,
            tls: false,
            session: 0,
        }
    }

    #[test]
    fn keys_route_to_their_backend_until_the_session_ends() {
        let map = CancelMap::new();
        let a = map.register(target(1));
        let b = map.register(target(2));
        assert_ne!(a.key(), b.key());
        assert!(a.key().pid > 0);
        assert_eq!(map.get(a.key()).unwrap().pid, 1);
        assert_eq!(map.get(b.key()).unwrap().secret, 20);
        // A right pid with a wrong secret finds nothing.
        let wrong = CancelKey {
            pid: a.key().pid,
            secret: a.key().secret.wrapping_add(1),
        };
        assert!(map.get(wrong).is_none());
        let key_a = a.key();
        drop(a);
        assert!(map.get(key_a).is_none());
        assert_eq!(map.len(), 1);
        drop(b);
        assert!(map.is_empty());
    }
}
