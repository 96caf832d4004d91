use std::collections::BTreeMap;

use super::*;

#[test]
fn env_overrides_file_for_the_same_key() {
    let mut config = Config::new();
    config.set("web.http.port", "8181", Source::Default);
    config
        .merge_properties("web.http.port = 9000\n# comment\n", "test")
        .unwrap();
    assert_eq!(config.get("web.http.port"), Some("9000"));
    config.merge_env([("WEB_HTTP_PORT".to_owned(), "9100".to_owned())]);
    assert_eq!(config.get("web.http.port"), Some("9100"));
    config.set("web.http.port", "9200", Source::Flag);
    assert_eq!(config.parse::<u16>("web.http.port").unwrap(), Some(9200));
}

#[test]
fn dashes_and_dots_map_to_underscores() {
    let mut config = Config::new();
    config.merge_env([(
        "EDC_DATAPLANE_STATE_MACHINE_FLOW_LEASE_TIME".to_owned(),
        "500".to_owned(),
    )]);
    assert_eq!(
        config.get("edc.dataplane.state-machine.flow.lease.time"),
        Some("500")
    );
    assert_eq!(
        env_var_name("edc.dataplane.state-machine.flow.lease.time"),
        "EDC_DATAPLANE_STATE_MACHINE_FLOW_LEASE_TIME"
    );
}

#[test]
fn prefix_listing_keeps_file_spelling_and_sees_env_keys() {
    let mut config = Config::new();
    config
        .merge_properties(
            "edc.dpf.selector.pod1.url=http://a\nedc.dpf.selector.pod1.someOtherProperty=x\n",
            "test",
        )
        .unwrap();
    config.merge_env([
        (
            "EDC_DPF_SELECTOR_POD2_URL".to_owned(),
            "http://b".to_owned(),
        ),
        (
            "EDC_DPF_SELECTOR_POD1_URL".to_owned(),
            "http://c".to_owned(),
        ),
    ]);
    let mut entries = config.with_prefix("edc.dpf.selector.");
    entries.sort();
    assert_eq!(
        entries,
        vec![
            ("pod1.someOtherProperty".to_owned(), "x".to_owned()),
            ("pod1.url".to_owned(), "http://c".to_owned()),
            ("pod2.url".to_owned(), "http://b".to_owned()),
        ]
    );
}

#[test]
fn continuation_lines_and_colon_separator() {
    let mut config = Config::new();
    config
        .merge_properties("a.b: one,\\\n   two\n! bang comment\n", "test")
        .unwrap();
    assert_eq!(config.get("a.b"), Some("one,two"));
}

#[test]
fn malformed_line_and_bad_value_are_errors() {
    let mut config = Config::new();
    assert!(matches!(
        config.merge_properties("no separator here", "f.properties"),
        Err(ConfigError::Syntax { .. })
    ));
    config.set("web.http.port", "eighty", Source::Flag);
    let error = config.parse::<u16>("web.http.port").unwrap_err();
    assert!(error.to_string().contains("web.http.port"), "{error}");
}

#[test]
fn dump_masks_secrets_and_filters_by_prefix() {
    let mut config = Config::new();
    config.set("dpf.api.auth.token", "hunter2", Source::File);
    config.set("web.http.port", "1", Source::Default);
    config.set("PATH", "/bin", Source::Env);
    let dump = config.dump(&["dpf.", "web."]);
    assert!(dump.contains("dpf.api.auth.token=***"));
    assert!(!dump.contains("hunter2"));
    assert!(dump.contains("web.http.port=1  # default"));
    assert!(!dump.contains("/bin"));
}

#[test]
fn an_explicitly_empty_value_is_seen_by_get_raw_only() {
    let mut config = Config::new();
    config.set(
        "dpf.transfer.denied-networks",
        "10.0.0.0/8",
        Source::Default,
    );
    config.set("dpf.transfer.denied-networks", "", Source::Flag);
    assert_eq!(config.get("dpf.transfer.denied-networks"), None);
    assert_eq!(config.get_raw("dpf.transfer.denied-networks"), Some(""));
    assert_eq!(config.get_raw("unset.key"), None);
}

#[test]
fn secret_key_names_are_recognised_ignoring_case() {
    for key in [
        "dpf.api.auth.key",
        "edc.dpf.selector.api-key",
        "DB_PASSWORD",
        "x.ClientSecret",
        "my.Token",
        "aws.credentials",
        "edc.dpf.selector.pod1.authorization.type",
        // object-storage credentials
        "accessKeyId",
        "secretAccessKey",
        "sessionToken",
        "accountKey",
        "accessKey",
        "sasToken",
        "sharedAccessSignature",
        "https://w3id.org/edc/v0.0.1/ns/secretAccessKey",
        "dpf.dataset.q4.accountKey",
        "keyNameSecret",
    ] {
        assert!(is_secret_key(key), "{key}");
    }
    for key in [
        "web.http.port",
        "dpf.store.url",
        "dpf.log.level",
        // object-storage locators
        "keyName",
        "KEYPREFIX",
        "objectName",
        "objectPrefix",
        "bucketName",
        "blobName",
        "blobPrefix",
        "container",
        "account",
        "https://w3id.org/edc/v0.0.1/ns/keyName",
        "dpf.dataset.q4.keyPrefix",
    ] {
        assert!(!is_secret_key(key), "{key}");
    }
}

