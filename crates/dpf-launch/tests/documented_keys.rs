//! Every configuration key documented in `docs/configuration.md` is read by the code: a
//! documented setting that nothing reads is a limit an operator believes in and does not get.
//!
//! The keys are the backticked names in the first column of the document's tables; keys with a
//! placeholder (`dpf.dataset.<id>.type`) are matched by the part before the placeholder. The
//! code is every `.rs` file of the workspace's crates and launchers, without test directories
//! and without unit-test modules (`#[cfg(test)]` to the end of the file).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The keys in the first column of every table row of `markdown`.
fn documented_keys(markdown: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for line in markdown.lines() {
        let Some(row) = line.trim().strip_prefix('|') else {
            continue;
        };
        let first = row.split('|').next().unwrap_or_default();
        // `a`, `b` or a single `a`; anything not backticked (headers, separators) is skipped.
        for (i, part) in first.split('`').enumerate() {
            let part = part.trim();
            let looks_like_key = part.contains(['.', '/'])
                && !part.contains(' ')
                && part.chars().next().is_some_and(|c| c.is_ascii_lowercase());
            if i % 2 == 1 && looks_like_key {
                keys.push(part.to_owned());
            }
        }
    }
    keys
}

/// What must appear in the code for `key`: the key, or its part before a `<placeholder>`.
fn needle(key: &str) -> &str {
    key.find('<').map_or(key, |at| &key[..at])
}

/// What of a source file counts as reading keys: no comments (doc comments name keys), no
/// unit-test module, and no `…DEFAULTS` tables (a default for a key nobody reads is the very
/// thing this test is for).
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut code = String::new();
    let mut in_defaults = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if in_defaults {
            in_defaults = !trimmed.starts_with("];");
            continue;
        }
        if trimmed.contains("DEFAULTS: &[(&str, &str)] = &[") {
            in_defaults = !trimmed.ends_with("];");
            continue;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

fn sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "tests" | "target" | "benches" | "examples") {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push_str(&code_of(&text));
            out.push('\n');
        }
    }
}

#[test]
fn the_key_extraction_sees_plain_listed_and_placeholder_keys() {
    let keys = documented_keys(
        "| key | default |\n|---|---|\n| `web.http.port` | `8181` |\n| `dpf.tls.cert`, `dpf.tls.key` | x |\n| `dpf.dataset.<id>.type` | — |\n| `dpf/config/checkpoint.bytes` | n |\n",
    );
    assert_eq!(
        keys,
        [
            "web.http.port",
            "dpf.tls.cert",
            "dpf.tls.key",
            "dpf.dataset.<id>.type",
            "dpf/config/checkpoint.bytes"
        ]
    );
    assert_eq!(needle("dpf.dataset.<id>.type"), "dpf.dataset.");
}

#[test]
fn defaults_comments_and_unit_tests_do_not_count_as_reading() {
    let code = code_of(
        "/// `dpf.a` does x\nconst DEFAULTS: &[(&str, &str)] = &[\n    (\"dpf.b\", \"1\"),\n];\nfn f() { get(\"dpf.c\") }\n#[cfg(test)]\nmod tests { \"dpf.d\" }\n",
    );
    assert!(code.contains("dpf.c"), "{code}");
    for unread in ["dpf.a", "dpf.b", "dpf.d"] {
        assert!(!code.contains(unread), "{unread} in {code}");
    }
}

#[test]
fn every_documented_key_is_read_by_the_code() {
    let root = workspace();
    let markdown = std::fs::read_to_string(root.join("docs/configuration.md")).unwrap();
    let keys = documented_keys(&markdown);
    assert!(keys.len() > 30, "too few keys found: {keys:?}");
    let mut code = String::new();
    sources(&root.join("crates"), &mut code);
    sources(&root.join("launchers"), &mut code);
    let unread: Vec<&String> = keys
        .iter()
        .filter(|key| !code.contains(needle(key)))
        .collect();
    assert!(
        unread.is_empty(),
        "documented in docs/configuration.md but read nowhere in the code: {unread:?}"
    );
}
