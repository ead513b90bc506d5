//! bulwark: the building blocks every production Node service ends up needing, as one addon.
pub mod common;
pub mod limiter;
pub mod tracer;

/// The addon's allocator: mimalloc, whose thread-local free lists make a span allocated on the
/// JS thread and freed on the export thread cheap (glibc's malloc spent 18% of a sampled span
/// in `_int_malloc` consolidating such frees; see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
