//! What the commands print: the API's JSON as-is with `--json`, otherwise tables
//! (`comfy-table`) with the fields a person looks at first.

use std::io::Write as _;

use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;

/// `println!` for what a command prints: when the reader has gone away (`switchyard … | head`),
/// the command ends quietly, as command-line tools do, instead of panicking on the broken pipe.
macro_rules! outln {
    () => {
        $crate::cli::output::write_out(b"\n")
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}
pub(crate) use outln;

/// Writes `bytes` to stdout; a closed stdout ends the process (status 0: the reader had what
/// it wanted), any other write error ends it with status 1.
pub fn write_out(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: could not write the output: {e}");
        std::process::exit(1);
    }
}

/// Prints `value` as pretty JSON (the `--json` form: exactly what the API answered).
pub fn json(value: &Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => outln!("{text}"),
        Err(_) => outln!("{value}"),
    }
}

/// Prints rows under a header.
pub fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    let mut table = new_table();
    table.set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    outln!("{table}");
}

/// Prints one object as `field  value` lines.
pub fn record(fields: &[(&str, String)]) {
    let mut table = new_table();
    for (name, value) in fields {
        table.add_row(vec![(*name).to_owned(), value.clone()]);
    }
    outln!("{table}");
}

/// Prints where the next page starts, when there is one.
pub fn next_page(next_cursor: Option<&str>) {
    if let Some(cursor) = next_cursor {
        outln!("(more: add --cursor {cursor})");
    }
}

fn new_table() -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_HORIZONTAL_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic);
    table
}

/// An optional value as table text: `-` when there is none.
pub fn opt(value: Option<impl std::fmt::Display>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A JSON value as table text: strings without quotes, `-` for null, objects as compact JSON.
pub fn value(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{opt, value};

    #[test]
    fn cells_read_like_text() {
        assert_eq!(value(&json!(null)), "-");
        assert_eq!(value(&json!("a")), "a");
        assert_eq!(value(&json!(3)), "3");
        assert_eq!(value(&json!({"k": 1})), r#"{"k":1}"#);
        assert_eq!(opt(None::<u8>), "-");
        assert_eq!(opt(Some(7)), "7");
    }
}
