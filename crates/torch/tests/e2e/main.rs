//! End-to-end tests of Nova Torch: real `torch serve` and `torch agent`
//! processes on ephemeral ports in a temp dir per test, driven through the
//! `torch` CLI and the HTTP API. Set `TORCH_TEST_KEEP_TMP=1` to keep the dirs
//! (hub and agent logs included).

// Tests report seeds, kept dirs and informational counts on stderr.
#![allow(clippy::print_stderr)]

mod agents;
mod agents_mcp;
mod audit;
mod autonomy;
mod budget;
mod coord;
mod crash;
mod dashboard;
mod demo;
mod faults;
mod harness;
mod input;
mod lifecycle;
mod listing;
mod mcp;
mod messaging;
mod observe;
mod openapi;
mod processes;
mod resume;
mod retention;
mod routing;
mod sandbox;
mod scheduling;
mod shed;
mod teams;
mod tls;
mod tokens;
mod top;
