//! metaguard's native module: the batch frame codec (liblz4 + hardware CRC-32C), `sd_notify` and
//! `waitpid` for killed processes.
//!
//! No crate dependencies: Node-API, liblz4 and libc are declared by hand. The codec logic
//! (`frame`, `crc32c`, `lz4`) is plain Rust, tested with `cargo test`; `addon` is the Node-API glue,
//! left out of test builds because its symbols only exist inside a `node` process.
//! The JavaScript side is src/codec/native.ts; the frame layout is src/codec/frame.ts.

// The Node-API glue is the only user of some helpers; test builds leave it out.
#![cfg_attr(test, allow(dead_code))]

mod crc32c;
mod fail;
mod frame;
mod lz4;
mod notify;
mod wait;

#[cfg(not(test))]
mod addon;
#[cfg(not(test))]
mod napi;
