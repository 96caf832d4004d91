//! `HttpData` addresses: URL, authorization and extra headers, validated once at `create`.

use address_policy::AddressPolicy;
use std::fmt;

use dataplane_spi::{ResourceAddress, TransferError, HTTP_DATA_TYPE};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::{Method, Url};

/// Address property: the URL (required, `http` or `https`).
pub const BASE_URL_PROPERTY: &str = "baseUrl";
/// Address property: a path appended to the base URL.
pub const PATH_PROPERTY: &str = "path";
/// Address property: the credential sent in the `Authorization` header.
pub const AUTHORIZATION_PROPERTY: &str = "authorization";
/// Address property: how `authorization` is sent: `bearer` (default) or `raw`.
pub const AUTH_TYPE_PROPERTY: &str = "authType";
/// Address property: extra headers, a JSON object of strings (or a string holding one).
pub const HEADERS_PROPERTY: &str = "headers";
/// Address property of sinks: `POST` (default) or `PUT`.
pub const METHOD_PROPERTY: &str = "method";
/// Address property of sinks: the `Content-Type` of the upload.
pub const CONTENT_TYPE_PROPERTY: &str = "contentType";
/// Address property of sinks: `tus` when the address is a tus 1.0 upload (dpf's ingest
/// endpoint advertises it), so that checkpoints are taken from the first byte; else the sink
/// only learns it on a later attempt (`HEAD`).
pub const RESUMABLE_PROPERTY: &str = "resumable";

/// Address property of sources: the address is an event stream, `sse` (server-sent events) or
/// `ndjson` (one JSON object a line), read event by event and resumed after the last event id.
pub const EVENT_STREAM_PROPERTY: &str = "eventStream";
/// Address property of event streams: the query parameter carrying the cursor (the last event
/// id) when resuming; `after` by default for `ndjson`, none for `sse` (which sends
/// `Last-Event-ID`).
pub const CURSOR_PARAM_PROPERTY: &str = "cursorParam";
/// Address property of `ndjson` event streams: the field holding an event's id (default `id`).
pub const ID_FIELD_PROPERTY: &str = "idField";

/// Headers that frame the message: set by the client, never by an address.
const RESERVED_HEADERS: [&str; 4] = ["host", "content-length", "transfer-encoding", "connection"];

fn invalid(message: impl Into<String>) -> TransferError {
    TransferError::InvalidAddress(message.into())
}

/// A validated HTTP endpoint: where to go and the headers to send.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
}

impl fmt::Debug for Endpoint {
    // Neither the query (it may hold a token) nor header values are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &display_url(&self.url))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `url` for messages and logs: without credentials, query and fragment.
pub(crate) fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    // Only fails for URLs that cannot have credentials, which then have none to hide.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// A string property: absent, or present and a string (blank counts as absent).
pub(crate) fn string_property<'a>(
    address: &'a ResourceAddress,
    name: &str,
) -> Result<Option<&'a str>, TransferError> {
    match address.get_value(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(invalid(format!(
            "the \"{name}\" of an {HTTP_DATA_TYPE} address must be a string"
        ))),
    }
}

impl Endpoint {
    /// Parses the URL, authorization and headers of `address`.
    /// The URL goes through `policy` (parsed once, scheme, denied networks for IP literals,
    /// allow-list).
    pub(crate) fn from_address(
        address: &ResourceAddress,
        policy: &AddressPolicy,
    ) -> Result<Self, TransferError> {
        let url = url_of(address, policy)?;
        let mut headers = extra_headers(address)?;
        if let Some(value) = authorization(address)? {
            headers.insert(AUTHORIZATION, value);
        }
        Ok(Self { url, headers })
    }
}

