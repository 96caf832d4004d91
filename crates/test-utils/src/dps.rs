//! Validation of JSON messages against the Eclipse Data Plane Signaling (DPS) JSON schemas.
//!
//! Tests use this to assert that every message the data plane sends or receives conforms to the
//! specification:
//!
//! ```
//! let status = serde_json::json!({
//!     "messageId": "m-1",
//!     "dataFlowId": "flow-1",
//!     "state": "STARTED"
//! });
//! test_utils::dps::assert_valid("DataFlowStatusMessage", &status);
//! assert!(test_utils::dps::validate("DataFlowStatusMessage", &serde_json::json!({})).is_err());
//! ```
//!
//! # Schemas
//!
//! The schemas are an unmodified copy of the specification's schemas, kept in
//! `crates/test-utils/dps-schemas/` (see the README there) and embedded with `include_str!`.
//! They reference each other by absolute URLs below `https://w3id.org/dspace-sig/v1.0/`; every
//! schema file is registered under that prefix plus its file name (the URL the other schemas
//! use for it), and the HTTP profile data address schema under its own `$id`. Nothing is ever
//! fetched: the `jsonschema` crate is built without its HTTP/file retrievers and the validators
//! are built offline, so a reference to a schema that is not registered here fails at build time.
//!
//! The Dataspace Protocol base DataAddress schema
//! (`https://w3id.org/dspace/2025/1/transfer/data-address-schema.json`), referenced by the DPS
//! schemas, is not part of the DPS specification; [`dsp_data_address_stand_in`] supplies dpf's
//! stand-in for it.
//!
//! Formats (e.g. `"format": "uri"`) are asserted, not just annotated.
//!
//! Each validator is compiled once per process, on first use.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use jsonschema::{Draft, Registry, Validator};
use serde_json::{json, Value};

/// URL prefix under which the DPS schemas reference each other.
const DPS_BASE: &str = "https://w3id.org/dspace-sig/v1.0/";

/// `$id` of the Dataspace Protocol base DataAddress schema referenced by the DPS schemas.
const DSP_DATA_ADDRESS_ID: &str =
    "https://w3id.org/dspace/2025/1/transfer/data-address-schema.json";

/// `$id` of the HTTP profile DataAddress schema (as declared in the file).
const HTTP_DATA_ADDRESS_ID: &str =
    "https://w3id.org/dspace-sig/profile/http/data-address-schema.json";

/// Name accepted by [`validate`] for the HTTP profile DataAddress schema.
const HTTP_DATA_ADDRESS: &str = "HttpDataAddress";

/// The DPS schema files: (file name, contents). `AgreementResponse.schema.json` is left out on
/// purpose: it references DSP contract and context schemas that are not available.
const DPS_SCHEMA_FILES: &[(&str, &str)] = &[
    (
        "AuthorizationEntry.schema.json",
        include_str!("../dps-schemas/AuthorizationEntry.schema.json"),
    ),
    (
        "ControlPlaneRegistrationMessage.schema.json",
        include_str!("../dps-schemas/ControlPlaneRegistrationMessage.schema.json"),
    ),
    (
        "DataFlowBaseMessage.schema.json",
        include_str!("../dps-schemas/DataFlowBaseMessage.schema.json"),
    ),
    (
        "DataFlowPrepareMessage.schema.json",
        include_str!("../dps-schemas/DataFlowPrepareMessage.schema.json"),
    ),
    (
        "DataFlowResumeMessage.schema.json",
        include_str!("../dps-schemas/DataFlowResumeMessage.schema.json"),
    ),
    (
        "DataFlowStartMessage.schema.json",
        include_str!("../dps-schemas/DataFlowStartMessage.schema.json"),
    ),
    (
        "DataFlowStartedNotificationMessage.schema.json",
        include_str!("../dps-schemas/DataFlowStartedNotificationMessage.schema.json"),
    ),
    (
        "DataFlowStatusMessage.schema.json",
        include_str!("../dps-schemas/DataFlowStatusMessage.schema.json"),
    ),
    (
        "DataFlowStatusResponseMessage.schema.json",
        include_str!("../dps-schemas/DataFlowStatusResponseMessage.schema.json"),
    ),
    (
        "DataFlowSuspendMessage.schema.json",
        include_str!("../dps-schemas/DataFlowSuspendMessage.schema.json"),
    ),
    (
        "DataFlowTerminateMessage.schema.json",
        include_str!("../dps-schemas/DataFlowTerminateMessage.schema.json"),
    ),
    (
        "DataPlaneRegistrationMessage.schema.json",
        include_str!("../dps-schemas/DataPlaneRegistrationMessage.schema.json"),
    ),
];

/// The HTTP profile DataAddress schema file.
const HTTP_DATA_ADDRESS_SCHEMA: &str =
    include_str!("../dps-schemas/profiles/http/data-address-schema.json");

/// The message schemas [`validate`] accepts by name (the file name without `.schema.json`).
const MESSAGE_SCHEMAS: &[&str] = &[
    "DataFlowPrepareMessage",
    "DataFlowStartMessage",
    "DataFlowStatusMessage",
    "DataFlowStatusResponseMessage",
    "DataFlowStartedNotificationMessage",
    "DataFlowSuspendMessage",
    "DataFlowResumeMessage",
    "DataFlowTerminateMessage",
    "ControlPlaneRegistrationMessage",
    "DataPlaneRegistrationMessage",
];