#[test]
fn url_passwords_are_masked_and_nothing_else() {
    assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
    assert_eq!(
        redact_url("postgres://u:p@ss:w@h:5432/db?sslmode=require"),
        "postgres://u:***@h:5432/db?sslmode=require"
    );
    assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    assert_eq!(redact_url("http://h/a@b:c"), "http://h/a@b:c");
    assert_eq!(
        redact_url("sqlite:./dpf-data/dpf.db"),
        "sqlite:./dpf-data/dpf.db"
    );
    assert_eq!(url_password("https://a:s3cret@x"), Some("s3cret".into()));
    assert_eq!(
        redact_value("dpf.store.url", "postgres://u:pw@h/db"),
        "postgres://u:***@h/db"
    );
    assert_eq!(redact_value("dpf.api.auth.key", "k"), MASK);
}

#[test]
fn dump_masks_keys_and_url_passwords() {
    let mut config = Config::new();
    config.set("dpf.api.auth.key", "admin-key-123", Source::Flag);
    config.set(
        "dpf.store.url",
        "postgres://dpf:pg-pass-456@db/dpf",
        Source::Flag,
    );
    config.set("edc.dpf.selector.api-key", "sel-key-789", Source::Env);
    config.set(
        "dpf.dataset.a.baseUrl",
        "https://u:ds-pass@x/y",
        Source::File,
    );
    let dump = config.dump(&["dpf.", "edc."]);
    for secret in ["admin-key-123", "pg-pass-456", "sel-key-789", "ds-pass"] {
        assert!(!dump.contains(secret), "{secret} in {dump}");
    }
    assert!(
        dump.contains("dpf.store.url=postgres://dpf:***@db/dpf  # flag"),
        "{dump}"
    );
    assert!(dump.contains("dpf.api.auth.key=***"), "{dump}");
    let secrets = config.secret_values();
    let line = "starting with key admin-key-123 on postgres://dpf:pg-pass-456@db/dpf";
    let masked = mask_secrets(line, &secrets);
    assert!(
        !masked.contains("admin-key-123") && !masked.contains("pg-pass-456"),
        "{masked}"
    );
    assert!(masked.contains("postgres://dpf:***@db/dpf"), "{masked}");
    config.set("dpf.api.auth.disabled", "true", Source::Flag);
    assert!(!config.secret_values().contains(&"true".to_owned()));
    assert_eq!(
        redact_urls_in_text("error=\"x\" url=postgres://a:b@h/d, then https://u:v@w ok"),
        "error=\"x\" url=postgres://a:***@h/d, then https://u:***@w ok"
    );
}

const DATASET: [&str; 5] = ["type", "baseUrl", "path", "authType", "contentType"];

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn group_properties_match_ignoring_case_and_separators() {
    let mut config = Config::new();
    config.merge_env([
        ("DPF_DATASET_DS1_TYPE".to_owned(), "HttpData".to_owned()),
        ("DPF_DATASET_DS1_BASEURL".to_owned(), "http://a/".to_owned()),
    ]);
    config.set("dpf.dataset.ds2.base-url", "http://b/", Source::Flag);
    config.set("dpf.dataset.ds3.base_url", "http://c/", Source::File);
    config.set("dpf.dataset.ds4.BaseURL", "http://d/", Source::File);
    config.set("dpf.dataset.ds4.Content-Type", "text/plain", Source::File);
    let group = config.group("dpf.dataset.", &DATASET, &[]);
    assert_eq!(
        group.members["ds1"],
        props(&[("type", "HttpData"), ("baseUrl", "http://a/")])
    );
    assert_eq!(group.members["ds2"], props(&[("baseUrl", "http://b/")]));
    assert_eq!(group.members["ds3"], props(&[("baseUrl", "http://c/")]));
    assert_eq!(
        group.members["ds4"],
        props(&[("baseUrl", "http://d/"), ("contentType", "text/plain")])
    );
    assert!(group.unknown.is_empty(), "{group:?}");
}