fn url_of(address: &ResourceAddress, policy: &AddressPolicy) -> Result<Url, TransferError> {
    let base = string_property(address, BASE_URL_PROPERTY)?.ok_or_else(|| {
        invalid(format!(
            "an {HTTP_DATA_TYPE} address needs a \"{BASE_URL_PROPERTY}\""
        ))
    })?;
    let mut url = policy
        .check_url(base)
        .map_err(|e| invalid(format!("\"{BASE_URL_PROPERTY}\": {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || matches!(url.host_str(), None | Some("")) {
        return Err(invalid(format!(
            "\"{BASE_URL_PROPERTY}\" must be an http or https URL with a host, not '{}'",
            display_url(&url)
        )));
    }
    if let Some(path) = string_property(address, PATH_PROPERTY)? {
        let path = path.trim().trim_start_matches('/');
        if !path.is_empty() {
            let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
            url.set_path(&joined);
        }
    }
    Ok(url)
}

fn authorization(address: &ResourceAddress) -> Result<Option<HeaderValue>, TransferError> {
    let Some(token) = string_property(address, AUTHORIZATION_PROPERTY)? else {
        return Ok(None);
    };
    let token = token.trim();
    let auth_type = string_property(address, AUTH_TYPE_PROPERTY)?.unwrap_or("bearer");
    let value = if auth_type.eq_ignore_ascii_case("bearer") {
        format!("Bearer {token}")
    } else if auth_type.eq_ignore_ascii_case("raw") {
        token.to_owned()
    } else {
        return Err(invalid(format!(
            "\"{AUTH_TYPE_PROPERTY}\" must be \"bearer\" or \"raw\", not '{auth_type}'"
        )));
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| {
        invalid(format!(
            "\"{AUTHORIZATION_PROPERTY}\" is not a valid header value"
        ))
    })?;
    value.set_sensitive(true);
    Ok(Some(value))
}

fn extra_headers(address: &ResourceAddress) -> Result<HeaderMap, TransferError> {
    let mut headers = HeaderMap::new();
    let parsed;
    let object = match address.get_value(HEADERS_PROPERTY) {
        None | Some(serde_json::Value::Null) => return Ok(headers),
        Some(serde_json::Value::Object(object)) => object,
        Some(serde_json::Value::String(text)) if text.trim().is_empty() => return Ok(headers),
        Some(serde_json::Value::String(text)) => {
            parsed = serde_json::from_str::<serde_json::Value>(text).ok();
            match &parsed {
                Some(serde_json::Value::Object(object)) => object,
                _ => {
                    return Err(invalid(format!(
                        "\"{HEADERS_PROPERTY}\" must be a JSON object of header names to strings"
                    )))
                }
            }
        }
        Some(_) => {
            return Err(invalid(format!(
                "\"{HEADERS_PROPERTY}\" must be a JSON object of header names to strings"
            )))
        }
    };
    for (name, value) in object {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("'{name}' is not a valid header name")))?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(invalid(format!(
                "header '{name}' is set by the transfer, not by the address"
            )));
        }
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => {
                return Err(invalid(format!(
                    "the value of header '{name}' must be a string"
                )))
            }
        };
        let value = HeaderValue::from_str(&text)
            .map_err(|_| invalid(format!("the value of header '{name}' is not valid")))?;
        headers.append(header, value);
    }
    Ok(headers)
}

/// The upload method of a sink address: `POST` (default) or `PUT`.
pub(crate) fn sink_method(address: &ResourceAddress) -> Result<Method, TransferError> {
    match string_property(address, METHOD_PROPERTY)? {
        None => Ok(Method::POST),
        Some(m) if m.trim().eq_ignore_ascii_case("post") => Ok(Method::POST),
        Some(m) if m.trim().eq_ignore_ascii_case("put") => Ok(Method::PUT),
        Some(m) => Err(invalid(format!(
            "\"{METHOD_PROPERTY}\" must be POST or PUT, not '{m}'"
        ))),
    }
}

/// Whether a sink address says it is a tus upload (`resumable: tus`; `none` or absent: not
/// known to be).
pub(crate) fn tus_declared(address: &ResourceAddress) -> Result<bool, TransferError> {
    match string_property(address, RESUMABLE_PROPERTY)? {
        None => Ok(false),
        Some(v) if v.trim().eq_ignore_ascii_case("tus") => Ok(true),
        Some(v) if v.trim().eq_ignore_ascii_case("none") => Ok(false),
        Some(v) => Err(invalid(format!(
            "\"{RESUMABLE_PROPERTY}\" must be tus or none, not '{v}'"
        ))),
    }
}

/// The `contentType` of a sink address, validated.
pub(crate) fn content_type(
    address: &ResourceAddress,
) -> Result<Option<HeaderValue>, TransferError> {
    string_property(address, CONTENT_TYPE_PROPERTY)?
        .map(|t| {
            HeaderValue::from_str(t.trim())
                .map_err(|_| invalid(format!("\"{CONTENT_TYPE_PROPERTY}\" is not valid: '{t}'")))
        })
        .transpose()
}
