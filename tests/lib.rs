//! Shared nothing: the end-to-end tests live in `e2e/` (one test binary, one link step) and
//! the fixture plugins they need in `fixtures/` (built by `build.rs`).
