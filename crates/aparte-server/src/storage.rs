//! Persistent rooms in an embedded SQLite database.
//!
//! Only rooms a host made persistent are stored, and only what lets the next
//! meeting start with the same rules: the host key's hash, the moderator keys'
//! hashes, whether the lobby is on, the passcode's argon2 verifier, and the
//! day of the last meeting (for retention; a day number, not a time). The room id itself is stored as a
//! hash too, so the database does not list meeting links. No participant,
//! name, address, chat or media is ever written.
//!
//! The database file is created on the first write; a server whose hosts
//! never make a room persistent writes nothing at all. Schema changes are
//! numbered migrations applied at open (`PRAGMA user_version`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use aparte_proto::{KeyHash, RoomId};
use aparte_sfu::StoredRoom;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

/// The schema, one step per entry. Never edit a step once released: add one.
const MIGRATIONS: &[&str] = &[
    // 1: rooms and their moderators.
    "CREATE TABLE rooms (
        room_key TEXT PRIMARY KEY NOT NULL,
        host_hash TEXT NOT NULL,
        lobby INTEGER NOT NULL,
        passcode TEXT,
        last_used INTEGER NOT NULL
    );
    CREATE TABLE moderators (
        room_key TEXT NOT NULL REFERENCES rooms(room_key) ON DELETE CASCADE,
        key_hash TEXT NOT NULL,
        PRIMARY KEY (room_key, key_hash)
    );",
    // 2: last_used becomes a day number (days since 1970-01-01): the time of
    // a meeting is not needed for retention, so it is not kept.
    "UPDATE rooms SET last_used = last_used / 86400;",
];

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "aparte.sqlite3";

/// The store of persistent rooms. Cheap to clone; calls block (use them off
/// the async runtime's workers).
#[derive(Debug, Clone)]
pub struct Storage {
    path: PathBuf,
    conn: Arc<Mutex<Option<Connection>>>,
    retention: Duration,
}

impl Storage {
    /// A store in `dir`, keeping rooms `retention_days` after last use.
    pub fn new(dir: &Path, retention_days: u32) -> Self {
        Storage {
            path: dir.join(DB_FILE),
            conn: Arc::new(Mutex::new(None)),
            retention: Duration::from_secs(u64::from(retention_days) * 86_400),
        }
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the open database, opening (and creating, if `create`)
    /// it first. Returns `None` when it does not exist and `create` is false.
    fn with<T>(
        &self,
        create: bool,
        f: impl FnOnce(&mut Connection) -> anyhow::Result<T>,
    ) -> anyhow::Result<Option<T>> {
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| anyhow::anyhow!("storage lock poisoned"))?;
        if guard.is_none() {
            if !create && !self.path.exists() {
                return Ok(None);
            }
            *guard = Some(open(&self.path)?);
        }
        match guard.as_mut() {
            Some(conn) => f(conn).map(Some),
            None => Ok(None),
        }
    }

    /// The stored settings of `room`, if it is persistent.
    pub fn load(&self, room: &RoomId) -> anyhow::Result<Option<StoredRoom>> {
        let key = room_key(room);
        let found = self.with(false, |c| {
            let row = c
                .query_row(
                    "SELECT host_hash, lobby, passcode FROM rooms WHERE room_key = ?1",
                    params![key],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, bool>(1)?,
                            r.get::<_, Option<String>>(2)?,
                        ))
                    },
                )
                .optional()?;
            let Some((host, lobby, passcode)) = row else {
                return Ok(None);
            };
            let mut stmt = c.prepare("SELECT key_hash FROM moderators WHERE room_key = ?1")?;
            let moderators = stmt
                .query_map(params![key], |r| r.get::<_, String>(0))?
                .filter_map(|h| h.ok().and_then(|h| KeyHash::from_hex(&h)))
                .collect();
            Ok(Some(StoredRoom {
                host: KeyHash::from_hex(&host).context("corrupt host hash")?,
                moderators,
                lobby,
                passcode: passcode.map(Into::into),
            }))
        })?;
        Ok(found.flatten())
    }

    /// Stores (or, with `None`, deletes) `room`'s settings, marking it used now.
    pub fn save(&self, room: &RoomId, stored: Option<&StoredRoom>) -> anyhow::Result<()> {
        let key = room_key(room);
        let now = today();
        match stored {
            Some(s) => {
                self.with(true, |c| {
                    let tx = c.transaction()?;
                    tx.execute(
                        "INSERT INTO rooms (room_key, host_hash, lobby, passcode, last_used)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT(room_key) DO UPDATE SET host_hash = ?2, lobby = ?3,
                             passcode = ?4, last_used = ?5",
                        params![key, s.host.to_hex(), s.lobby, s.passcode.as_deref(), now],
                    )?;
                    tx.execute("DELETE FROM moderators WHERE room_key = ?1", params![key])?;
                    for m in &s.moderators {
                        tx.execute(
                            "INSERT OR IGNORE INTO moderators (room_key, key_hash) VALUES (?1, ?2)",
                            params![key, m.to_hex()],
                        )?;
                    }
                    tx.commit()?;
                    Ok(())
                })?;
            }
            None => {
                self.with(false, |c| {
                    c.execute("DELETE FROM rooms WHERE room_key = ?1", params![key])?;
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    /// Deletes rooms unused for longer than the retention; returns how many.
    pub fn purge(&self) -> anyhow::Result<usize> {
        let cutoff = today().saturating_sub((self.retention.as_secs() / 86_400) as i64);
        let n = self.with(false, |c| {
            Ok(c.execute("DELETE FROM rooms WHERE last_used < ?1", params![cutoff])?)
        })?;
        Ok(n.unwrap_or(0))
    }

    /// Whether `room` is stored.
    pub fn contains(&self, room: &RoomId) -> anyhow::Result<bool> {
        let key = room_key(room);
        let n = self.with(false, |c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM rooms WHERE room_key = ?1",
                params![key],
                |r| r.get::<_, i64>(0),
            )? > 0)
        })?;
        Ok(n.unwrap_or(false))
    }

    /// How many rooms are stored.
    pub fn count(&self) -> anyhow::Result<usize> {
        let n = self.with(false, |c| {
            Ok(c.query_row("SELECT COUNT(*) FROM rooms", [], |r| r.get::<_, i64>(0))? as usize)
        })?;
        Ok(n.unwrap_or(0))
    }
}

/// Opens (creating) the database and brings its schema up to date.
fn open(path: &Path) -> anyhow::Result<Connection> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    // Made by us, 0600, before SQLite opens it: SQLite gives its journal and
    // WAL files the database file's permissions.
    open_private(path, false)?;
    let mut c = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    c.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL; PRAGMA secure_delete = ON;",
    )?;
    migrate(&mut c)?;
    Ok(c)
}

