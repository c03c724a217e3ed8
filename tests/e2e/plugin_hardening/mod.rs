//! Plugin hardening (issue 8 items 1, 3, 6, 7, 8, 9; issue 9 items 6 and 8): hostile files,
//! components, uploads and plugin output, each against the real service.

mod budget;
mod cache;
pub mod components;
mod folder;
mod idle;
mod pool;
mod preinit;
mod process;
mod sandbox;
mod strings;
mod uploads;
