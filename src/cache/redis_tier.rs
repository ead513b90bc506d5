//! The cache's shared tier in Redis and its invalidation bus over Redis pub/sub.
//!
//! Two background threads per cache, each with its own connection ([`Link`]):
//!
//! - the command thread takes everything queued since its last round trip (lookups, write-
//!   throughs, invalidations) and sends it as one pipeline. A value is stored under
//!   `<prefix>v:<key>` as one kind byte, the entry's tags (a 16-bit little-endian length, then
//!   the tags separated by NUL) and the payload, with the entry's TTL, so that an instance that
//!   fills its local tiers from Redis keeps the tags; a tag is also a set `<prefix>t:<tag>` of
//!   the keys set with it, for removing them from Redis. An invalidation removes the entries from
//!   Redis first and then publishes it, in the same pipeline (or script), so that an instance
//!   that hears of it and reloads never reads the old value back from Redis;
//! - the subscriber thread listens on the channel. A message is
//!   `<publisher> <seq> <op> <arg>`; every publisher numbers its messages 1, 2, 3... An
//!   instance that sees a publisher skip a number (a message lost, or published while Redis
//!   was failing) cannot know what it missed, so it drops its local tiers; so does an instance
//!   whose subscription was lost and made again (Redis restarted, connection cut). Both are
//!   reported as flush events and counted.
//!
//! Keys, tags and invalidation arguments are bytes: the WTF-8 of the JS strings (see
//! `common::wtf8`), so that a key with a lone surrogate is a key of its own here too.
//!
//! Nothing here touches the local tiers: events go to the binding, which applies them on the JS
//! thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use redis::Value;

use crate::common::redis::{Link, RedisSettings, StoreError};

/// Where the tier lives and where invalidations are published.
#[derive(Clone, Debug)]
pub struct TierSettings {
    /// Connection settings.
    pub redis: RedisSettings,
    /// Prefix of every key written.
    pub prefix: String,
    /// The pub/sub channel of invalidations.
    pub channel: String,
}

/// What an invalidation removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidateOp {
    /// One key.
    Delete,
    /// Every entry with a tag.
    Tag,
    /// Every key starting with a prefix.
    Prefix,
    /// Everything.
    Clear,
}

impl InvalidateOp {
    /// The one-letter code used in messages.
    pub fn code(self) -> &'static str {
        match self {
            InvalidateOp::Delete => "d",
            InvalidateOp::Tag => "t",
            InvalidateOp::Prefix => "p",
            InvalidateOp::Clear => "c",
        }
    }

    /// The op of a code, or of its JS name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "d" | "delete" => Some(InvalidateOp::Delete),
            "t" | "tag" => Some(InvalidateOp::Tag),
            "p" | "prefix" => Some(InvalidateOp::Prefix),
            "c" | "clear" => Some(InvalidateOp::Clear),
            _ => None,
        }
    }

    /// The JS name.
    pub fn name(self) -> &'static str {
        match self {
            InvalidateOp::Delete => "delete",
            InvalidateOp::Tag => "tag",
            InvalidateOp::Prefix => "prefix",
            InvalidateOp::Clear => "clear",
        }
    }
}

/// Work for the command thread.
#[derive(Clone, Debug)]
pub enum Command {
    /// Look `key` up; answered by [`Event::Got`] with the same id.
    Get {
        /// Matches the answer to the call.
        id: u64,
        /// The cache key.
        key: Vec<u8>,
    },
    /// Write an entry through to Redis.
    Set {
        /// The cache key.
        key: Vec<u8>,
        /// Kind byte and payload.
        value: Vec<u8>,
        /// Time to live; none: no expiry.
        ttl_ms: Option<u64>,
        /// Tags of the entry.
        tags: Vec<Vec<u8>>,
    },
    /// Remove from Redis, then tell the other instances.
    Invalidate {
        /// What to remove.
        op: InvalidateOp,
        /// The key, tag or prefix (empty for `Clear`).
        arg: Vec<u8>,
    },
}

