//! The disk tier: every entry the cache is given, in one redb database in the cache's
//! directory, bounded by `disk_max_bytes`, written behind the caller.
//!
//! # Layout
//!
//! The file is written in append order: every write of an entry gets the next position (a
//! number that only grows, across restarts too), and two tables are keyed by it: `log` holds
//! the full record (kind, flags, expiry, key, tags, stored payload), `log_meta` the key's seeded
//! 64-bit hash, the write time and the record without its payload. The in-memory index (below)
//! maps each hash to the position of its live record; a rewrite puts the new record at the end
//! and deletes the old position in the same transaction. So a batch of writes touches the
//! B-trees' last pages, and the evictions and expirations that make room for it mostly their
//! first ones, instead of one page anywhere in the file per write: keyed by hash, the same
//! writes ran at about 29,000 a second here; in append order, at about 160,000 (1 KiB records,
//! 4,096 a transaction). The hash seed is stored in `settings`, so hashes stay valid across
//! restarts. A lookup checks that the stored key is the key asked for, so two keys whose hashes
//! collide (odds of about n²/2^65) share one index slot, the later write replacing the earlier
//! one, as any cache eviction would.
//!
//! Every record and meta record ends with the xxh3 checksum of its bytes ([`CHECKSUM`]), checked
//! whenever it is read, so a damaged record is found instead of served.
//!
//! A directory written by an earlier layout (tables `entries` and `meta`, keyed by hash; or
//! records without checksums, which lack the `layout` setting) is emptied on open: it is a
//! cache, and its entries would otherwise be unreachable or unchecked.
//!
//! # Threads
//!
//! The calling thread owns the in-memory index of what is on disk (hash → size, expiry, last
//! access, in LRU order; 40 bytes an entry, rebuilt at open by scanning `meta`), so that a miss
//! on both tiers never touches the file and eviction needs no disk read. Writes go as
//! operations over a channel to one writer thread (`bulwark-cache-disk`), which applies
//! everything queued (up to [`MAX_BATCH`] operations) in one write transaction: committed
//! without fsync unless a flush or a shutdown waits on it or [`DURABLE_EVERY`] has passed (a
//! crash rolls the file back to its last durable commit, consistent, with everything flushed
//! in it). At most [`MAX_PENDING_BYTES`] of records wait for the writer. Until the
//! writer reports a write committed, the record stays in a pending overlay so that a `get`
//! finds it; reads of committed data run a read transaction on the calling thread. Recency is
//! kept in memory only: a disk read never writes, and after a restart the order is that of the
//! last writes.
//!
//! # Failures
//!
//! Once open, disk failures never fail a `get` or `set`: they are counted (`errors`) and the
//! cache goes on serving from memory. A `flush` reports whether what came before it is durable.
//!
//! A write batch that fails leaves the file behind the index: its records are missing, and the
//! records its writes replaced or deleted are still there, to come back after a restart in place
//! of newer values. redb also refuses every later operation on a database that met an I/O error
//! until it is opened again. So a failed batch takes the tier offline and resets it, in a
//! handshake that keeps the index and the file in step:
//!
//! 1. the writer marks the tier failed, removes the database file (the open database keeps
//!    reading it) and from then on discards what it is sent;
//! 2. the calling thread, at its next disk operation, empties its index and sends a reset; until
//!    the tier is back, sets live in memory only (counted as skipped) and lookups miss on disk;
//! 3. the writer closes the database and makes a new, empty one with the directory's seed
//!    (when the file could not be removed, it empties the tables instead, or failing that
//!    replaces the file), retrying with a growing pause ([`FIRST_RETRY`] to [`LAST_RETRY`]),
//!    and puts the tier back online.
//!
//! So no restart, not even one after a crash, serves a value that was overwritten or deleted
//! before a failure; a tier still failed when the cache closes is reset (or its file removed)
//! the same way. The one exception is a file that cannot be removed (a read-only file system)
//! and a crash before the reset.
//!
//! A damaged file (changed by something other than this writer) is handled the same way.
//! redb returns errors for some damage and panics on other kinds (a page whose type byte is
//! garbage); every call into redb runs under [`guarded`], which turns a panic into an error, so
//! that it never unwinds into Node (which aborts). Damage found at open ([`is_damage`]:
//! truncated, not a database, unreadable pages) replaces the file with an empty one and is
//! reported ([`DiskTier::damage_at_open`]) rather than refusing to open; damage a lookup meets
//! (such an error, or a record whose checksum fails) drops the index and sends a reset, which
//! the writer, finding it while healthy, takes as a failure of the file.
//! Two caches on one directory would corrupt each other's view, so the directory is locked: an
//! advisory lock on `cache.lock` (held by the writer thread until it ends, so it covers
//! other processes and this one alike) and redb's own lock on `cache.redb`; either refusal is
//! `ERR_CACHE_LOCKED`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fs::{File, OpenOptions, TryLockError};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hashbrown::HashTable;
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition};
use xxhash_rust::xxh3::xxh3_64;

use super::codec::ValueKind;
use super::error::CacheError;
use super::key::{random_seed, tags_contain};
use crate::common::error::panic_message;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const LOG_META: TableDefinition<u64, &[u8]> = TableDefinition::new("log_meta");
/// The tables of the earlier layout, keyed by hash; dropped on open.
const OLD_TABLES: [TableDefinition<u64, &[u8]>; 2] = [
    TableDefinition::new("entries"),
    TableDefinition::new("meta"),
];
const SETTINGS: TableDefinition<&str, u64> = TableDefinition::new("settings");
/// The record layout this code writes, kept in `settings` under `layout`. A file without it (or
/// with another) has its entry tables emptied on open: records of layout 1 carry no checksum.
const LAYOUT: u64 = 2;
/// Bytes of the checksum that ends every record and meta record.
const CHECKSUM: usize = 8;

/// The database file inside the cache directory.
pub const DB_FILE: &str = "cache.redb";
/// The advisory lock file inside the cache directory.
pub const LOCK_FILE: &str = "cache.lock";
/// Operations applied in one write transaction at most.
pub const MAX_BATCH: usize = 4096;
/// Bytes of records handed to the writer and not yet committed, at most. Past it a `put` is not
/// queued (counted in [`DiskCounters::skipped`]; the entry lives in memory only): sets can
/// outrun any disk, and an unbounded queue would hold every record that did (measured: 320 MB
/// after 3 s of 280,000 sets/s of 1 KiB values, with a 21 s flush behind it).
pub const MAX_PENDING_BYTES: usize = 64 << 20;
/// redb's page cache for the disk tier.
const DB_CACHE_BYTES: usize = 64 << 20;
/// The longest run of writer batches committed without fsync: routine batches are committed
/// with `Durability::None` (consistent, but rolled back to the last durable commit by a crash),
/// a flush, a shutdown or this much time since the last durable commit makes one durable.
const DURABLE_EVERY: Duration = Duration::from_secs(1);
/// How long a locked directory is retried before `ERR_CACHE_LOCKED` is reported.
pub const LOCK_PATIENCE: Duration = Duration::from_millis(250);
/// How long `Drop` waits for the writer to drain before leaving it to finish on its own.
const DROP_WAIT: Duration = Duration::from_secs(2);
/// The pause before a failed tier's first reset attempt; it doubles after each failed one.
pub const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest pause between two reset attempts of a failed tier.
pub const LAST_RETRY: Duration = Duration::from_secs(5);

