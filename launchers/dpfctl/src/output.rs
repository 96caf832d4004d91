//! Printing results as text (tables, `key: value` lines) or JSON.

use clap::ValueEnum;
use serde_json::Value;

/// How results are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Tables and short sentences for people.
    Text,
    /// The APIs' JSON documents, pretty-printed, for scripts.
    Json,
}

/// Prints `value` as pretty JSON.
pub fn print_json(value: &Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(_) => println!("{value}"),
    }
}

/// A JSON value as a table cell or a `key: value` value: strings unquoted, `null` empty,
/// objects and arrays compact.
pub fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .map(short_profile)
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// A DPS profile URL shortened to its last segment (`http-push`); anything else unchanged.
pub fn short_profile(profile: &str) -> &str {
    profile
        .strip_prefix("https://w3id.org/dspace-sig/profile/")
        .unwrap_or(profile)
}

/// Prints an object as aligned `key  value` lines (anything else as JSON).
pub fn print_object(value: &Value) {
    let Value::Object(map) = value else {
        print_json(value);
        return;
    };
    let width = map.keys().map(String::len).max().unwrap_or(0);
    for (key, item) in map {
        let text = match item {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        println!("{key:<width$}  {text}");
    }
}

/// Prints rows under headers, columns aligned; the last column is not padded.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                let width = widths.get(i).copied().unwrap_or(0);
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        println!("{}", text.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_readable() {
        assert_eq!(cell(None), "");
        assert_eq!(cell(Some(&Value::from("x"))), "x");
        assert_eq!(cell(Some(&serde_json::json!(3))), "3");
        assert_eq!(
            cell(Some(&serde_json::json!([
                "https://w3id.org/dspace-sig/profile/http-push",
                "other"
            ]))),
            "http-push,other"
        );
    }
}

/// The LOAD and REPORTED cells of an instance's `load` object: `running/capacity` (`∞` for
/// unlimited) with the bytes per second, and the report's age (`stale` when older than three
/// heartbeats); `-` without a report.
pub fn load_cells(load: Option<&Value>) -> (String, String) {
    let Some(load) = load.filter(|l| l.is_object()) else {
        return ("-".into(), "-".into());
    };
    let number = |name: &str| load.get(name).and_then(Value::as_u64).unwrap_or(0);
    let capacity = match number("capacity") {
        0 => "∞".to_owned(),
        n => n.to_string(),
    };
    let mut text = format!(
        "{}/{capacity} {}B/s",
        number("running"),
        number("bytesPerSecond")
    );
    if load.get("atCapacity").and_then(Value::as_bool) == Some(true) {
        text.push_str(" full");
    }
    #[allow(clippy::cast_precision_loss)] // milliseconds far below 2^52
    let seconds = number("ageMs") as f64 / 1000.0;
    let mut age = format!("{seconds:.1}s ago");
    if load.get("stale").and_then(Value::as_bool) == Some(true) {
        age.push_str(" (stale)");
    }
    (text, age)
}

#[cfg(test)]
mod load_tests {
    use serde_json::json;

    use super::load_cells;

    #[test]
    fn load_cells_show_running_capacity_and_age() {
        assert_eq!(load_cells(None), ("-".into(), "-".into()));
        let load = json!({"running": 3, "capacity": 0, "bytesPerSecond": 10, "ageMs": 1500,
                          "stale": true, "atCapacity": false});
        assert_eq!(
            load_cells(Some(&load)),
            ("3/∞ 10B/s".into(), "1.5s ago (stale)".into())
        );
        let full = json!({"running": 2, "capacity": 2, "bytesPerSecond": 0, "ageMs": 100,
                          "stale": false, "atCapacity": true});
        assert_eq!(
            load_cells(Some(&full)),
            ("2/2 0B/s full".into(), "0.1s ago".into())
        );
    }
}