/// What the threads report.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// The answer to a `Get`: the stored bytes and their remaining TTL, or nothing (a miss, or
    /// Redis failed).
    Got {
        /// The `Get`'s id.
        id: u64,
        /// Kind byte and payload, with the remaining TTL in ms when the entry expires.
        value: Option<(Vec<u8>, Option<u64>)>,
    },
    /// Another instance invalidated something.
    Invalidated {
        /// What.
        op: InvalidateOp,
        /// The key, tag or prefix.
        arg: Vec<u8>,
    },
    /// The local tiers must be dropped: a gap in a publisher's numbers, or a subscription made
    /// again after it was lost.
    Flush {
        /// `gap` or `resubscribed`.
        reason: &'static str,
    },
}

/// Counters shared with the threads.
#[derive(Debug, Default)]
pub struct TierCounters {
    /// Pipelines sent.
    pub round_trips: AtomicU64,
    /// Lookups answered with a value.
    pub hits: AtomicU64,
    /// Lookups answered with nothing.
    pub misses: AtomicU64,
    /// Writes sent.
    pub sets: AtomicU64,
    /// Invalidations published.
    pub published: AtomicU64,
    /// Invalidations received from other instances.
    pub received: AtomicU64,
    /// Local flushes asked for (gaps and resubscriptions).
    pub flushes: AtomicU64,
    /// Commands lost to Redis errors.
    pub errors: AtomicU64,
    /// Whether the subscription is up.
    pub subscribed: AtomicBool,
}

/// The running tier: a handle on both threads. Dropping it stops them.
pub struct RedisTier {
    sender: Option<Sender<Vec<Command>>>,
    stop: Arc<AtomicBool>,
    counters: Arc<TierCounters>,
}

type Notify = Arc<dyn Fn(Event) + Send + Sync>;

/// A publisher id that differs between instances and processes.
fn publisher_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", hasher.finish())
}

