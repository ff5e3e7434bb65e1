//! The store conformance suite of `torch-store` (feature `conformance`),
//! run against [`RedisStore`], plus Redis-only cases: out of memory, two
//! hubs racing for a task, the streams seen from outside, a Redis restart,
//! consumer groups, hand-offs and the leader lease.
//!
//! Every test starts its own `redis-server` on a free loopback port (see
//! `src/testing.rs`); without `redis-server` on `PATH` the tests
//! print a note and pass, except under CI, where they fail.

mod redis_only;
#[allow(dead_code, unreachable_pub)]
#[path = "../src/testing.rs"]
mod redis_server;

use redis_server::RedisServer;
use torch_store::conformance::{self, Harness};
use torch_store_redis::{RedisOptions, RedisStore};

/// A server of its own plus the options to open stores on it.
pub(crate) struct Redis {
    pub(crate) server: RedisServer,
    pub(crate) opts: RedisOptions,
}

impl Redis {
    pub(crate) fn start(extra: &[&str]) -> Option<Redis> {
        Some(Redis {
            server: RedisServer::start_or_skip(extra)?,
            opts: RedisOptions::default(),
        })
    }

    pub(crate) async fn store(&self) -> RedisStore {
        RedisStore::open(&self.server.url(), self.opts.clone())
            .await
            .expect("open redis store")
    }
}

impl Harness for Redis {
    type S = RedisStore;
    fn open(&self) -> RedisStore {
        // The suite opens synchronously; the tests run on a multi-thread runtime.
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(self.store()))
    }
}

macro_rules! conformance {
    ($($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(h) = Redis::start(&[]) else { return };
                conformance::$module::$case(&h).await;
            }
        )*
    };
}

conformance::every_case!(conformance);
