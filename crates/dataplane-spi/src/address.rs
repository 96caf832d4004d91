//! Addresses: the DPS `DataAddress` on the wire, and [`ResourceAddress`], dpf's internal
//! description of a source or a destination (a dataset, a consumer destination, or a DPS
//! address converted for a transfer).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The DPS HTTP push profile.
pub const HTTP_PUSH: &str = "https://w3id.org/dspace-sig/profile/http-push";
/// The DPS HTTP pull profile.
pub const HTTP_PULL: &str = "https://w3id.org/dspace-sig/profile/http-pull";
/// Type name of file resources.
pub const FILE_TYPE: &str = "File";
/// Type name of HTTP resources.
pub const HTTP_DATA_TYPE: &str = "HttpData";

fn data_address_type() -> String {
    "DataAddress".to_owned()
}

/// One `endpointProperties` entry of a DPS `DataAddress`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointProperty {
    /// Always `EndpointProperty` when dpf writes it.
    #[serde(rename = "@type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Property name (`authorization`, `authType`, ...).
    pub name: String,
    /// Property value.
    pub value: String,
}

/// The DPS `DataAddress`: where a wire-protocol endpoint is and how to authenticate to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataAddress {
    /// Always `DataAddress` when dpf writes it.
    #[serde(rename = "@type", default = "data_address_type")]
    pub kind: String,
    /// The profile URL (`…/http-push` or `…/http-pull`) or another endpoint type.
    pub endpoint_type: String,
    /// The endpoint URL.
    pub endpoint: String,
    /// Properties such as `authorization` and `authType`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoint_properties: Vec<EndpointProperty>,
}

impl DataAddress {
    /// An HTTP-profile address with a bearer token, as the profile's examples show.
    pub fn http(endpoint_type: &str, endpoint: impl Into<String>, token: Option<&str>) -> Self {
        let mut endpoint_properties = Vec::new();
        if let Some(token) = token {
            for (name, value) in [("authorization", token), ("authType", "bearer")] {
                endpoint_properties.push(EndpointProperty {
                    kind: Some("EndpointProperty".into()),
                    name: name.into(),
                    value: value.into(),
                });
            }
        }
        Self {
            kind: data_address_type(),
            endpoint_type: endpoint_type.to_owned(),
            endpoint: endpoint.into(),
            endpoint_properties,
        }
    }

    /// The value of an endpoint property.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.endpoint_properties
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    /// Converts to the resource a transfer reads from or writes to: `HttpData` with the
    /// endpoint as `baseUrl`, the token, if any, and the `method` (`POST`/`PUT`) and
    /// `resumable` (`tus`) endpoint properties of push endpoints.
    ///
    /// A `file://` endpoint becomes a `File` resource with that path (local transfers; data
    /// planes accept them only when configured to).
    pub fn to_resource(&self) -> ResourceAddress {
        if let Some(path) = self.endpoint.strip_prefix("file://") {
            return ResourceAddress::file(path);
        }
        let mut resource = ResourceAddress::http(&self.endpoint);
        if let Some(token) = self.property("authorization") {
            resource.set("authorization", token);
            resource.set("authType", self.property("authType").unwrap_or("bearer"));
        }
        // How to upload to a push endpoint: the method (`POST`/`PUT`) and whether it is a tus
        // upload (`resumable: tus`, which dpf's ingest endpoint advertises).
        for name in ["method", "resumable"] {
            if let Some(value) = self.property(name) {
                resource.set(name, value);
            }
        }
        resource
    }
}

/// A source or destination as the transfer layer sees it: a JSON object with a `type`
/// (`File`, `HttpData`, or any type a registered factory handles) and that type's properties.
///
/// `File`: `path`. `HttpData`: `baseUrl`, optional `authorization` (+ `authType`, default
/// `bearer`: sent as `Authorization: Bearer <token>`; `raw`: sent as is), `method` (sinks;
/// `POST` default, or `PUT`), `contentType`, `headers` (object of extra headers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceAddress(BTreeMap<String, serde_json::Value>);

impl ResourceAddress {
    /// A resource of `type_name` with no properties.
    pub fn new(type_name: &str) -> Self {
        let mut map = BTreeMap::new();
        map.insert(
            "type".to_owned(),
            serde_json::Value::String(type_name.to_owned()),
        );
        Self(map)
    }

    /// A file resource.
    pub fn file(path: impl Into<String>) -> Self {
        let mut address = Self::new(FILE_TYPE);
        address.set("path", &path.into());
        address
    }

    /// An HTTP resource.
    pub fn http(base_url: &str) -> Self {
        let mut address = Self::new(HTTP_DATA_TYPE);
        address.set("baseUrl", base_url);
        address
    }

    /// Parses a JSON object with a non-blank string `type`.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn from_json(value: serde_json::Value) -> Result<Self, String> {
        let serde_json::Value::Object(map) = value else {
            return Err("an address must be a JSON object with a \"type\"".into());
        };
        let address = Self(map.into_iter().collect());
        match address.type_name() {
            Some(t) if !t.trim().is_empty() => Ok(address),
            _ => Err(
                "an address needs a non-blank string \"type\" (e.g. \"File\" or \"HttpData\")"
                    .into(),
            ),
        }
    }

    /// The `type`.
    pub fn type_name(&self) -> Option<&str> {
        self.0.get("type").and_then(serde_json::Value::as_str)
    }

    /// A string property.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(serde_json::Value::as_str)
    }

    /// Any property.
    pub fn get_value(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.get(key)
    }

    /// Sets a string property.
    pub fn set(&mut self, key: &str, value: &str) {
        self.0
            .insert(key.to_owned(), serde_json::Value::String(value.to_owned()));
    }

    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(self.0.clone().into_iter().collect())
    }
}

/// Whether `url` starts with `scheme://` (ASCII case-insensitive), e.g. to tell plain-HTTP
/// addresses from HTTPS ones without parsing them.
pub fn has_scheme(url: &str, scheme: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(found, _)| found.eq_ignore_ascii_case(scheme))
}

#[cfg(test)]
mod scheme_tests {
    use super::has_scheme;

    #[test]
    fn has_scheme_is_case_insensitive_and_exact() {
        assert!(has_scheme("HTTP://a/b", "http"));
        assert!(has_scheme("https://a", "https"));
        assert!(!has_scheme("https://a", "http"));
        assert!(!has_scheme("httpx://a", "http"));
        assert!(!has_scheme("a/http://b", "http"));
        assert!(!has_scheme("", "http"));
    }
}

#[cfg(test)]
mod resource_tests {
    use super::{DataAddress, EndpointProperty, HTTP_PUSH};

    #[test]
    fn push_endpoint_properties_reach_the_resource() {
        let mut address = DataAddress::http(HTTP_PUSH, "http://sink.example/up", Some("tok"));
        for (name, value) in [("method", "PUT"), ("resumable", "tus"), ("other", "x")] {
            address.endpoint_properties.push(EndpointProperty {
                kind: None,
                name: name.into(),
                value: value.into(),
            });
        }
        let resource = address.to_resource();
        assert_eq!(resource.get("method"), Some("PUT"));
        assert_eq!(resource.get("resumable"), Some("tus"));
        assert_eq!(resource.get("authorization"), Some("tok"));
        assert_eq!(
            resource.get("other"),
            None,
            "only known properties are taken"
        );
        let plain = DataAddress::http(HTTP_PUSH, "http://sink.example/up", None).to_resource();
        assert_eq!(plain.get("method"), None);
    }
}
