//! The shared real-process harness (`mango-testkit`), under the name the tests use.
#![allow(unused_imports)]

pub use mango_testkit::*;
