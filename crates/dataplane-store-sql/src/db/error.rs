//! [`DbError`]: the failures inside this crate, and their translation to each SPI's error type.

use std::fmt;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Failures inside this crate, converted to each SPI's error type at the edge.
#[derive(Debug)]
pub(crate) enum DbError {
    Diesel(DieselError),
    Pool(String),
    Join(String),
    Store(dataplane_spi::StoreError),
    Selector(selector_spi::SelectorError),
    Coordination(dataplane_spi::CoordinationError),
}

impl From<dataplane_spi::CoordinationError> for DbError {
    fn from(error: dataplane_spi::CoordinationError) -> Self {
        Self::Coordination(error)
    }
}

impl From<DbError> for dataplane_spi::CoordinationError {
    fn from(error: DbError) -> Self {
        use dataplane_spi::CoordinationError;
        if let DbError::Coordination(error) = error {
            return error;
        }
        match error.kind() {
            Kind::UniqueViolation(detail) => CoordinationError::Conflict {
                key: String::new(),
                expected: "no concurrent writer".into(),
                actual: detail,
            },
            Kind::NotFound => CoordinationError::Internal("unexpected missing row".into()),
            Kind::Unavailable(message) => CoordinationError::Unavailable(message),
            Kind::Internal(message) => CoordinationError::Internal(message),
        }
    }
}

impl From<DieselError> for DbError {
    fn from(error: DieselError) -> Self {
        Self::Diesel(error)
    }
}

impl From<dataplane_spi::StoreError> for DbError {
    fn from(error: dataplane_spi::StoreError) -> Self {
        Self::Store(error)
    }
}

impl From<selector_spi::SelectorError> for DbError {
    fn from(error: selector_spi::SelectorError) -> Self {
        Self::Selector(error)
    }
}

/// What kind of failure a backend error is, independent of the SPI.
pub(crate) enum Kind {
    UniqueViolation(String),
    NotFound,
    Unavailable(String),
    Internal(String),
}

impl DbError {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Self::Diesel(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)) => {
                Kind::UniqueViolation(format!(
                    "{} {}",
                    info.message(),
                    info.constraint_name().unwrap_or_default()
                ))
            }
            Self::Diesel(DieselError::NotFound) => Kind::NotFound,
            Self::Diesel(DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::SerializationFailure,
                info,
            )) => Kind::Unavailable(info.message().to_owned()),
            Self::Diesel(DieselError::DatabaseError(_, info))
                if is_transient_message(info.message()) =>
            {
                Kind::Unavailable(info.message().to_owned())
            }
            Self::Diesel(error) => Kind::Internal(error.to_string()),
            Self::Pool(message) => Kind::Unavailable(message.clone()),
            Self::Join(message) => Kind::Internal(message.clone()),
            Self::Store(error) => Kind::Internal(error.to_string()),
            Self::Selector(error) => Kind::Internal(error.to_string()),
            Self::Coordination(error) => Kind::Internal(error.to_string()),
        }
    }
}

fn is_transient_message(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "database is locked",
        "busy",
        "connection",
        "terminating",
        "shutdown",
        "timeout",
    ]
    .iter()
    .any(|m| message.contains(m))
}

impl From<DbError> for dataplane_spi::StoreError {
    fn from(error: DbError) -> Self {
        use dataplane_spi::StoreError;
        if let DbError::Store(error) = error {
            return error;
        }
        match error.kind() {
            Kind::UniqueViolation(detail) => StoreError::AlreadyExists {
                entity: "row",
                id: detail,
            },
            Kind::NotFound => StoreError::NotFound {
                entity: "row",
                id: String::new(),
            },
            Kind::Unavailable(message) => StoreError::Unavailable(message),
            Kind::Internal(message) => StoreError::Internal(message),
        }
    }
}

impl From<DbError> for selector_spi::SelectorError {
    fn from(error: DbError) -> Self {
        use selector_spi::SelectorError;
        if let DbError::Selector(error) = error {
            return error;
        }
        match error.kind() {
            Kind::UniqueViolation(detail) => {
                SelectorError::Internal(format!("unexpected duplicate: {detail}"))
            }
            Kind::NotFound => SelectorError::Internal("unexpected missing row".into()),
            Kind::Unavailable(message) => SelectorError::Unavailable(message),
            Kind::Internal(message) => SelectorError::Internal(message),
        }
    }
}

pub(crate) fn pool_error(error: impl fmt::Display) -> DbError {
    DbError::Pool(format!("cannot get a database connection: {error}"))
}
