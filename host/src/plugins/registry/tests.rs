//! Tests of plugin names: which are valid, and which file names in the folder are plugins.

use std::path::Path;

use super::super::folder::name_of_path;
use super::*;

#[test]
fn names() {
    for ok in ["slack", "a", "my-plugin_2", "0x", &"a".repeat(63)] {
        assert!(valid_name(ok), "{ok}");
    }
    for bad in [
        "",
        "-a",
        "_a",
        "Slack",
        "a.b",
        "a/b",
        "ä",
        &"a".repeat(64),
        ".tmpabc",
    ] {
        assert!(!valid_name(bad), "{bad}");
    }
    assert_eq!(
        name_of_path(Path::new("/x/slack.wasm")),
        Some("slack".into())
    );
    assert_eq!(name_of_path(Path::new("/x/.tmpAb12.wasm")), None);
    assert_eq!(name_of_path(Path::new("/x/slack.txt")), None);
}
