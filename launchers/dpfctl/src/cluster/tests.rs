use serde_json::{json, Value};

use super::config::{setting_key, setting_name};
use super::kv::key_url;
use super::members::{apply_member_event, Known};
use super::*;

#[test]
fn keys_keep_their_slashes_and_encode_the_rest() {
    let api = Api::new("http://h:1/api/v1").unwrap();
    assert_eq!(
        key_url(&api, "dpf/config/dataplane.max-concurrent-flows")
            .unwrap()
            .as_str(),
        "http://h:1/api/v1/cluster/kv/dpf/config/dataplane.max-concurrent-flows"
    );
    assert_eq!(
        key_url(&api, "a b/c?d#e%f").unwrap().as_str(),
        "http://h:1/api/v1/cluster/kv/a%20b/c%3Fd%23e%25f"
    );
    assert_eq!(
        key_url(&api, "a/../b").unwrap().as_str(),
        "http://h:1/api/v1/cluster/kv/a%2F..%2Fb"
    );
    assert!(key_url(&api, "").is_err());
    assert!(key_url(&api, "..").is_err());
}

#[test]
fn settings_are_named_with_or_without_their_prefix() {
    assert_eq!(
        setting_key("checkpoint.bytes"),
        "dpf/config/checkpoint.bytes"
    );
    assert_eq!(
        setting_key("dpf/config/checkpoint.bytes"),
        "dpf/config/checkpoint.bytes"
    );
    assert_eq!(
        setting_name("dpf/config/checkpoint.bytes"),
        "checkpoint.bytes"
    );
}

#[test]
fn member_events_print_only_what_is_new() {
    let mut known = Known::new();
    let a1 = json!({"name": "a", "incarnation": "1", "state": "IDLE"});
    let a1_healthy = json!({"name": "a", "incarnation": "1", "state": "HEALTHY"});
    let a2 = json!({"name": "a", "incarnation": "2", "state": "IDLE"});
    let kinds =
        |events: Vec<(&'static str, Value)>| events.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        kinds(apply_member_event(&mut known, "join", a1.clone())),
        ["join"]
    );
    assert!(apply_member_event(&mut known, "join", a1).is_empty());
    assert_eq!(
        kinds(apply_member_event(&mut known, "update", a1_healthy)),
        ["update"]
    );
    assert_eq!(
        kinds(apply_member_event(&mut known, "join", a2.clone())),
        ["leave", "join"]
    );
    assert_eq!(
        kinds(apply_member_event(&mut known, "leave", a2.clone())),
        ["leave"]
    );
    assert!(apply_member_event(&mut known, "leave", a2).is_empty());
}

#[test]
fn values_print_on_one_line() {
    assert_eq!(one_line("plain value"), "plain value");
    assert_eq!(one_line("a\nb\tc\u{1}"), "a\\nb\\tc\\u{1}");
}
