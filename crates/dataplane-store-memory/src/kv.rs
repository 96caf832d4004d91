//! The key-value store: compare-and-set puts and deletes, listing by prefix, the event log
//! (resumable watches) with compaction, and keys bound to a member's session.

use chrono::{DateTime, Utc};
use dataplane_spi::coordination::{validate_key, MAX_VALUE_LEN};
use dataplane_spi::{
    CoordinationError, CoordinationResult, Expected, KvEntry, KvEvent, KvEventKind, Session,
};

use crate::State;

fn check_expected(
    key: &str,
    expected: Expected,
    current: Option<&KvEntry>,
) -> CoordinationResult<()> {
    let ok = match (expected, current) {
        (Expected::Any, _) | (Expected::Absent, None) => true,
        (Expected::Version(v), Some(entry)) => entry.version == v,
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(CoordinationError::Conflict {
        key: key.to_owned(),
        expected: match expected {
            Expected::Any => "anything".into(),
            Expected::Absent => "no key".into(),
            Expected::Version(v) => format!("version {v}"),
        },
        actual: current.map_or_else(|| "no key".to_owned(), |e| format!("version {}", e.version)),
    })
}

/// Checks a put's key and value before any state is touched.
pub(crate) fn validate_put(key: &str, value: &str) -> CoordinationResult<()> {
    validate_key(key)?;
    if value.len() > MAX_VALUE_LEN {
        return Err(CoordinationError::InvalidInput("value too large".into()));
    }
    Ok(())
}

impl State {
    fn record(&mut self, kind: KvEventKind, entry: &KvEntry) -> KvEvent {
        let event = KvEvent {
            revision: entry.mod_revision,
            kind,
            key: entry.key.clone(),
            value: entry.value.clone(),
            version: entry.version,
        };
        self.events.push(event.clone());
        event
    }

    pub(crate) fn kv_put(
        &mut self,
        key: &str,
        value: &str,
        expected: Expected,
        session: Option<&Session>,
        now: DateTime<Utc>,
    ) -> CoordinationResult<KvEntry> {
        check_expected(key, expected, self.kv.get(key))?;
        if let Some(session) = session {
            if !self.session_alive(session, now) {
                return Err(CoordinationError::SessionGone(session.runtime_id.clone()));
            }
        }
        self.revision += 1;
        let revision = self.revision;
        let entry = match self.kv.get(key) {
            Some(old) => KvEntry {
                value: value.to_owned(),
                version: old.version + 1,
                mod_revision: revision,
                session: session.map(|s| s.runtime_id.clone()),
                ..old.clone()
            },
            None => KvEntry {
                key: key.to_owned(),
                value: value.to_owned(),
                version: 1,
                create_revision: revision,
                mod_revision: revision,
                session: session.map(|s| s.runtime_id.clone()),
            },
        };
        self.kv.insert(key.to_owned(), entry.clone());
        self.record(KvEventKind::Put, &entry);
        Ok(entry)
    }

    pub(crate) fn kv_delete(
        &mut self,
        key: &str,
        expected: Expected,
    ) -> CoordinationResult<KvEvent> {
        let current = self
            .kv
            .get(key)
            .cloned()
            .ok_or_else(|| CoordinationError::NotFound(key.to_owned()))?;
        check_expected(key, expected, Some(&current))?;
        self.kv.remove(key);
        self.revision += 1;
        let entry = KvEntry {
            mod_revision: self.revision,
            ..current
        };
        Ok(self.record(KvEventKind::Delete, &entry))
    }

    pub(crate) fn kv_list(&self, prefix: &str) -> (Vec<KvEntry>, i64) {
        let entries = self
            .kv
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, e)| e.clone())
            .collect();
        (entries, self.revision)
    }

    pub(crate) fn kv_events(
        &self,
        prefix: &str,
        after: i64,
        limit: usize,
    ) -> CoordinationResult<Vec<KvEvent>> {
        if after < self.compacted {
            return Err(CoordinationError::Compacted {
                requested: after,
                compacted: self.compacted,
            });
        }
        Ok(self
            .events
            .iter()
            .filter(|e| e.revision > after && e.key.starts_with(prefix))
            .take(limit)
            .cloned()
            .collect())
    }

    /// Deletes (with a DELETE event) every key whose session's lease expired.
    pub(crate) fn kv_expire_sessions(&mut self, now: DateTime<Utc>) -> u64 {
        let dead: Vec<String> = self
            .kv
            .values()
            .filter(|e| {
                e.session.as_ref().is_some_and(|s| {
                    self.members
                        .get(s)
                        .is_none_or(|m| m.lease_expires_at <= now)
                })
            })
            .map(|e| e.key.clone())
            .collect();
        for key in &dead {
            if let Some(entry) = self.kv.remove(key) {
                self.revision += 1;
                let entry = KvEntry {
                    mod_revision: self.revision,
                    ..entry
                };
                self.record(KvEventKind::Delete, &entry);
            }
        }
        dead.len() as u64
    }

    /// Keeps the last `keep` events; answers the revision compacted up to.
    pub(crate) fn kv_compact(&mut self, keep: i64) -> i64 {
        let keep = usize::try_from(keep.max(0)).unwrap_or(0);
        if self.events.len() > keep {
            let cut = self.events.len() - keep;
            self.compacted = self.events[cut - 1].revision;
            self.events.drain(..cut);
        }
        self.compacted
    }
}