#[test]
fn an_env_id_with_underscores_takes_the_longest_known_property() {
    let mut config = Config::new();
    config.merge_env([
        (
            "DPF_DATASET_MY_DS_BASEURL".to_owned(),
            "http://a/".to_owned(),
        ),
        ("DPF_DATASET_MY_DS_AUTH_TYPE".to_owned(), "raw".to_owned()),
        (
            "DPF_DATASET_X_CONTENT_TYPE".to_owned(),
            "text/csv".to_owned(),
        ),
    ]);
    let group = config.group("dpf.dataset.", &DATASET, &[]);
    assert_eq!(
        group.members["my_ds"],
        props(&[("baseUrl", "http://a/"), ("authType", "raw")])
    );
    // `contentType` is longer than `type`: the id is `x`, not `x_content`.
    assert_eq!(group.members["x"], props(&[("contentType", "text/csv")]));
    assert_eq!(group.members.len(), 2, "{group:?}");
}

#[test]
fn an_env_id_takes_the_spelling_of_another_layer() {
    let mut config = Config::new();
    config
        .merge_properties("dpf.dataset.my-ds.type=HttpData\n", "test")
        .unwrap();
    config.merge_env([(
        "DPF_DATASET_MY_DS_BASEURL".to_owned(),
        "http://a/".to_owned(),
    )]);
    let group = config.group("dpf.dataset.", &DATASET, &[]);
    assert_eq!(
        group.members["my-ds"],
        props(&[("type", "HttpData"), ("baseUrl", "http://a/")])
    );
    assert_eq!(group.members.len(), 1, "{group:?}");
}

#[test]
fn the_higher_layer_wins_between_two_spellings_of_one_property() {
    let mut config = Config::new();
    config.set("dpf.dataset.a.baseUrl", "http://file/", Source::File);
    config.set("dpf.dataset.a.base-url", "http://flag/", Source::Flag);
    config.set("dpf.dataset.b.base-url", "http://default/", Source::Default);
    config.set("dpf.dataset.b.baseUrl", "http://file/", Source::File);
    let group = config.group("dpf.dataset.", &DATASET, &[]);
    assert_eq!(group.members["a"]["baseUrl"], "http://flag/");
    assert_eq!(group.members["b"]["baseUrl"], "http://file/");
}

#[test]
fn nested_properties_and_unknown_keys_are_reported_without_values() {
    let mut config = Config::new();
    config.merge_env([
        (
            "DPF_CONTROLPLANE_CP1_ENDPOINT".to_owned(),
            "http://cp/".to_owned(),
        ),
        (
            "DPF_CONTROLPLANE_CP1_AUTHORIZATION_TOKEN_ENDPOINT".to_owned(),
            "http://t/".to_owned(),
        ),
        (
            "DPF_CONTROLPLANE_CP1_AUTHORIZATION_CLIENTSECRET".to_owned(),
            "s3cr3t-value".to_owned(),
        ),
        ("DPF_CONTROLPLANE_CP1_ENDPOINTT".to_owned(), "x".to_owned()),
    ]);
    config.set("dpf.controlplane.cp2", "y", Source::File);
    let group = config.group(
        "dpf.controlplane.",
        &[
            "endpoint",
            "authorization.tokenEndpoint",
            "authorization.clientSecret",
        ],
        &[],
    );
    assert_eq!(
        group.members["cp1"],
        props(&[
            ("endpoint", "http://cp/"),
            ("authorization.tokenEndpoint", "http://t/"),
            ("authorization.clientSecret", "s3cr3t-value"),
        ])
    );
    assert_eq!(
        group.unknown_keys(),
        vec!["dpf.controlplane.cp1.endpointt", "dpf.controlplane.cp2"]
    );
    assert_eq!(group.unknown[0].id, "cp1");
    assert_eq!(group.unknown[0].property, "endpointt");
    assert!(!format!("{group:?}").contains("s3cr3t"), "{group:?}");
}

#[test]
fn reserved_keys_are_not_members_and_entries_keep_free_properties() {
    let mut config = Config::new();
    config.set("edc.dpf.selector.strategy", "random", Source::Default);
    config.merge_env([
        ("EDC_DPF_SELECTOR_API_KEY".to_owned(), "k".to_owned()),
        (
            "EDC_DPF_SELECTOR_MY_POD_URL".to_owned(),
            "http://p/".to_owned(),
        ),
        ("EDC_DPF_SELECTOR_MY_POD_REGION".to_owned(), "eu".to_owned()),
    ]);
    let group = config.group(
        "edc.dpf.selector.",
        &["url", "labels"],
        &["strategy", "api-key", "url"],
    );
    assert_eq!(group.members.len(), 1, "{group:?}");
    assert_eq!(group.members["my_pod"], props(&[("url", "http://p/")]));
    assert_eq!(group.unknown_keys(), vec!["edc.dpf.selector.my.pod.region"]);
    assert_eq!(
        group.entries(),
        vec![
            ("my_pod.url".to_owned(), "http://p/".to_owned()),
            ("my_pod.region".to_owned(), "eu".to_owned()),
        ]
    );
}
