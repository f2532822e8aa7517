//! `fairway-reliability`: the reliability campaign of the Fairway host — SIGKILL under load,
//! storage faults, hostile input, automation faults at host level — and the bounded load client
//! (`cargo run --release -p fairway-reliability --bin load -- --seconds 30`).
//!
//! Layer: a test tool at the very top. It drives the real `fairway` binary as a child process
//! over loopback HTTP and reads its data directory with `dcb-embedded` once the process is gone.
//! Nothing depends on it, and it must not be depended on by any library or module: it is
//! `publish = false` and holds no product code. Every run is bounded in time and count.
//!
//! - [`server`]: find, build, start, kill (SIGKILL) and stop (SIGTERM) the `fairway` binary.
//! - [`client`]: a small async HTTP/1.1 client with a connection pool (hyper).
//! - [`workload`]: requests of the three apps (todo, library, users), what each 2xx acknowledged.
//! - [`check`]: the acknowledged writes and the invariants, checked against the store on disk.
//! - [`load`]: N concurrent connections for a bounded time, latency percentiles, server RSS.

pub mod check;
pub mod client;
pub mod load;
pub mod server;
pub mod workload;
