//! The rate limiter block: token buckets per key with per-client limits and tiers, a penalty
//! box, a shared budget with weighted fair queuing, and bounded memory.
//!
//! Read in this order: `bucket` (one bucket as one timestamp), `store` (where buckets live and
//! how memory stays bounded), `fair_queue` (the order in which waiters are served),
//! `rate_limiter` (the decisions), and last `binding` (the JS class). A limiter shared by many
//! processes keeps its buckets in Redis: `redis_store` (the script and the I/O thread) and
//! `remote` (batching, the refusal cache, and what happens while Redis is away).

pub(crate) mod binding;
pub mod bucket;
pub mod fair_queue;
pub mod rate_limiter;
pub mod redis_store;
pub mod remote;
pub mod store;

pub use bucket::{Bucket, Limits};
pub use fair_queue::FairQueue;
pub use rate_limiter::{
    AcquireRejection, Decision, Enqueued, LimiterConfig, LimiterStats, Pumped, QueueLimits,
    RateLimiter, Refusal,
};
pub use store::{BucketStore, KeyState, MemoryStore};
