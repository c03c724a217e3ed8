//! What the commands print: the API's JSON as-is with `--json`, otherwise tables
//! (`comfy-table`) with the fields a person looks at first.

use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;

/// Prints `value` as pretty JSON (the `--json` form: exactly what the API answered).
pub fn json(value: &Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(_) => println!("{value}"),
    }
}

/// Prints rows under a header.
pub fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    let mut table = new_table();
    table.set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    println!("{table}");
}

/// Prints one object as `field  value` lines.
pub fn record(fields: &[(&str, String)]) {
    let mut table = new_table();
    for (name, value) in fields {
        table.add_row(vec![(*name).to_owned(), value.clone()]);
    }
    println!("{table}");
}

/// Prints where the next page starts, when there is one.
pub fn next_page(page: &Value) {
    if let Some(cursor) = page["next_cursor"].as_str() {
        println!("(more: add --cursor {cursor})");
    }
}

fn new_table() -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_HORIZONTAL_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic);
    table
}

/// A JSON value as table text: strings without quotes, `-` for null or missing, lists joined
/// with commas, objects as compact JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// The cells of `fields` of `value`.
pub fn cells(value: &Value, fields: &[&str]) -> Vec<String> {
    fields.iter().map(|f| cell(&value[*f])).collect()
}

/// `(field, cell)` pairs of `value`, for [`record`].
pub fn pairs<'a>(value: &Value, fields: &[&'a str]) -> Vec<(&'a str, String)> {
    fields.iter().map(|f| (*f, cell(&value[*f]))).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::cell;

    #[test]
    fn cells_read_like_text() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!("a")), "a");
        assert_eq!(cell(&json!(["a", "b"])), "a,b");
        assert_eq!(cell(&json!(3)), "3");
        assert_eq!(cell(&json!({"k": 1})), r#"{"k":1}"#);
    }
}
