use super::server::sh_quote;
use super::*;

#[test]
fn with_database_replaces_path_and_keeps_the_rest() {
    assert_eq!(
        with_database("postgres://u@h:5432/postgres", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(
        with_database("postgres://u@h:5432", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(
        with_database("postgres://u@h:5432/", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(
        with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
        "postgresql://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://u@h?sslmode=disable", "x"),
        "postgres://u@h/x?sslmode=disable"
    );
}

#[test]
fn redact_password_hides_only_the_password() {
    assert_eq!(
        redact_password("postgres://u:secret@h:1/db"),
        "postgres://u:***@h:1/db"
    );
    assert_eq!(
        redact_password("postgres://u@h:1/db"),
        "postgres://u@h:1/db"
    );
    assert_eq!(redact_password("postgres://h:1/db"), "postgres://h:1/db");
}

#[test]
fn database_names_are_unique_and_valid_identifiers() {
    let a = unique_database_name();
    let b = unique_database_name();
    assert_ne!(a, b);
    for name in [a, b] {
        assert!(name.len() < 64, "{name}");
        assert!(name.starts_with("dpf_test_"), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{name}"
        );
    }
}

#[test]
fn sh_quote_survives_quotes() {
    assert_eq!(sh_quote("a'b"), r"'a'\''b'");
}
