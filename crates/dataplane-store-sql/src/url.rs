use std::fmt;
use std::path::PathBuf;

/// Where a launcher keeps its state: the value of `dpf.store.url`. Its `Display` and `Debug`
/// forms mask a password (`postgres://dpf:***@db/dpf`).
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `memory:` — in process memory, lost at exit.
    Memory,
    /// `sqlite:<path>` — a SQLite file (created with its directory when missing).
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…` — a PostgreSQL database.
    Postgres(String),
}

/// The default store of every launcher: a SQLite file in the working directory.
pub const DEFAULT_STORE_URL: &str = "sqlite:./dpf-data/dpf.db";

impl StoreUrl {
    /// Parses a `dpf.store.url` value.
    ///
    /// # Errors
    /// A message naming the accepted forms.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value == "memory:" {
            return Ok(Self::Memory);
        }
        if let Some(path) = value.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(
                    "dpf.store.url 'sqlite:' needs a file path, e.g. sqlite:./dpf-data/dpf.db"
                        .into(),
                );
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            return Ok(Self::Postgres(value.to_owned()));
        }
        Err(format!(
            "unsupported dpf.store.url '{}': use memory:, sqlite:<path> or postgres://user@host:port/database",
            dpf_config::redact_url(value)
        ))
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory:"),
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            // Never print a password: dpf's one redaction rule masks it.
            Self::Postgres(url) => f.write_str(&dpf_config::redact_url(url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms_and_hides_passwords() {
        assert_eq!(StoreUrl::parse("memory:").unwrap(), StoreUrl::Memory);
        assert_eq!(
            StoreUrl::parse(DEFAULT_STORE_URL).unwrap(),
            StoreUrl::Sqlite(PathBuf::from("./dpf-data/dpf.db"))
        );
        let pg = StoreUrl::parse("postgres://dpf:s3cret@db:5432/dpf").unwrap();
        assert_eq!(pg.to_string(), "postgres://dpf:***@db:5432/dpf");
        assert!(!format!("{pg:?}").contains("s3cret"));
        let no_password = StoreUrl::parse("postgres://dpf@db:5432/dpf").unwrap();
        assert_eq!(no_password.to_string(), "postgres://dpf@db:5432/dpf");
        assert!(StoreUrl::parse("mysql://x")
            .unwrap_err()
            .contains("memory:, sqlite:<path>"));
        assert!(StoreUrl::parse("sqlite:").is_err());
    }
}
