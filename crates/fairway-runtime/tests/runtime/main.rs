//! Integration tests of the runtime: an example module exercised through the harness, the
//! runtime API, HTTP, and the durable embedded backend.
#![allow(clippy::unwrap_used, missing_docs)]

mod derive;
mod embedded;
mod example;
mod harness;
mod http;
mod integration;
mod lag;
mod round_two;
mod upcast;
mod view_rebuild;
