//! Shared nothing. This package holds the load benchmark (`benches/load.rs`). The end-to-end
//! suite in `e2e/` (one test binary, one link step) is a test target of the `switchyard`
//! package, so it can run the real binary; the fixture plugins it needs in `fixtures/` are
//! built by `host/build.rs`.
