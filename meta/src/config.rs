//! The versioned config: a small key/value namespace in the replicated state, for Grape's own
//! settings and for operators (`grape config get|set|list|history`).
//!
//! Every successful put on a key bumps that key's version (1, 2, 3, …), so a client can
//! compare-and-set: "set `k` to `v` only if it is still at version 4" (0 = absent). The last
//! [`CONFIG_HISTORY`] versions of each key are kept for `history`.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Earlier versions kept per key.
pub const CONFIG_HISTORY: usize = 10;

/// Longest key, in bytes.
pub const MAX_CONFIG_KEY_BYTES: usize = 256;

/// Longest value, in bytes.
pub const MAX_CONFIG_VALUE_BYTES: usize = 64 * 1024;

/// One version of a key's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigVersion {
    /// The value.
    pub value: String,
    /// The key's version when it held this value.
    pub version: u64,
}

/// A key's current value and its recent history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    /// The current value and version.
    pub current: ConfigVersion,
    /// Earlier versions, oldest first, at most [`CONFIG_HISTORY`].
    pub history: VecDeque<ConfigVersion>,
}

/// All config keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigStore {
    /// Entries by key.
    pub entries: BTreeMap<String, ConfigEntry>,
}

/// What a put decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The value was set; the key is now at this version.
    Set(u64),
    /// `expected` did not match; the key is at this version (0 = absent) and unchanged.
    Mismatch(u64),
}

impl ConfigStore {
    /// The current value and version of `key`.
    pub fn get(&self, key: &str) -> Option<&ConfigVersion> {
        self.entries.get(key).map(|e| &e.current)
    }

    /// Whether the switch `key` is on: it is unless set to `off`, `false` or `0`.
    pub fn is_on(&self, key: &str) -> bool {
        self.get(key).is_none_or(|v| !matches!(v.value.trim(), "off" | "false" | "0"))
    }

    /// The version of `key`, 0 if absent.
    pub fn version(&self, key: &str) -> u64 {
        self.get(key).map_or(0, |v| v.version)
    }

    /// Sets `key` to `value` if `expected` is `None` or equals the key's version.
    pub fn put(&mut self, key: &str, value: &str, expected: Option<u64>) -> PutOutcome {
        let current = self.version(key);
        if expected.is_some_and(|e| e != current) {
            return PutOutcome::Mismatch(current);
        }
        let next = ConfigVersion { value: value.to_string(), version: current + 1 };
        match self.entries.get_mut(key) {
            Some(entry) => {
                let old = std::mem::replace(&mut entry.current, next);
                entry.history.push_back(old);
                while entry.history.len() > CONFIG_HISTORY {
                    entry.history.pop_front();
                }
            }
            None => {
                self.entries.insert(key.to_string(), ConfigEntry { current: next, history: VecDeque::new() });
            }
        }
        PutOutcome::Set(current + 1)
    }

    /// Keys starting with `prefix`, with their current values, in key order.
    pub fn list<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a ConfigVersion)> + 'a {
        self.entries.range(prefix.to_string()..).take_while(move |(k, _)| k.starts_with(prefix)).map(|(k, e)| (k, &e.current))
    }

    /// The current and earlier versions of `key`, newest first.
    pub fn history(&self, key: &str) -> Vec<ConfigVersion> {
        self.entries.get(key).map_or_else(Vec::new, |e| std::iter::once(&e.current).chain(e.history.iter().rev()).cloned().collect())
    }
}

/// Checks a key and value before they are proposed: non-empty printable key of at most
/// [`MAX_CONFIG_KEY_BYTES`], value of at most [`MAX_CONFIG_VALUE_BYTES`].
pub fn validate(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_CONFIG_KEY_BYTES || key.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("invalid config key {key:?}: 1 to {MAX_CONFIG_KEY_BYTES} bytes, no spaces or control characters"));
    }
    if value.len() > MAX_CONFIG_VALUE_BYTES {
        return Err(format!("config value of {} bytes is over the limit of {MAX_CONFIG_VALUE_BYTES}", value.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_puts_and_cas_checks_them() {
        let mut c = ConfigStore::default();
        assert_eq!(c.put("a", "1", Some(1)), PutOutcome::Mismatch(0));
        assert_eq!(c.put("a", "1", Some(0)), PutOutcome::Set(1));
        assert_eq!(c.put("a", "2", None), PutOutcome::Set(2));
        assert_eq!(c.put("a", "x", Some(1)), PutOutcome::Mismatch(2));
        assert_eq!(c.get("a"), Some(&ConfigVersion { value: "2".into(), version: 2 }));
        assert_eq!(c.history("a").iter().map(|v| v.version).collect::<Vec<_>>(), vec![2, 1]);
    }

    #[test]
    fn history_is_bounded_and_list_filters_by_prefix() {
        let mut c = ConfigStore::default();
        for i in 0..25 {
            c.put("gc/interval", &i.to_string(), None);
        }
        c.put("gc/grace", "1", None);
        c.put("gcx", "1", None);
        let history = c.history("gc/interval");
        assert_eq!(history.len(), CONFIG_HISTORY + 1);
        assert_eq!(history[0].version, 25);
        let listed: Vec<&String> = c.list("gc/").map(|(k, _)| k).collect();
        assert_eq!(listed, vec!["gc/grace", "gc/interval"]);
    }

    #[test]
    fn bad_keys_and_values_are_refused() {
        assert!(validate("", "v").is_err());
        assert!(validate("a b", "v").is_err());
        assert!(validate(&"k".repeat(300), "v").is_err());
        assert!(validate("k", &"v".repeat(MAX_CONFIG_VALUE_BYTES + 1)).is_err());
        assert!(validate("search/default_k", "10").is_ok());
    }
}
