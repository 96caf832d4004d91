use super::Backend;

#[test]
fn expands_placeholders_and_tokens_per_backend() {
    let template = "UPDATE t SET a = ?, b = {now} WHERE c = '?' AND d = ? {skip_locked}";
    assert_eq!(
        Backend::Postgres.sql(template),
        "UPDATE t SET a = $1, b = CAST(EXTRACT(EPOCH FROM now()) * 1000000 AS BIGINT) WHERE c = '?' AND d = $2 FOR UPDATE SKIP LOCKED"
    );
    assert_eq!(
        Backend::Sqlite.sql(template),
        "UPDATE t SET a = ?, b = CAST(unixepoch('subsec') * 1000000 AS INTEGER) WHERE c = '?' AND d = ? "
    );
}
