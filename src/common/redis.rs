//! One Redis connection owned by one background thread, failing fast while Redis is away.
//!
//! Blocks that share state through Redis (the limiter's buckets; the cache's shared tier and its
//! invalidation bus) each run one I/O thread that owns a [`Link`]. The thread works with the
//! `redis` crate's synchronous connection: it takes everything queued since its last round trip
//! and sends it as one pipeline, so the JS thread never waits on a socket and never holds a
//! connection of its own.
//!
//! A dead Redis must cost one fast failure, not a timeout per request: connecting has its own
//! timeout, every read and write has one, and after a failure [`Link::connection`] refuses at
//! once, without touching the network, until `retry` has passed (then one attempt is made
//! again). Whatever a failure interrupted is the caller's to fall back on.

use std::time::{Duration, Instant};

use redis::{Client, Connection};

/// Where Redis is and how long to wait for it.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisSettings {
    /// `redis://[user:password@]host[:port][/db]` (or `rediss://`, `unix://`).
    pub url: String,
    /// Longest wait for a connection to be made.
    pub connect_timeout: Duration,
    /// Longest wait for one read or write on an open connection.
    pub command_timeout: Duration,
    /// After a failure, how long calls fail at once before a new connection is tried.
    pub retry: Duration,
}

impl RedisSettings {
    /// Settings for `url` with the default timeouts (connect 500 ms, commands 1 s, retry 1 s).
    pub fn new(url: impl Into<String>) -> Self {
        RedisSettings {
            url: url.into(),
            connect_timeout: Duration::from_millis(500),
            command_timeout: Duration::from_millis(1_000),
            retry: Duration::from_millis(1_000),
        }
    }
}

/// Checks that `url` is a Redis URL the client understands (without connecting).
pub fn check_url(url: &str) -> Result<(), String> {
    Client::open(url).map(|_| ()).map_err(|e| e.to_string())
}

/// Why a call to Redis failed, as reported to the blocks (and counted by them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError {
    /// What went wrong, for logs and error messages.
    pub message: String,
}

impl StoreError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        StoreError {
            message: message.into(),
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        StoreError::new(format!("Redis: {e}"))
    }
}

/// A lazily opened connection that refuses at once for `retry` after a failure.
pub struct Link {
    settings: RedisSettings,
    client: Option<Client>,
    connection: Option<Connection>,
    /// Until when calls fail without trying, and with which error.
    down: Option<(Instant, StoreError)>,
    /// Connections made so far (the first included).
    connects: u64,
}

impl Link {
    /// A link that connects on first use.
    pub fn new(settings: RedisSettings) -> Self {
        Link {
            client: Client::open(settings.url.as_str()).ok(),
            settings,
            connection: None,
            down: None,
            connects: 0,
        }
    }

    /// Connections made so far; a block compares it across calls to notice a new connection
    /// (after which per-connection state, such as a subscription, must be set up again).
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// Whether a connection is open now.
    pub fn is_connected(&self) -> bool {
        self.connection.is_some()
    }

    /// The open connection, connecting first when there is none. While the link is down
    /// (within `retry` of a failure) this fails at once with the failure's error.
    pub fn connection(&mut self) -> Result<&mut Connection, StoreError> {
        if self.connection.is_none() {
            if let Some((until, error)) = &self.down {
                if Instant::now() < *until {
                    return Err(error.clone());
                }
            }
            match self.connect() {
                Ok(connection) => {
                    self.down = None;
                    self.connects += 1;
                    self.connection = Some(connection);
                }
                Err(error) => {
                    self.mark_down(error.clone());
                    return Err(error);
                }
            }
        }
        Ok(self.connection.as_mut().expect("connected above"))
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let client = self.client.as_ref().ok_or_else(|| {
            StoreError::new(format!("invalid Redis URL \"{}\"", self.settings.url))
        })?;
        let connection = client
            .get_connection_with_timeout(self.settings.connect_timeout)
            .map_err(|e| StoreError::new(format!("cannot connect to Redis: {e}")))?;
        connection.set_read_timeout(Some(self.settings.command_timeout))?;
        connection.set_write_timeout(Some(self.settings.command_timeout))?;
        Ok(connection)
    }

    /// Drops the connection without marking the link down: the next call connects again at
    /// once (for a connection found dead on first use after being idle, as after a restart).
    pub fn reconnect_now(&mut self) {
        self.connection = None;
    }

    /// Drops the connection after a failure on it: calls fail at once for `retry`, then a new
    /// connection is tried.
    pub fn fail(&mut self, error: StoreError) {
        self.connection = None;
        self.mark_down(error);
    }

    fn mark_down(&mut self, error: StoreError) {
        self.down = Some((Instant::now() + self.settings.retry, error));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_connecting() {
        assert!(check_url("redis://127.0.0.1:1/").is_ok());
        assert!(check_url("http://example").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn a_refused_connection_fails_fast_until_the_retry_delay() {
        // port 1 on the loopback refuses at once
        let mut settings = RedisSettings::new("redis://127.0.0.1:1/");
        settings.retry = Duration::from_secs(60);
        let mut link = Link::new(settings);
        let first = link.connection().err().expect("nothing listens on port 1");
        // while down, the same error comes back without a new attempt
        for _ in 0..1_000 {
            assert_eq!(link.connection().err(), Some(first.clone()));
        }
        assert_eq!(link.connects(), 0);
        assert!(!link.is_connected());
    }
}