/// Applies the migrations the database has not seen yet, each in a
/// transaction with its version bump.
fn migrate(c: &mut Connection) -> anyhow::Result<()> {
    let version: usize = c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    anyhow::ensure!(
        version <= MIGRATIONS.len(),
        "the database is from a newer Aparté (schema {version}, this build knows {})",
        MIGRATIONS.len()
    );
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = c.transaction()?;
        tx.execute_batch(step)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
    }
    Ok(())
}

/// The stored name of a room: a hash of its id, so the database does not hold
/// meeting links.
fn room_key(room: &RoomId) -> String {
    let mut h = Sha256::new();
    h.update(b"aparte/v1/stored-room\0");
    h.update(room.as_str().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Today as a day number (days since 1970-01-01, UTC).
fn today() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| (d.as_secs() / 86_400) as i64)
}

/// Creates `dir` (and its parents) if needed, and makes it readable by this
/// user only (0700): it holds passcode verifiers and TLS keys.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting the data directory {}", dir.display()))
}

/// Writes `bytes` to `path`, readable by this user only (0600).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    open_private(path, true)?
        .write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Opens `path` for writing, creating it if needed (emptied if `truncate`),
/// readable by this user only (0600), whatever it was before.
fn open_private(path: &Path, truncate: bool) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(truncate)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        std::env::temp_dir().join(format!(
            "aparte-storage-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn room(n: u8) -> (RoomId, StoredRoom) {
        let key = aparte_proto::keys::token_from_bytes([n; 32]);
        let stored = StoredRoom {
            host: KeyHash::of(aparte_proto::KeyPurpose::Host, &key),
            moderators: vec![KeyHash([n; 32]), KeyHash([n + 1; 32])],
            lobby: n % 2 == 0,
            passcode: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        };
        (aparte_proto::room_for_host_key(&key), stored)
    }

    #[test]
    fn nothing_is_written_until_a_room_is_saved() {
        let dir = temp();
        let s = Storage::new(&dir, 90);
        let (r, stored) = room(1);
        assert_eq!(s.load(&r).expect("load"), None);
        assert_eq!(s.purge().expect("purge"), 0);
        assert!(!dir.exists(), "a read must not create the database");
        s.save(&r, Some(&stored)).expect("save");
        assert_eq!(s.load(&r).expect("load"), Some(stored.clone()));
        // Reopened from disk: same contents, migrations not re-run.
        let again = Storage::new(&dir, 90);
        assert_eq!(again.load(&r).expect("load"), Some(stored));
        assert_eq!(again.count().expect("count"), 1);
        // No file of the database (WAL included) holds the room id.
        for entry in std::fs::read_dir(&dir).expect("data dir") {
            let bytes = std::fs::read(entry.expect("entry").path()).expect("file");
            assert!(!String::from_utf8_lossy(&bytes).contains(r.as_str()));
        }
        // Readable by this user only; the day of last use, not the time.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for entry in std::fs::read_dir(&dir).expect("data dir") {
            assert_eq!(mode(&entry.expect("entry").path()), 0o600);
        }
        let day: i64 = again
            .with(false, |c| {
                Ok(c.query_row("SELECT last_used FROM rooms", [], |r| r.get(0))?)
            })
            .expect("query")
            .expect("exists");
        assert_eq!(day, today());
        again.save(&r, None).expect("delete");
        assert_eq!(again.load(&r).expect("load"), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn retention_purges_old_rooms() {
        let dir = temp();
        let s = Storage::new(&dir, 0);
        let (r, stored) = room(2);
        s.save(&r, Some(&stored)).expect("save");
        s.with(false, |c| {
            c.execute("UPDATE rooms SET last_used = last_used - 10", [])?;
            Ok(())
        })
        .expect("age");
        assert_eq!(s.purge().expect("purge"), 1);
        assert_eq!(s.load(&r).expect("load"), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