/// [`Shared::health`]: the tier is in use.
const ONLINE: u8 = 0;
/// [`Shared::health`]: a write failed; the calling thread has not yet dropped its index.
const FAILED: u8 = 1;
/// [`Shared::health`]: the index is dropped and a reset sent; the writer has not yet reset.
const RESETTING: u8 = 2;
/// Bytes of a record before its key: kind, flags, expiry, key length, tags length.
const RECORD_HEADER: usize = 1 + 1 + 8 + 4 + 4;
/// Bytes of a meta record before its key: hash, expiry, last write, size, key length, tags
/// length.
const META_HEADER: usize = 8 + 8 + 8 + 4 + 4 + 4;

/// A record read back from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskEntry {
    /// The value's JS type.
    pub kind: ValueKind,
    /// Codec flags of `stored`.
    pub flags: u8,
    /// Wall-clock expiry in ms; 0 for none.
    pub expires_at: u64,
    /// The entry's encoded tags.
    pub tags: Vec<u8>,
    /// The payload as stored.
    pub stored: Vec<u8>,
}

/// The result of a disk lookup.
#[derive(Debug)]
pub enum DiskLookup {
    /// Found and live.
    Hit(DiskEntry),
    /// Present but its time was up; it is being removed.
    Expired,
    /// Not on disk (or unreadable: counted as an error).
    Miss,
}

/// Counts of the disk tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskCounters {
    /// Lookups served from disk.
    pub hits: u64,
    /// Read transactions run for lookups.
    pub reads: u64,
    /// Entries written durably (counted by the writer at commit).
    pub writes: u64,
    /// Disk failures since open (reads, write batches, a lost writer).
    pub errors: u64,
    /// Entries removed to stay within `disk_max_bytes`.
    pub evictions: u64,
    /// Entries removed because their time was up.
    pub expirations: u64,
    /// Entries not written because alone they exceed `disk_max_bytes`.
    pub oversized: u64,
    /// Writes not queued because [`MAX_PENDING_BYTES`] were already waiting for the writer, or
    /// because the tier was failed or resetting.
    pub skipped: u64,
    /// Times the tier was emptied and made anew: its file was found damaged (at open or by a
    /// lookup), or a write to it failed (module doc, Failures).
    pub resets: u64,
}

/// Which entries an invalidation removes.
#[derive(Clone, Debug)]
pub enum Selector {
    /// Entries carrying this tag.
    Tag(Vec<u8>),
    /// Entries whose key starts with these bytes.
    Prefix(Vec<u8>),
}

impl Selector {
    fn matches(&self, key: &[u8], tags: &[u8]) -> bool {
        match self {
            Selector::Tag(tag) => tags_contain(tags, tag),
            Selector::Prefix(prefix) => key.starts_with(prefix),
        }
    }
}

enum Op {
    /// Writes a record at `position`, deleting the entry's previous record at `replaces`.
    Put {
        seq: u64,
        position: u64,
        replaces: Option<u64>,
        record: Arc<[u8]>,
        meta: Vec<u8>,
    },
    /// Deletes the record at `position`.
    Delete {
        seq: u64,
        position: u64,
    },
    Clear {
        seq: u64,
    },
    Invalidate {
        seq: u64,
        selector: Selector,
        reply: SyncSender<Vec<u64>>,
    },
    Flush {
        reply: SyncSender<bool>,
    },
    /// The calling thread has emptied its index after a failure: empty the database to match
    /// and go back online (see the module doc).
    Reset {
        seq: u64,
    },
    Shutdown,
}

/// State the writer shares with the calling thread.
struct Shared {
    /// The database; `None` while the writer reopens it after a failure. Lookups read under
    /// the read lock; the writer takes the write lock only to swap it.
    db: RwLock<Option<Database>>,
    /// [`ONLINE`], [`FAILED`] or [`RESETTING`].
    health: AtomicU8,
    /// Sequence number of the last operation applied (committed, failed or discarded).
    applied_seq: AtomicU64,
    writes: AtomicU64,
    errors: AtomicU64,
    /// Resets done (see [`DiskCounters::resets`]).
    resets: AtomicU64,
    /// Test hook: the writer fails every batch and reset, and reads fail.
    fail: AtomicBool,
    /// Test hook: reads panic inside the read transaction, as redb does on some damaged pages.
    panic_reads: AtomicBool,
}

impl Shared {
    fn new(db: Database) -> Self {
        Shared {
            db: RwLock::new(Some(db)),
            health: AtomicU8::new(ONLINE),
            applied_seq: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            fail: AtomicBool::new(false),
            panic_reads: AtomicBool::new(false),
        }
    }

    fn is_online(&self) -> bool {
        self.health.load(Ordering::Acquire) == ONLINE
    }
}

/// Completes when everything enqueued before it is durable. The binding waits on it off the JS
/// thread and resolves a Promise.
#[derive(Debug)]
pub struct FlushTicket {
    receiver: Option<Receiver<bool>>,
}

impl FlushTicket {
    /// A ticket that is already complete (no disk tier).
    pub fn done() -> Self {
        FlushTicket { receiver: None }
    }

    /// Blocks until the writes before the flush are durable; an error when they could not be
    /// written or the writer is gone.
    pub fn wait(self) -> Result<(), CacheError> {
        match self.receiver {
            None => Ok(()),
            Some(receiver) => Self::outcome(receiver.recv().ok()),
        }
    }

    /// Like [`FlushTicket::wait`], giving up after `timeout`: `None` when still pending.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<(), CacheError>> {
        match &self.receiver {
            None => Some(Ok(())),
            Some(receiver) => match receiver.recv_timeout(timeout) {
                Ok(durable) => Some(Self::outcome(Some(durable))),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(Self::outcome(None)),
            },
        }
    }

    fn outcome(durable: Option<bool>) -> Result<(), CacheError> {
        match durable {
            Some(true) => Ok(()),
            Some(false) => Err(CacheError::Disk {
                message: "flush failed: writes before it were lost to a disk error or a damaged file (see stats.disk.errors and stats.disk.resets)"
                    .into(),
            }),
            None => Err(CacheError::Disk {
                message: "flush failed: the disk writer has stopped (see stats.disk.errors)".into(),
            }),
        }
    }
}

/// One entry of the disk index.
#[derive(Clone, Copy, Debug)]
struct IndexSlot {
    hash: u64,
    /// Where its record is (the key of `log` and `log_meta`).
    position: u64,
    expires_at: u64,
    last_access: u64,
    size: u32,
    prev: u32,
    next: u32,
}

const NIL: u32 = u32::MAX;

/// What is on disk, by hash, in LRU order (least recent at `head`).
#[derive(Default)]
struct DiskIndex {
    slots: Vec<IndexSlot>,
    free: Vec<u32>,
    table: HashTable<u32>,
    head: u32,
    tail: u32,
    bytes: u64,
}

