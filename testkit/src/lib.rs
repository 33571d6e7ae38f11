//! The process harness of wiresocket's tests, written once: private `redis-server`,
//! `redis-sentinel` and `haproxy` processes on free loopback ports, killed (and their
//! directories removed) when dropped. Used by the lib's own `cfg(test)` code
//! (`src/engine/redis/testing.rs`) and by the integration tests (`tests/redis_support/`),
//! which add only what needs their own types (the engine config, a node's `Overrides`).
//!
//! It does not depend on the `wiresocket` crate (std, rcgen, time, rustls-pki-types only), so both can use
//! it. A missing program fails the test with a clear message; nothing is skipped.
//!
//! - [`process`]: free ports, temp dirs, `wait_until`, `redis-cli`, [`RedisProcess`].
//! - [`server`]: [`RedisServer`], a plain restartable `redis-server`.
//! - [`keys`]: the fixed TLS test keys of `tests/keys/` and a TLS `redis-server`'s arguments.
//! - [`ca`]: a throwaway CA issuing certificates at test time (rcgen).
//! - [`sentinel`]: [`SentinelGroup`], a master, a replica and three sentinels.
//! - [`cluster`] and [`cluster_ops`]: [`RedisCluster`], slot moves, failovers, crashes.
//! - [`haproxy`]: [`HaProxy`], a load balancer in front of several nodes.

pub mod ca;
pub mod cluster;
pub mod cluster_ops;
pub mod haproxy;
pub mod keys;
pub mod process;
pub mod sentinel;
pub mod server;

pub use cluster::RedisCluster;
pub use haproxy::{HaProxy, StateWatch};
pub use process::{
    command_calls, free_port, redis_cli, redis_cli_with, temp_dir, wait_until, RedisProcess,
};
pub use sentinel::{SentinelGroup, MASTER_NAME};
pub use server::RedisServer;