/// dpf's stand-in for the Dataspace Protocol base DataAddress schema
/// (`https://w3id.org/dspace/2025/1/transfer/data-address-schema.json`).
///
/// That schema belongs to the Dataspace Protocol, not to the DPS specification, and is not
/// shipped with the DPS schemas. This stand-in is written by dpf from the DataAddress
/// serialization the DPS specification describes: an object with required string
/// `endpointType` and `endpoint`, an optional string `@type`, and optional `endpointProperties`,
/// an array of objects with required string `name` and `value` and an optional string `@type`.
/// Other properties are allowed.
pub fn dsp_data_address_stand_in() -> Value {
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": DSP_DATA_ADDRESS_ID,
        "title": "DataAddress (dpf stand-in for the Dataspace Protocol schema)",
        "type": "object",
        "properties": {
            "@type": { "type": "string" },
            "endpointType": { "type": "string" },
            "endpoint": { "type": "string" },
            "endpointProperties": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "@type": { "type": "string" },
                        "name": { "type": "string" },
                        "value": { "type": "string" }
                    },
                    "required": ["name", "value"]
                }
            }
        },
        "required": ["endpointType", "endpoint"]
    })
}

/// The names [`validate`] accepts, in a stable order.
pub fn schema_names() -> Vec<&'static str> {
    MESSAGE_SCHEMAS
        .iter()
        .copied()
        .chain([HTTP_DATA_ADDRESS])
        .collect()
}

fn parse(file: &str, text: &str) -> Value {
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("embedded DPS schema {file} is not valid JSON: {e}"))
}

/// One compiled validator per accepted name.
static VALIDATORS: LazyLock<BTreeMap<&'static str, Validator>> = LazyLock::new(build_validators);

fn build_validators() -> BTreeMap<&'static str, Validator> {
    // (absolute URI, schema) for every resource.
    let mut resources: Vec<(String, Value)> = DPS_SCHEMA_FILES
        .iter()
        .map(|(file, text)| (format!("{DPS_BASE}{file}"), parse(file, text)))
        .collect();
    resources.push((
        HTTP_DATA_ADDRESS_ID.to_owned(),
        parse(
            "profiles/http/data-address-schema.json",
            HTTP_DATA_ADDRESS_SCHEMA,
        ),
    ));
    resources.push((DSP_DATA_ADDRESS_ID.to_owned(), dsp_data_address_stand_in()));

    let registry = Registry::new()
        .draft(Draft::Draft7)
        .extend(resources.iter().map(|(uri, schema)| (uri.as_str(), schema)))
        .expect("the DPS schema URIs are valid absolute URIs")
        .prepare()
        .unwrap_or_else(|e| panic!("cannot build the DPS schema registry: {e}"));

    let build = |uri: &str| -> Validator {
        jsonschema::options()
            .with_draft(Draft::Draft7)
            .should_validate_formats(true)
            .offline()
            .with_registry(&registry)
            .build(&json!({ "$ref": uri }))
            .unwrap_or_else(|e| panic!("cannot compile the DPS schema {uri}: {e}"))
    };

    let mut validators: BTreeMap<&'static str, Validator> = MESSAGE_SCHEMAS
        .iter()
        .map(|name| (*name, build(&format!("{DPS_BASE}{name}.schema.json"))))
        .collect();
    validators.insert(HTTP_DATA_ADDRESS, build(HTTP_DATA_ADDRESS_ID));
    validators
}

fn validator(schema: &str) -> &'static Validator {
    VALIDATORS.get(schema).unwrap_or_else(|| {
        panic!(
            "unknown DPS schema {schema:?}; known schemas: {}",
            schema_names().join(", ")
        )
    })
}

/// Validates `instance` against the DPS schema named `schema`.
///
/// Names accepted: `"DataFlowPrepareMessage"`, `"DataFlowStartMessage"`,
/// `"DataFlowStatusMessage"`, `"DataFlowStatusResponseMessage"`,
/// `"DataFlowStartedNotificationMessage"`, `"DataFlowSuspendMessage"`, `"DataFlowResumeMessage"`,
/// `"DataFlowTerminateMessage"`, `"ControlPlaneRegistrationMessage"`,
/// `"DataPlaneRegistrationMessage"`, plus `"HttpDataAddress"` for the HTTP profile data address
/// schema (see [`schema_names`]).
///
/// # Errors
///
/// When the instance does not conform, the error lists every violation, one per line, as
/// `<JSON pointer of the instance location>: <message> (schema: <schema location>)`, e.g.
/// `/dataAddress: "endpoint" is a required property (schema: ...)`; the whole instance (the
/// empty pointer) is shown as `(root)`.
///
/// # Panics
///
/// If `schema` is not one of the accepted names; the message lists the known names.
pub fn validate(schema: &str, instance: &Value) -> Result<(), String> {
    let errors: Vec<String> = validator(schema)
        .iter_errors(instance)
        .map(|error| {
            let pointer = error.instance_path().as_str();
            let pointer = if pointer.is_empty() {
                "(root)"
            } else {
                pointer
            };
            format!(
                "{pointer}: {error} (schema: {})",
                error.evaluation_path().as_str()
            )
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} violation(s) of the DPS schema {schema}:\n{}",
            errors.len(),
            errors.join("\n")
        ))
    }
}

/// Asserts that `instance` conforms to the DPS schema named `schema` (see [`validate`]).
///
/// # Panics
///
/// If it does not, with every violation and the instance pretty-printed; or if `schema` is
/// unknown.
pub fn assert_valid(schema: &str, instance: &Value) {
    if let Err(errors) = validate(schema, instance) {
        let pretty =
            serde_json::to_string_pretty(instance).unwrap_or_else(|_| instance.to_string());
        panic!("{errors}\ninstance:\n{pretty}");
    }
}