impl DiskIndex {
    fn new() -> Self {
        DiskIndex {
            head: NIL,
            tail: NIL,
            ..Default::default()
        }
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn find(&self, hash: u64) -> Option<u32> {
        self.table
            .find(hash, |&i| self.slots[i as usize].hash == hash)
            .copied()
    }

    fn get(&self, hash: u64) -> Option<&IndexSlot> {
        self.find(hash).map(|i| &self.slots[i as usize])
    }

    fn unlink(&mut self, i: u32) {
        let IndexSlot { prev, next, .. } = self.slots[i as usize];
        if prev == NIL {
            self.head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
    }

    fn push_tail(&mut self, i: u32) {
        let tail = self.tail;
        let slot = &mut self.slots[i as usize];
        slot.prev = tail;
        slot.next = NIL;
        if tail == NIL {
            self.head = i;
        } else {
            self.slots[tail as usize].next = i;
        }
        self.tail = i;
    }

    /// Inserts or replaces, as most recent; returns the position of the record it replaces.
    fn upsert(
        &mut self,
        hash: u64,
        position: u64,
        size: u32,
        expires_at: u64,
        last_access: u64,
    ) -> Option<u64> {
        if let Some(i) = self.find(hash) {
            self.unlink(i);
            let slot = &mut self.slots[i as usize];
            let replaced = slot.position;
            self.bytes = self.bytes - slot.size as u64 + size as u64;
            slot.position = position;
            slot.size = size;
            slot.expires_at = expires_at;
            slot.last_access = last_access;
            self.push_tail(i);
            return Some(replaced);
        }
        let slot = IndexSlot {
            hash,
            position,
            expires_at,
            last_access,
            size,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.table
            .insert_unique(hash, i, |&j| slots[j as usize].hash);
        self.bytes += size as u64;
        self.push_tail(i);
        None
    }

    fn touch(&mut self, hash: u64, now_ms: u64) {
        if let Some(i) = self.find(hash) {
            self.slots[i as usize].last_access = now_ms;
            if self.tail != i {
                self.unlink(i);
                self.push_tail(i);
            }
        }
    }

    /// Removes `hash`; returns the position of its record.
    fn remove(&mut self, hash: u64) -> Option<u64> {
        let Ok(entry) = self
            .table
            .find_entry(hash, |&i| self.slots[i as usize].hash == hash)
        else {
            return None;
        };
        let (i, _) = entry.remove();
        self.unlink(i);
        self.bytes -= self.slots[i as usize].size as u64;
        self.free.push(i);
        Some(self.slots[i as usize].position)
    }

    fn clear(&mut self) {
        *self = DiskIndex::new();
    }
}

/// A pending write: the record (or `None` for a delete) not yet applied by the writer.
struct Pending {
    seq: u64,
    record: Option<Arc<[u8]>>,
}

/// The disk tier, owned by the calling thread, with its writer thread.
pub struct DiskTier {
    dir: PathBuf,
    seed: u64,
    index: DiskIndex,
    /// (expiry, hash) of entries with a TTL, soonest first; stale items are skipped.
    expiry: BinaryHeap<Reverse<(u64, u64)>>,
    pending: HashMap<u64, Pending>,
    /// (sequence, hash, record bytes) of each queued operation, oldest first.
    pending_order: VecDeque<(u64, u64, usize)>,
    /// Record bytes queued and not yet applied by the writer.
    pending_bytes: usize,
    /// The bound on `pending_bytes` ([`MAX_PENDING_BYTES`]; tests lower it).
    pending_limit: usize,
    next_seq: u64,
    /// The position the next record written goes to.
    next_position: u64,
    shared: Arc<Shared>,
    sender: Option<Sender<Op>>,
    writer: Option<JoinHandle<()>>,
    writer_done: Option<Receiver<()>>,
    max_bytes: Option<u64>,
    counters: DiskCounters,
    /// Why the file found at open was replaced by an empty one, if it was.
    damage_at_open: Option<String>,
}

/// Opens (creating if needed) the database file in `dir`.
fn open_database(dir: &Path) -> Result<Database, DatabaseError> {
    // redb's page cache defaults to 1 GiB, which a cache in a service's process must not
    // quietly grow into; the memory tier is the cache of hot entries.
    Database::builder()
        .set_cache_size(DB_CACHE_BYTES)
        .create(dir.join(DB_FILE))
}

/// The read side of the shared database slot; a panic elsewhere while it was held does not
/// stop lookups (the slot holds either a database or nothing, never half of one).
fn read_lock(db: &RwLock<Option<Database>>) -> RwLockReadGuard<'_, Option<Database>> {
    db.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The write side of the shared database slot.
fn write_lock(db: &RwLock<Option<Database>>) -> RwLockWriteGuard<'_, Option<Database>> {
    db.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs a call into redb, turning a panic inside it into an error. redb panics on some kinds of
/// damage to its file (a page whose type byte is garbage reaches an `unreachable!`), and a
/// panic that reaches a N-API callback aborts the process; so every use of the database goes
/// through here, and damage found that way is handled as any other ([`is_damage`]).
fn guarded<T>(call: impl FnOnce() -> Result<T, redb::Error>) -> Result<T, redb::Error> {
    catch_unwind(AssertUnwindSafe(call)).unwrap_or_else(|panic| {
        Err(redb::Error::Corrupted(format!(
            "the database file is damaged: {}",
            panic_message(&*panic)
        )))
    })
}

/// Closes a database (taken out of its slot), whatever state a panic inside redb left it in.
fn close_database(db: Option<Database>) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(db)));
}