impl RedisTier {
    /// Starts both threads; `notify` is called on them with every event.
    pub fn start(settings: TierSettings, notify: Notify) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(TierCounters::default());
        let publisher = publisher_id();
        let commands = CommandWorker {
            link: Link::new(settings.redis.clone()),
            settings: settings.clone(),
            publisher: publisher.clone(),
            seq: 0,
            counters: counters.clone(),
            stop: stop.clone(),
        };
        let notify_commands = notify.clone();
        thread::Builder::new()
            .name("bulwark-cache-redis".into())
            .spawn(move || commands.run(receiver, notify_commands))?;
        let subscriber = Subscriber {
            settings,
            publisher,
            stop: stop.clone(),
            counters: counters.clone(),
        };
        thread::Builder::new()
            .name("bulwark-cache-sub".into())
            .spawn(move || subscriber.run(notify))?;
        Ok(RedisTier {
            sender: Some(sender),
            stop,
            counters,
        })
    }

    /// Queues commands; gives them back when the tier was stopped.
    pub fn send(&self, commands: Vec<Command>) -> Result<(), Vec<Command>> {
        match &self.sender {
            Some(sender) => sender.send(commands).map_err(|e| e.0),
            None => Err(commands),
        }
    }

    /// The counters.
    pub fn counters(&self) -> &TierCounters {
        &self.counters
    }

    /// A flag that stops both threads when set (for the environment's cleanup hook, which
    /// cannot reach the tier itself).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Stops both threads (the command thread once it has sent what was queued); never waits.
    pub fn stop(&mut self) {
        self.sender = None;
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for RedisTier {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Escapes the glob characters of a `SCAN MATCH` pattern.
fn glob_escape(text: &[u8]) -> Vec<u8> {
    // byte by byte: no byte of a multi-byte (WTF-8) character is ASCII
    let mut out = Vec::with_capacity(text.len());
    for &b in text {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// `<prefix><kind>:<name>`: the Redis key of a value (`kind` "v") or of a tag's set ("t").
fn redis_key(prefix: &str, kind: &str, name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + kind.len() + 1 + name.len());
    key.extend_from_slice(prefix.as_bytes());
    key.extend_from_slice(kind.as_bytes());
    key.push(b':');
    key.extend_from_slice(name);
    key
}

/// Removes every key of a tag's set, the set itself, and publishes; atomically.
const TAG_SCRIPT: &str = r#"
local members = redis.call('SMEMBERS', KEYS[1])
for i = 1, #members, 500 do
  local batch = {}
  for j = i, math.min(i + 499, #members) do batch[#batch + 1] = ARGV[1] .. members[j] end
  redis.call('DEL', unpack(batch))
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return #members
"#;

struct CommandWorker {
    link: Link,
    settings: TierSettings,
    publisher: String,
    seq: u64,
    counters: Arc<TierCounters>,
    stop: Arc<AtomicBool>,
}

impl CommandWorker {
    fn value_key(&self, key: &[u8]) -> Vec<u8> {
        redis_key(&self.settings.prefix, "v", key)
    }

    fn run(mut self, receiver: Receiver<Vec<Command>>, notify: Notify) {
        loop {
            // the channel closes when the tier is stopped or dropped; the flag is set when the
            // environment goes away without either
            let first = match receiver.recv_timeout(POLL) {
                Ok(first) => first,
                Err(mpsc::RecvTimeoutError::Timeout) if !self.stop.load(Ordering::Relaxed) => {
                    continue
                }
                Err(_) => return,
            };
            let mut commands = first;
            while let Ok(more) = receiver.try_recv() {
                commands.extend(more);
            }
            self.run_batch(commands, &notify);
        }
    }

    fn message(&mut self, op: InvalidateOp, arg: &[u8]) -> Vec<u8> {
        // numbered even when sending fails: receivers then see the gap and flush
        self.seq += 1;
        let mut message = format!("{} {} {} ", self.publisher, self.seq, op.code()).into_bytes();
        message.extend_from_slice(arg);
        message
    }

    fn run_batch(&mut self, commands: Vec<Command>, notify: &Notify) {
        let mut pipe = redis::pipe();
        // (get id) for every GET+PTTL pair in the pipeline, in order
        let mut gets: Vec<u64> = Vec::new();
        for command in commands {
            match command {
                Command::Get { id, key } => {
                    pipe.cmd("GET").arg(self.value_key(&key));
                    pipe.cmd("PTTL").arg(self.value_key(&key));
                    gets.push(id);
                }
                Command::Set {
                    key,
                    value,
                    ttl_ms,
                    tags,
                } => {
                    let value_key = self.value_key(&key);
                    let set = pipe.cmd("SET").arg(&value_key).arg(value);
                    if let Some(ttl) = ttl_ms {
                        set.arg("PX").arg(ttl.max(1));
                    }
                    pipe.ignore();
                    for tag in tags {
                        pipe.cmd("SADD")
                            .arg(redis_key(&self.settings.prefix, "t", &tag))
                            .arg(&key)
                            .ignore();
                    }
                    self.counters.sets.fetch_add(1, Ordering::Relaxed);
                }
                Command::Invalidate { op, arg } => {
                    let message = self.message(op, &arg);
                    match op {
                        InvalidateOp::Delete => {
                            pipe.cmd("DEL").arg(self.value_key(&arg)).ignore();
                            pipe.cmd("PUBLISH")
                                .arg(&self.settings.channel)
                                .arg(message)
                                .ignore();
                        }
                        InvalidateOp::Tag => {
                            pipe.cmd("EVAL")
                                .arg(TAG_SCRIPT)
                                .arg(1)
                                .arg(redis_key(&self.settings.prefix, "t", &arg))
                                .arg(redis_key(&self.settings.prefix, "v", b""))
                                .arg(&self.settings.channel)
                                .arg(message)
                                .ignore();
                        }
                        InvalidateOp::Prefix | InvalidateOp::Clear => {
                            // the keys are found with SCAN between pipelines: send what is
                            // queued, remove, then publish with the next pipeline
                            self.send(&mut pipe, &mut gets, notify);
                            let mut pattern = match op {
                                InvalidateOp::Prefix => glob_escape(&self.value_key(&arg)),
                                _ => glob_escape(self.settings.prefix.as_bytes()),
                            };
                            pattern.push(b'*');
                            if let Err(e) = self.remove_matching(&pattern) {
                                self.link.fail(e);
                                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                            }
                            pipe.cmd("PUBLISH")
                                .arg(&self.settings.channel)
                                .arg(message)
                                .ignore();
                        }
                    }
                    self.counters.published.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.send(&mut pipe, &mut gets, notify);
    }

    fn remove_matching(&mut self, pattern: &[u8]) -> Result<(), StoreError> {
        let connection = self.link.connection()?;
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query(connection)?;
            if !keys.is_empty() {
                redis::cmd("UNLINK").arg(&keys).exec(connection)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// One attempt; the error says whether the connection was found dropped.
    fn query(&mut self, pipe: &redis::Pipeline) -> Result<Vec<Value>, (bool, StoreError)> {
        let connection = self.link.connection().map_err(|e| (false, e))?;
        self.counters.round_trips.fetch_add(1, Ordering::Relaxed);
        pipe.query(connection).map_err(|e| {
            let dropped = e.is_connection_dropped() || e.is_io_error();
            (dropped, StoreError::from(e))
        })
    }

    /// Sends the pipeline (when it holds anything) and answers its lookups.
    fn send(&mut self, pipe: &mut redis::Pipeline, gets: &mut Vec<u64>, notify: &Notify) {
        if pipe.is_empty() {
            return;
        }
        // a connection idle since Redis restarted is found dead on its first use: that use is
        // made again once on a new connection (the commands here are safe to repeat)
        let was_connected = self.link.is_connected();
        let mut result = self.query(pipe);
        if let Err((true, _)) = &result {
            if was_connected {
                self.link.reconnect_now();
                result = self.query(pipe);
            }
        }
        let result = result.map_err(|(_, e)| e);
        pipe.clear();
        let values = match result {
            Ok(values) => values,
            Err(e) => {
                self.link.fail(e);
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                for id in gets.drain(..) {
                    self.counters.misses.fetch_add(1, Ordering::Relaxed);
                    notify(Event::Got { id, value: None });
                }
                return;
            }
        };
        let mut values = values.into_iter();
        for id in gets.drain(..) {
            let value = values.next();
            let ttl = values.next();
            let found = match (value, ttl) {
                (Some(Value::BulkString(bytes)), ttl) if !bytes.is_empty() => {
                    let ttl = match ttl {
                        Some(Value::Int(ms)) if ms > 0 => Some(ms as u64),
                        _ => None,
                    };
                    Some((bytes, ttl))
                }
                _ => None,
            };
            let counter = if found.is_some() {
                &self.counters.hits
            } else {
                &self.counters.misses
            };
            counter.fetch_add(1, Ordering::Relaxed);
            notify(Event::Got { id, value: found });
        }
    }
}

struct Subscriber {
    settings: TierSettings,
    publisher: String,
    stop: Arc<AtomicBool>,
    counters: Arc<TierCounters>,
}

/// How often the subscriber looks at the stop flag while no message comes.
const POLL: Duration = Duration::from_millis(200);

/// Per-publisher message numbers seen, and what a new message means.
#[derive(Default)]
pub struct Sequences {
    last: HashMap<String, u64>,
}

impl Sequences {
    /// The event a message stands for (`None` for our own messages and unreadable ones).
    pub fn on_message(&mut self, me: &str, payload: &[u8]) -> Option<Event> {
        let mut parts = payload.splitn(4, |&b| b == b' ');
        let publisher = std::str::from_utf8(parts.next()?).ok()?;
        let seq: u64 = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let op = InvalidateOp::parse(std::str::from_utf8(parts.next()?).ok()?)?;
        let arg = parts.next().unwrap_or_default().to_vec();
        if publisher == me {
            return None;
        }
        match self.last.get(publisher).copied() {
            // a message sent again (a retried pipeline) was applied already
            Some(last) if seq <= last => None,
            Some(last) if seq != last + 1 => {
                self.last.insert(publisher.to_string(), seq);
                Some(Event::Flush { reason: "gap" })
            }
            _ => {
                self.last.insert(publisher.to_string(), seq);
                Some(Event::Invalidated { op, arg })
            }
        }
    }

    /// Forgets every publisher (after a flush, nothing known is owed).
    pub fn reset(&mut self) {
        self.last.clear();
    }
}

impl Subscriber {
    fn run(self, notify: Notify) {
        let mut subscribed_before = false;
        let mut sequences = Sequences::default();
        while !self.stop.load(Ordering::Relaxed) {
            let client = match redis::Client::open(self.settings.redis.url.as_str()) {
                Ok(client) => client,
                Err(_) => return,
            };
            let mut connection =
                match client.get_connection_with_timeout(self.settings.redis.connect_timeout) {
                    Ok(connection) => connection,
                    Err(_) => {
                        thread::sleep(self.settings.redis.retry.min(POLL));
                        continue;
                    }
                };
            let mut pubsub = connection.as_pubsub();
            if pubsub.subscribe(&self.settings.channel).is_err()
                || pubsub.set_read_timeout(Some(POLL)).is_err()
            {
                thread::sleep(self.settings.redis.retry.min(POLL));
                continue;
            }
            self.counters.subscribed.store(true, Ordering::Relaxed);
            if subscribed_before {
                // what was published while the subscription was down is lost
                sequences.reset();
                self.counters.flushes.fetch_add(1, Ordering::Relaxed);
                notify(Event::Flush {
                    reason: "resubscribed",
                });
            }
            subscribed_before = true;
            while !self.stop.load(Ordering::Relaxed) {
                match pubsub.get_message() {
                    Ok(message) => {
                        let payload: Vec<u8> = match message.get_payload() {
                            Ok(payload) => payload,
                            Err(_) => continue,
                        };
                        if let Some(event) = sequences.on_message(&self.publisher, &payload) {
                            match &event {
                                Event::Flush { .. } => {
                                    sequences.reset();
                                    self.counters.flushes.fetch_add(1, Ordering::Relaxed);
                                }
                                _ => {
                                    self.counters.received.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            notify(event);
                        }
                    }
                    Err(e) if e.is_timeout() => continue,
                    Err(_) => break,
                }
            }
            self.counters.subscribed.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_in_order_are_applied_and_a_gap_asks_for_a_flush() {
        let mut seq = Sequences::default();
        assert_eq!(seq.on_message("me", b"me 1 d k"), None);
        assert_eq!(
            seq.on_message("me", b"other 7 d some key"),
            Some(Event::Invalidated {
                op: InvalidateOp::Delete,
                arg: b"some key".to_vec()
            })
        );
        assert_eq!(
            seq.on_message("me", b"other 8 t news"),
            Some(Event::Invalidated {
                op: InvalidateOp::Tag,
                arg: b"news".to_vec()
            })
        );
        // the same message twice is applied once
        assert_eq!(seq.on_message("me", b"other 8 t news"), None);
        assert_eq!(
            seq.on_message("me", b"other 10 p a:"),
            Some(Event::Flush { reason: "gap" })
        );
        // another publisher has its own numbers
        assert_eq!(
            seq.on_message("me", b"third 1 c "),
            Some(Event::Invalidated {
                op: InvalidateOp::Clear,
                arg: Vec::new()
            })
        );
        assert_eq!(seq.on_message("me", b"garbage"), None);
    }

    #[test]
    fn scan_patterns_are_escaped() {
        assert_eq!(glob_escape(b"a*b?[c]\\"), b"a\\*b\\?\\[c\\]\\\\");
        // a lone surrogate's WTF-8 passes as it is
        assert_eq!(glob_escape(b"k\xED\xA0\x80*"), b"k\xED\xA0\x80\\*");
    }

    #[test]
    fn messages_carry_arguments_that_are_not_utf8() {
        let mut seq = Sequences::default();
        assert_eq!(
            seq.on_message("me", b"other 1 d a\xED\xA0\x80 b"),
            Some(Event::Invalidated {
                op: InvalidateOp::Delete,
                arg: b"a\xED\xA0\x80 b".to_vec()
            })
        );
    }
}