/// Whether `error` says the file's content is damaged or unreadable as a database (rather than
/// that the disk or the file system failed): the file is then of no use, and is replaced.
fn is_damage(error: &redb::Error) -> bool {
    match error {
        redb::Error::Corrupted(_)
        | redb::Error::UpgradeRequired(_)
        | redb::Error::TransactionPoisoned
        | redb::Error::LockPoisoned(_)
        | redb::Error::TableTypeMismatch { .. }
        | redb::Error::TypeDefinitionChanged { .. }
        | redb::Error::TableIsMultimap(_) => true,
        redb::Error::Io(e) => matches!(
            e.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// Removes the database file in `dir` (a file already gone is no error).
fn remove_database_file(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(DB_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn dir_error(dir: &Path, what: &str, err: impl std::fmt::Display) -> CacheError {
    CacheError::Disk {
        message: format!(
            "dir \"{}\" is not usable by the cache: {what}: {err}",
            dir.display()
        ),
    }
}

/// Encodes an entry's full record.
fn encode_record(
    kind: ValueKind,
    flags: u8,
    expires_at: u64,
    key: &[u8],
    tags: &[u8],
    stored: &[u8],
) -> Vec<u8> {
    let mut record =
        Vec::with_capacity(RECORD_HEADER + key.len() + tags.len() + stored.len() + CHECKSUM);
    record.push(kind as u8);
    record.push(flags);
    record.extend_from_slice(&expires_at.to_le_bytes());
    record.extend_from_slice(&(key.len() as u32).to_le_bytes());
    record.extend_from_slice(&(tags.len() as u32).to_le_bytes());
    record.extend_from_slice(key);
    record.extend_from_slice(tags);
    record.extend_from_slice(stored);
    seal(&mut record);
    record
}

/// Appends the checksum of what `bytes` holds so far.
fn seal(bytes: &mut Vec<u8>) {
    let sum = xxh3_64(bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
}

/// The bytes before a record's checksum, or `None` when the checksum does not match them.
fn unseal(bytes: &[u8]) -> Option<&[u8]> {
    let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(CHECKSUM)?)?;
    (xxh3_64(body).to_le_bytes() == sum).then_some(body)
}

/// Decodes a full record into (key, entry); `None` when damaged (its checksum or its lengths
/// do not hold).
fn decode_record(record: &[u8]) -> Option<(&[u8], DiskEntry)> {
    let record = unseal(record)?;
    let kind = ValueKind::from_byte(*record.first()?)?;
    let flags = *record.get(1)?;
    let expires_at = u64::from_le_bytes(record.get(2..10)?.try_into().ok()?);
    let key_len = u32::from_le_bytes(record.get(10..14)?.try_into().ok()?) as usize;
    let tags_len = u32::from_le_bytes(record.get(14..18)?.try_into().ok()?) as usize;
    let key = record.get(RECORD_HEADER..RECORD_HEADER + key_len)?;
    let tags_end = RECORD_HEADER + key_len + tags_len;
    let tags = record.get(RECORD_HEADER + key_len..tags_end)?;
    Some((
        key,
        DiskEntry {
            kind,
            flags,
            expires_at,
            tags: tags.to_vec(),
            stored: record[tags_end..].to_vec(),
        },
    ))
}

fn encode_meta(
    hash: u64,
    expires_at: u64,
    written_at: u64,
    size: u32,
    key: &[u8],
    tags: &[u8],
) -> Vec<u8> {
    let mut meta = Vec::with_capacity(META_HEADER + key.len() + tags.len() + CHECKSUM);
    meta.extend_from_slice(&hash.to_le_bytes());
    meta.extend_from_slice(&expires_at.to_le_bytes());
    meta.extend_from_slice(&written_at.to_le_bytes());
    meta.extend_from_slice(&size.to_le_bytes());
    meta.extend_from_slice(&(key.len() as u32).to_le_bytes());
    meta.extend_from_slice(&(tags.len() as u32).to_le_bytes());
    meta.extend_from_slice(key);
    meta.extend_from_slice(tags);
    seal(&mut meta);
    meta
}

/// A meta record: (hash, expiry, last write, size, key, tags).
struct MetaView<'a> {
    hash: u64,
    expires_at: u64,
    written_at: u64,
    size: u32,
    key: &'a [u8],
    tags: &'a [u8],
}

/// Decodes a meta record; `None` when damaged.
fn decode_meta(meta: &[u8]) -> Option<MetaView<'_>> {
    let meta = unseal(meta)?;
    let hash = u64::from_le_bytes(meta.get(0..8)?.try_into().ok()?);
    let expires_at = u64::from_le_bytes(meta.get(8..16)?.try_into().ok()?);
    let written_at = u64::from_le_bytes(meta.get(16..24)?.try_into().ok()?);
    let size = u32::from_le_bytes(meta.get(24..28)?.try_into().ok()?);
    let key_len = u32::from_le_bytes(meta.get(28..32)?.try_into().ok()?) as usize;
    let tags_len = u32::from_le_bytes(meta.get(32..36)?.try_into().ok()?) as usize;
    let key = meta.get(META_HEADER..META_HEADER + key_len)?;
    let tags = meta.get(META_HEADER + key_len..META_HEADER + key_len + tags_len)?;
    Some(MetaView {
        hash,
        expires_at,
        written_at,
        size,
        key,
        tags,
    })
}

/// An entry as handed to [`DiskTier::put`].
#[derive(Clone, Copy, Debug)]
pub struct DiskWrite<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Its seeded hash.
    pub hash: u64,
    /// The value's JS type.
    pub kind: ValueKind,
    /// Codec flags of `stored`.
    pub flags: u8,
    /// The payload as stored.
    pub stored: &'a [u8],
    /// Encoded tags.
    pub tags: &'a [u8],
    /// Wall-clock expiry in ms; 0 for none.
    pub expires_at: u64,
}

/// What [`DiskTier::load`] found on disk.
struct Loaded {
    seed: u64,
    /// Live entries in position order, which is the order they were written in.
    live: Vec<LoadedEntry>,
    /// Positions of expired records (and of unreadable ones).
    expired: Vec<u64>,
    /// Meta records that failed their checksum (their positions are in `expired`).
    damaged: u64,
    next_position: u64,
}

/// A live entry found by [`DiskTier::load`].
struct LoadedEntry {
    position: u64,
    hash: u64,
    expires_at: u64,
    size: u32,
    written_at: u64,
}

impl DiskTier {
    /// Opens (creating if needed) the cache database in `dir`, locks the directory, rebuilds
    /// the index (dropping entries expired at `now_ms`) and starts the writer.
    pub fn open(dir: &Path, max_bytes: Option<u64>, now_ms: u64) -> Result<DiskTier, CacheError> {
        std::fs::create_dir_all(dir).map_err(|e| dir_error(dir, "cannot create it", e))?;
        if !std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
            return Err(dir_error(dir, "not a directory", "exists as a file"));
        }
        let (lock, opened) = Self::acquire(dir)?;
        // a file that does not open or load as a database is replaced by an empty one
        let (db, loaded, damage) = match opened.and_then(|db| Self::load_or_close(db, now_ms)) {
            Ok((db, loaded)) => (db, loaded, None),
            Err(e) if is_damage(&e) => {
                let db = Self::replace_damaged(dir, &e)?;
                let loaded = guarded(|| Self::load(&db, now_ms))
                    .map_err(|e| dir_error(dir, "cannot read its database", e))?;
                (db, loaded, Some(e.to_string()))
            }
            Err(e) => return Err(dir_error(dir, "cannot read its database", e)),
        };
        let mut index = DiskIndex::new();
        let mut expiry = BinaryHeap::new();
        // positions to delete: expired records, and any older record of a hash met twice
        let mut stale = loaded.expired;
        for entry in loaded.live {
            let replaced = index.upsert(
                entry.hash,
                entry.position,
                entry.size,
                entry.expires_at,
                entry.written_at,
            );
            stale.extend(replaced);
            if entry.expires_at != 0 {
                expiry.push(Reverse((entry.expires_at, entry.hash)));
            }
        }
        let shared = Arc::new(Shared::new(db));
        if damage.is_some() {
            shared.resets.fetch_add(1, Ordering::Relaxed);
        }
        let (sender, receiver) = mpsc::channel();
        let (done_sender, writer_done) = mpsc::channel();
        let writer = {
            let writer = Writer {
                dir: dir.to_path_buf(),
                seed: loaded.seed,
                shared: Arc::clone(&shared),
            };
            std::thread::Builder::new()
                .name("bulwark-cache-disk".into())
                .spawn(move || {
                    writer.run(receiver);
                    // the database closes before the lock goes
                    close_database(write_lock(&writer.shared.db).take());
                    drop(lock);
                    let _ = done_sender.send(());
                })
                .map_err(|e| dir_error(dir, "cannot start its writer thread", e))?
        };
        let mut tier = DiskTier {
            dir: dir.to_path_buf(),
            seed: loaded.seed,
            index,
            expiry,
            pending: HashMap::new(),
            pending_order: VecDeque::new(),
            pending_bytes: 0,
            pending_limit: MAX_PENDING_BYTES,
            next_seq: 1,
            next_position: loaded.next_position,
            shared,
            sender: Some(sender),
            writer: Some(writer),
            writer_done: Some(writer_done),
            max_bytes,
            counters: DiskCounters {
                // a damaged meta record drops its entry (below): counted, so that it shows
                errors: loaded.damaged,
                ..DiskCounters::default()
            },
            damage_at_open: damage,
        };
        for position in stale {
            tier.send_drop(position);
        }
        tier.enforce_bound(now_ms);
        Ok(tier)
    }

    /// Takes the directory's advisory lock and opens its database. A directory just released
    /// can still read as locked for a moment (a child process being spawned holds copies of
    /// the descriptors until it execs), so a refusal is retried for [`LOCK_PATIENCE`] before it
    /// is reported. The database is an error when the file is damaged ([`is_damage`]): the
    /// caller replaces it.
    fn acquire(dir: &Path) -> Result<(File, Result<Database, redb::Error>), CacheError> {
        let started = Instant::now();
        loop {
            match Self::try_acquire(dir) {
                Err(CacheError::Locked { .. }) if started.elapsed() < LOCK_PATIENCE => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                outcome => return outcome,
            }
        }
    }

    fn try_acquire(dir: &Path) -> Result<(File, Result<Database, redb::Error>), CacheError> {
        let locked = || CacheError::Locked {
            dir: dir.display().to_string(),
        };
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(|e| dir_error(dir, "cannot open its lock file", e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(locked()),
            Err(TryLockError::Error(e)) => return Err(dir_error(dir, "cannot lock it", e)),
        }
        match guarded(|| Ok(open_database(dir)?)) {
            Err(redb::Error::DatabaseAlreadyOpen) => Err(locked()),
            Err(e) if !is_damage(&e) => Err(dir_error(dir, "cannot open its database", e)),
            opened => Ok((lock, opened)),
        }
    }

    /// [`Self::load`]s `db`, or closes it when that fails.
    fn load_or_close(db: Database, now_ms: u64) -> Result<(Database, Loaded), redb::Error> {
        match guarded(|| Self::load(&db, now_ms)) {
            Ok(loaded) => Ok((db, loaded)),
            Err(e) => {
                close_database(Some(db));
                Err(e)
            }
        }
    }

    /// Removes a database file found damaged (`damage`) and makes a new, empty one in its
    /// place: the cache starts empty rather than refusing to start (module doc, Failures).
    fn replace_damaged(dir: &Path, damage: &redb::Error) -> Result<Database, CacheError> {
        remove_database_file(dir).map_err(|e| {
            dir_error(
                dir,
                &format!("its database is damaged ({damage}) and cannot be removed"),
                e,
            )
        })?;
        guarded(|| Ok(open_database(dir)?))
            .map_err(|e| dir_error(dir, "cannot open its database", e))
    }

    /// Reads the seed (creating it) and `log_meta`: the live entries in write order, the
    /// positions of expired and damaged ones, and the next free position. Drops the tables of
    /// the first layout, and empties those of a layout other than [`LAYOUT`].
    fn load(db: &Database, now_ms: u64) -> Result<Loaded, redb::Error> {
        let txn = db.begin_write()?;
        let (seed, layout) = {
            let mut settings = txn.open_table(SETTINGS)?;
            let stored = settings.get("seed")?.map(|v| v.value());
            let layout = settings.get("layout")?.map(|v| v.value());
            let seed = match stored {
                Some(seed) => seed,
                None => {
                    let seed = random_seed();
                    settings.insert("seed", seed)?;
                    seed
                }
            };
            if layout != Some(LAYOUT) {
                settings.insert("layout", LAYOUT)?;
            }
            (seed, layout)
        };
        for table in OLD_TABLES {
            txn.delete_table(table)?;
        }
        if layout != Some(LAYOUT) {
            txn.delete_table(LOG)?;
            txn.delete_table(LOG_META)?;
        }
        let mut live = Vec::new();
        let mut expired = Vec::new();
        let mut damaged = 0;
        let mut next_position = 1;
        {
            let log = txn.open_table(LOG)?;
            if let Some((position, _)) = log.last()? {
                next_position = position.value() + 1;
            }
            let meta = txn.open_table(LOG_META)?;
            if let Some((position, _)) = meta.last()? {
                next_position = next_position.max(position.value() + 1);
            }
            for item in meta.iter()? {
                let (position, value) = item?;
                let position = position.value();
                match decode_meta(value.value()) {
                    Some(m) if m.expires_at == 0 || now_ms < m.expires_at => {
                        live.push(LoadedEntry {
                            position,
                            hash: m.hash,
                            expires_at: m.expires_at,
                            size: m.size,
                            written_at: m.written_at,
                        })
                    }
                    Some(_) => expired.push(position),
                    None => {
                        damaged += 1;
                        expired.push(position);
                    }
                }
            }
        }
        txn.commit()?;
        Ok(Loaded {
            seed,
            live,
            expired,
            damaged,
            next_position,
        })
    }

    /// The hash seed of this directory.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Why the database file found at open was damaged, and so replaced by an empty one; `None`
    /// when it was read as it was.
    pub fn damage_at_open(&self) -> Option<&str> {
        self.damage_at_open.as_deref()
    }

    /// Entries on disk (or queued for it).
    pub fn len(&self) -> usize {
        if self.shared.is_online() {
            self.index.len()
        } else {
            0
        }
    }

    /// Whether the tier is empty.
    pub fn is_empty(&self) -> bool {
        self.index.len() == 0
    }

    /// Bytes on disk (record and meta of each entry).
    pub fn bytes(&self) -> u64 {
        if self.shared.is_online() {
            self.index.bytes
        } else {
            0
        }
    }

    /// The tier's counts.
    pub fn counters(&self) -> DiskCounters {
        DiskCounters {
            writes: self.shared.writes.load(Ordering::Relaxed),
            errors: self.counters.errors + self.shared.errors.load(Ordering::Relaxed),
            resets: self.shared.resets.load(Ordering::Relaxed),
            ..self.counters
        }
    }

    fn send(&mut self, op: Op) -> bool {
        let sent = self.sender.as_ref().is_some_and(|s| s.send(op).is_ok());
        if !sent {
            self.counters.errors += 1;
        }
        sent
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn mark_pending(&mut self, seq: u64, hash: u64, record: Option<Arc<[u8]>>) {
        let bytes = record.as_ref().map_or(0, |r| r.len());
        self.pending_bytes += bytes;
        self.pending.insert(hash, Pending { seq, record });
        self.pending_order.push_back((seq, hash, bytes));
    }

    /// Keeps this thread in step with the writer: after a failed write, drops the index (the
    /// file may no longer hold what it says) and asks the writer for a reset (module doc); then
    /// forgets pending writes the writer has applied.
    fn sync_with_writer(&mut self) {
        if self.shared.health.load(Ordering::Acquire) == FAILED
            && self
                .shared
                .health
                .compare_exchange(FAILED, RESETTING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.drop_index();
            let seq = self.take_seq();
            self.send(Op::Reset { seq });
        }
        self.prune_pending();
    }

    /// Forgets every entry and pending write (the writer is told separately).
    fn drop_index(&mut self) {
        self.index.clear();
        self.expiry.clear();
        self.pending.clear();
        self.pending_order.clear();
        self.pending_bytes = 0;
    }

    /// Forgets pending writes the writer has applied.
    fn prune_pending(&mut self) {
        let applied = self.shared.applied_seq.load(Ordering::Acquire);
        while let Some(&(seq, hash, bytes)) = self.pending_order.front() {
            if seq > applied {
                break;
            }
            self.pending_order.pop_front();
            self.pending_bytes -= bytes;
            if self.pending.get(&hash).is_some_and(|p| p.seq == seq) {
                self.pending.remove(&hash);
            }
        }
    }

    /// Deletes the record of `hash` (at `position`): until the writer has, a lookup of `hash`
    /// finds nothing.
    fn send_delete(&mut self, hash: u64, position: u64) {
        let seq = self.take_seq();
        self.mark_pending(seq, hash, None);
        self.send(Op::Delete { seq, position });
    }

    /// Deletes a record no entry refers to (expired or superseded when the tier opened).
    fn send_drop(&mut self, position: u64) {
        let seq = self.take_seq();
        self.send(Op::Delete { seq, position });
    }

    /// Looks `key` up at `now_ms`; a hit refreshes its recency (in memory only).
    pub fn get(&mut self, key: &[u8], hash: u64, now_ms: u64) -> DiskLookup {
        self.sync_with_writer();
        let Some(&slot) = self.index.get(hash) else {
            return DiskLookup::Miss;
        };
        if slot.expires_at != 0 && now_ms >= slot.expires_at {
            self.drop_entry(hash);
            self.counters.expirations += 1;
            return DiskLookup::Expired;
        }
        let found = match self.pending.get(&hash) {
            Some(Pending {
                record: Some(record),
                ..
            }) => decode_record(record)
                .filter(|(k, _)| *k == key)
                .map(|(_, e)| e),
            Some(Pending { record: None, .. }) => None,
            None => self.read(key, slot.position),
        };
        match found {
            Some(entry) => {
                self.index.touch(hash, now_ms);
                self.counters.hits += 1;
                DiskLookup::Hit(entry)
            }
            None => DiskLookup::Miss,
        }
    }

    fn read(&mut self, key: &[u8], position: u64) -> Option<DiskEntry> {
        self.counters.reads += 1;
        let read = || -> Result<Option<DiskEntry>, redb::Error> {
            if self.shared.fail.load(Ordering::Relaxed) {
                return Err(redb::Error::Io(std::io::Error::other(
                    "injected read failure",
                )));
            }
            let db = read_lock(&self.shared.db);
            let Some(db) = db.as_ref() else {
                return Ok(None);
            };
            let txn = db.begin_read()?;
            let table = txn.open_table(LOG)?;
            if self.shared.panic_reads.load(Ordering::Relaxed) {
                panic!("injected: invalid page type byte");
            }
            let Some(value) = table.get(position)? else {
                return Ok(None);
            };
            match decode_record(value.value()) {
                Some((stored_key, entry)) => Ok((stored_key == key).then_some(entry)),
                None => Err(redb::Error::Corrupted(format!(
                    "the record at position {position} does not match its checksum"
                ))),
            }
        };
        match guarded(read) {
            Ok(entry) => entry,
            Err(e) => {
                self.counters.errors += 1;
                if is_damage(&e) {
                    self.take_offline();
                }
                None
            }
        }
    }

    /// After a lookup found the file damaged: drops the index and asks the writer for a reset,
    /// as after a failed write (module doc, Failures). A tier already failed is left to
    /// [`Self::sync_with_writer`].
    fn take_offline(&mut self) {
        let taken = self.shared.health.compare_exchange(
            ONLINE,
            RESETTING,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if taken.is_ok() {
            self.drop_index();
            let seq = self.take_seq();
            self.send(Op::Reset { seq });
        } else {
            self.sync_with_writer();
        }
    }

    /// Whether `hash` is on disk and live at `now_ms` (by the index alone: no disk read, so
    /// a colliding key reads as present, with the odds given in the module doc).
    pub fn contains(&self, hash: u64, now_ms: u64) -> bool {
        self.shared.is_online()
            && self
                .index
                .get(hash)
                .is_some_and(|s| s.expires_at == 0 || now_ms < s.expires_at)
    }

    /// Marks `hash` as just used, so that a key served from memory is not the disk's LRU
    /// victim.
    pub fn touch(&mut self, hash: u64, now_ms: u64) {
        self.index.touch(hash, now_ms);
    }

    /// Queues an entry for writing and evicts (expired entries first, then the least recently
    /// used) to stay within `disk_max_bytes`. Returns whether it will be written.
    pub fn put(&mut self, entry: DiskWrite<'_>, now_ms: u64) -> bool {
        self.sync_with_writer();
        if !self.shared.is_online() {
            // failed or being reset: the index is (or is about to be) empty, so no older copy
            // remains to be dropped; this value lives in memory only
            self.counters.skipped += 1;
            return false;
        }
        let record = encode_record(
            entry.kind,
            entry.flags,
            entry.expires_at,
            entry.key,
            entry.tags,
            entry.stored,
        );
        let size = record.len() + META_HEADER + entry.key.len() + entry.tags.len() + CHECKSUM;
        if self.max_bytes.is_some_and(|max| size as u64 > max) || size > u32::MAX as usize {
            self.counters.oversized += 1;
            self.drop_entry(entry.hash);
            return false;
        }
        if self.pending_bytes + record.len() > self.pending_limit {
            // The writer is behind: this value lives in memory only. An older copy on disk must
            // not come back in its place, so it goes (a delete carries no record).
            self.counters.skipped += 1;
            self.drop_entry(entry.hash);
            return false;
        }
        let meta = encode_meta(
            entry.hash,
            entry.expires_at,
            now_ms,
            size as u32,
            entry.key,
            entry.tags,
        );
        let record: Arc<[u8]> = record.into();
        let position = self.next_position;
        self.next_position += 1;
        let replaces =
            self.index
                .upsert(entry.hash, position, size as u32, entry.expires_at, now_ms);
        if entry.expires_at != 0 {
            self.expiry.push(Reverse((entry.expires_at, entry.hash)));
        }
        let seq = self.take_seq();
        self.mark_pending(seq, entry.hash, Some(Arc::clone(&record)));
        self.send(Op::Put {
            seq,
            position,
            replaces,
            record,
            meta,
        });
        self.enforce_bound(now_ms);
        true
    }

    fn enforce_bound(&mut self, now_ms: u64) {
        let Some(max) = self.max_bytes else {
            return;
        };
        if self.index.bytes <= max {
            return;
        }
        // expired entries go first, whatever their recency
        while self.index.bytes > max {
            if self.reclaim_expired(now_ms, 64) == 0 {
                break;
            }
        }
        while self.index.bytes > max && self.index.head != NIL {
            let victim = self.index.slots[self.index.head as usize].hash;
            self.drop_entry(victim);
            self.counters.evictions += 1;
        }
    }

    /// Removes `hash` from the index and its record from disk; returns whether it was there.
    pub fn remove(&mut self, hash: u64) -> bool {
        self.sync_with_writer();
        self.drop_entry(hash)
    }

    /// Removes `hash` from the index and sends the deletion of its record.
    fn drop_entry(&mut self, hash: u64) -> bool {
        match self.index.remove(hash) {
            Some(position) => {
                self.send_delete(hash, position);
                true
            }
            None => false,
        }
    }

    /// Removes everything; returns how many entries there were.
    pub fn clear(&mut self) -> usize {
        self.sync_with_writer();
        if !self.shared.is_online() {
            // nothing on disk is indexed, and the reset empties the file
            return 0;
        }
        let removed = self.index.len();
        self.drop_index();
        let seq = self.take_seq();
        self.send(Op::Clear { seq });
        removed
    }

    /// Removes the entries `selector` matches, after every write queued before it, and returns
    /// their hashes. Blocks until the writer has applied it (an invalidation must see writes
    /// not yet durable, and tags live on disk, not in memory).
    pub fn invalidate(&mut self, selector: Selector) -> Vec<u64> {
        self.sync_with_writer();
        if !self.shared.is_online() {
            return Vec::new();
        }
        let seq = self.take_seq();
        let (reply, answer) = mpsc::sync_channel(1);
        if !self.send(Op::Invalidate {
            seq,
            selector,
            reply,
        }) {
            return Vec::new();
        }
        let removed = answer.recv().unwrap_or_default();
        for &hash in &removed {
            self.index.remove(hash);
        }
        // a failed batch answers with nothing: the index is then dropped here
        self.sync_with_writer();
        removed
    }

    /// Removes up to `budget` entries whose time is up at `now_ms`; returns how many.
    pub fn reclaim_expired(&mut self, now_ms: u64, budget: usize) -> usize {
        self.sync_with_writer();
        let mut reclaimed = 0;
        while reclaimed < budget {
            let Some(&Reverse((expires_at, hash))) = self.expiry.peek() else {
                break;
            };
            if expires_at > now_ms {
                break;
            }
            self.expiry.pop();
            if self
                .index
                .get(hash)
                .is_some_and(|s| s.expires_at == expires_at)
            {
                self.drop_entry(hash);
                self.counters.expirations += 1;
                reclaimed += 1;
            }
        }
        if self.expiry.len() > 2 * self.index.len() + 1024 {
            self.expiry = self
                .index
                .slots
                .iter()
                .filter(|s| s.expires_at != 0 && self.index.find(s.hash).is_some())
                .map(|s| Reverse((s.expires_at, s.hash)))
                .collect();
        }
        reclaimed
    }

    /// A ticket that completes when everything queued so far is durable.
    pub fn flush(&mut self) -> FlushTicket {
        let (reply, receiver) = mpsc::sync_channel(1);
        self.send(Op::Flush { reply });
        FlushTicket {
            receiver: Some(receiver),
        }
    }

    /// Stops the writer after it has applied everything queued, and waits for it.
    pub fn close(&mut self) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(Op::Shutdown);
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        self.writer_done = None;
    }

    /// Test hook: lower the bound on bytes queued for the writer.
    #[cfg(test)]
    pub(crate) fn set_pending_limit(&mut self, bytes: usize) {
        self.pending_limit = bytes;
    }

    /// Test hook: make every later write batch and read fail.
    #[cfg(test)]
    pub(crate) fn inject_failures(&self, fail: bool) {
        self.shared.fail.store(fail, Ordering::Relaxed);
    }

    /// Test hook: make every later read panic inside redb's read transaction.
    #[cfg(test)]
    pub(crate) fn inject_read_panics(&self, panic: bool) {
        self.shared.panic_reads.store(panic, Ordering::Relaxed);
    }
}

impl Drop for DiskTier {
    /// Asks the writer to drain and stop, and waits a bounded time; a writer still busy after
    /// that finishes on its own (it holds the database and the lock until then).
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(Op::Shutdown);
        }
        if let Some(done) = self.writer_done.take() {
            if done.recv_timeout(DROP_WAIT).is_ok() {
                if let Some(writer) = self.writer.take() {
                    let _ = writer.join();
                }
            }
        }
    }
}

/// The writer thread's state (module doc, Threads and Failures).
struct Writer {
    dir: PathBuf,
    /// The directory's hash seed, written into a database made anew.
    seed: u64,
    shared: Arc<Shared>,
}

impl Writer {
    /// Applies queued operations in batches, one write transaction each, until a shutdown or
    /// until the calling side is gone. After a failed batch, discards what it is sent until the
    /// calling thread's reset, then resets the database, retrying with a growing pause.
    fn run(&self, receiver: Receiver<Op>) {
        let shared = &self.shared;
        let mut batch = Vec::new();
        let mut last_durable = Instant::now();
        // a flush is durable only when no batch failed since the previous flush
        let mut failed_since_flush = false;
        // a batch failed, and the database is not yet reset
        let mut failed = false;
        // the calling thread has dropped its index and asked for the reset
        let mut reset_asked = false;
        let mut pause = FIRST_RETRY;
        let mut next_attempt = Instant::now();
        loop {
            let first = if failed && reset_asked {
                let wait = next_attempt.saturating_duration_since(Instant::now());
                match receiver.recv_timeout(wait) {
                    Ok(op) => Some(op),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return self.settle_on_close(),
                }
            } else {
                match receiver.recv() {
                    Ok(op) => Some(op),
                    Err(_) if failed => return self.settle_on_close(),
                    Err(_) => return,
                }
            };
            batch.extend(first);
            while batch.len() < MAX_BATCH && !matches!(batch.last(), Some(Op::Shutdown)) {
                match receiver.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let shutdown = matches!(batch.last(), Some(Op::Shutdown));
            if !failed && batch.iter().any(|op| matches!(op, Op::Reset { .. })) {
                // a reset reaching a working writer comes from a lookup that found the file
                // damaged: the calling thread has dropped its index; the file goes as after a
                // failed batch
                failed = true;
                failed_since_flush = true;
                next_attempt = Instant::now();
                let _ = remove_database_file(&self.dir);
            }
            // a failed tier discards the batch: the reset empties the file
            let discarded = failed;
            let removed_sets = if discarded {
                reset_asked |= batch.iter().any(|op| matches!(op, Op::Reset { .. }));
                if reset_asked && (shutdown || Instant::now() >= next_attempt) {
                    if self.reset() {
                        failed = false;
                        reset_asked = false;
                        pause = FIRST_RETRY;
                        last_durable = Instant::now();
                        shared.health.store(ONLINE, Ordering::Release);
                    } else {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        next_attempt = Instant::now() + pause;
                        pause = (pause * 2).min(LAST_RETRY);
                    }
                }
                Vec::new()
            } else {
                // fsync only when someone waits for it (a flush, a shutdown) or once a second:
                // a durable commit per batch held the writer to about 22 MB/s here
                let durable = shutdown
                    || last_durable.elapsed() >= DURABLE_EVERY
                    || batch.iter().any(|op| matches!(op, Op::Flush { .. }));
                let outcome = if shared.fail.load(Ordering::Relaxed) {
                    Err(redb::Error::Corrupted("injected write failure".into()))
                } else {
                    let db = read_lock(&shared.db);
                    match db.as_ref() {
                        Some(db) => guarded(|| apply_batch(db, &batch, durable)),
                        None => Err(redb::Error::Corrupted("the database is closed".into())),
                    }
                };
                match outcome {
                    Ok((written, removed_sets)) => {
                        if durable {
                            last_durable = Instant::now();
                        }
                        shared.writes.fetch_add(written, Ordering::Relaxed);
                        removed_sets
                    }
                    Err(_) => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        failed_since_flush = true;
                        failed = true;
                        next_attempt = Instant::now();
                        // before any reply: whoever waits on one then finds the tier failed
                        // (unless a lookup found the file damaged first: its reset is on the
                        // way)
                        let _ = shared.health.compare_exchange(
                            ONLINE,
                            FAILED,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        );
                        // the reset would empty it anyway, and until then a crash could
                        // bring back what the failed batch overwrote or deleted; the open
                        // database keeps reading it (where it cannot be removed, read-only
                        // say, the reset empties it instead)
                        let _ = remove_database_file(&self.dir);
                        Vec::new()
                    }
                }
            };
            self.finish_batch(&mut batch, removed_sets, &mut failed_since_flush, discarded);
            if shutdown {
                if failed {
                    self.settle_on_close();
                }
                return;
            }
        }
    }

    /// Marks the batch applied (so the calling thread lets go of its pending records) and
    /// answers its invalidations and flushes. `removed_sets` holds, for each invalidation in
    /// order, the hashes it removed; a failed or `discarded` batch removed nothing, and none of
    /// its flushes is durable.
    fn finish_batch(
        &self,
        batch: &mut Vec<Op>,
        removed_sets: Vec<Vec<u64>>,
        failed_since_flush: &mut bool,
        discarded: bool,
    ) {
        if let Some(seq) = batch.iter().filter_map(Op::seq).max() {
            self.shared.applied_seq.fetch_max(seq, Ordering::Release);
        }
        let mut removed_sets = removed_sets.into_iter();
        for op in batch.drain(..) {
            match op {
                Op::Invalidate { reply, .. } => {
                    let _ = reply.send(removed_sets.next().unwrap_or_default());
                }
                Op::Flush { reply } => {
                    let _ = reply.send(!discarded && !*failed_since_flush);
                    *failed_since_flush = false;
                }
                _ => {}
            }
        }
    }

    /// Empties the database: opens it again (redb refuses everything after an I/O error until
    /// then; a removed file is made anew) and empties it, or, when that cannot be written,
    /// removes the file and makes a new one. Returns whether the tier is usable again.
    fn reset(&self) -> bool {
        if self.shared.fail.load(Ordering::Relaxed) {
            return false;
        }
        // no lookup holds it: they read under the read lock
        close_database(write_lock(&self.shared.db).take());
        let reopened = guarded(|| self.open_empty()).or_else(|_| {
            remove_database_file(&self.dir)?;
            guarded(|| self.open_empty())
        });
        match reopened {
            Ok(db) => {
                *write_lock(&self.shared.db) = Some(db);
                self.shared.resets.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    /// Opens (or creates) the database and leaves it holding the directory's seed and empty
    /// entry tables, durably.
    fn open_empty(&self) -> Result<Database, redb::Error> {
        let db = open_database(&self.dir)?;
        let txn = db.begin_write()?;
        txn.delete_table(LOG)?;
        txn.delete_table(LOG_META)?;
        // lookups expect the tables to exist
        txn.open_table(LOG)?;
        txn.open_table(LOG_META)?;
        let mut settings = txn.open_table(SETTINGS)?;
        settings.insert("seed", self.seed)?;
        settings.insert("layout", LAYOUT)?;
        drop(settings);
        txn.commit()?;
        Ok(db)
    }

    /// At the shutdown of a tier still failed: resets it now, or else removes its file, so
    /// that no restart serves what the failure left behind.
    fn settle_on_close(&self) {
        if !self.reset() {
            close_database(write_lock(&self.shared.db).take());
            let _ = remove_database_file(&self.dir);
        }
    }
}

impl Op {
    /// The sequence number of an operation the calling thread tracks.
    fn seq(&self) -> Option<u64> {
        match self {
            Op::Put { seq, .. }
            | Op::Delete { seq, .. }
            | Op::Clear { seq }
            | Op::Reset { seq }
            | Op::Invalidate { seq, .. } => Some(*seq),
            Op::Flush { .. } | Op::Shutdown => None,
        }
    }
}

/// Deletes the record at `position` from both tables.
fn delete_record(
    log: &mut redb::Table<'_, u64, &[u8]>,
    meta: &mut redb::Table<'_, u64, &[u8]>,
    position: u64,
) -> Result<(), redb::Error> {
    log.remove(position)?;
    meta.remove(position)?;
    Ok(())
}

/// Applies one batch in one write transaction; returns the entries written and, for each
/// invalidation in order, the hashes it removed.
fn apply_batch(
    db: &Database,
    batch: &[Op],
    durable: bool,
) -> Result<(u64, Vec<Vec<u64>>), redb::Error> {
    let mut txn = db.begin_write()?;
    if !durable {
        // refused only while persistent savepoints change, which the cache never makes; the
        // commit is then simply durable
        let _ = txn.set_durability(redb::Durability::None);
    }
    let mut written = 0;
    let mut removed_sets = Vec::new();
    {
        let mut log = txn.open_table(LOG)?;
        let mut meta = txn.open_table(LOG_META)?;
        for op in batch {
            match op {
                Op::Put {
                    position,
                    replaces,
                    record,
                    meta: meta_record,
                    ..
                } => {
                    log.insert(*position, &record[..])?;
                    meta.insert(*position, meta_record.as_slice())?;
                    if let Some(old) = replaces {
                        delete_record(&mut log, &mut meta, *old)?;
                    }
                    written += 1;
                }
                Op::Delete { position, .. } => delete_record(&mut log, &mut meta, *position)?,
                // a reset is sent only after a failure, and the writer leaves its failed state
                // only on it, so a working writer never sees one; it would empty the file like
                // the index it answers
                Op::Clear { .. } | Op::Reset { .. } => {
                    log.retain(|_, _| false)?;
                    meta.retain(|_, _| false)?;
                }
                Op::Invalidate { selector, .. } => {
                    let mut positions = Vec::new();
                    let mut hashes = Vec::new();
                    for item in meta.iter()? {
                        let (position, value) = item?;
                        if let Some(m) =
                            decode_meta(value.value()).filter(|m| selector.matches(m.key, m.tags))
                        {
                            positions.push(position.value());
                            hashes.push(m.hash);
                        }
                    }
                    for &position in &positions {
                        delete_record(&mut log, &mut meta, position)?;
                    }
                    removed_sets.push(hashes);
                }
                Op::Flush { .. } | Op::Shutdown => {}
            }
        }
    }
    txn.commit()?;
    Ok((written, removed_sets))
}
