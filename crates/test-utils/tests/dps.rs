//! Tests of `test_utils::dps`: the specification's example messages validate, and typical
//! violations are reported with their JSON pointers.
//!
//! The examples are copied from `specifications/signaling.md` of the DPS specification.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use test_utils::dps::{assert_valid, schema_names, validate};

fn prepare_example() -> Value {
    json!({
      "messageId": "b1d5f9e2-3c4b-4f7a-9c3e-2f1e5d6c7b8a",
      "participantId": "provider-participant-id",
      "counterPartyId": "consumer-participant-id",
      "dataspaceContext": "test-dataspace-context",
      "processId": "test-transfer-process-id",
      "agreementId": "test-agreement-id",
      "datasetId": "asset-id",
      "profile": "https://w3id.org/dspace-sig/profile/s3-push",
      "claims": {
        "membership": "active",
        "sub": "subject"
      },
      "labels": [
        "gold",
        "blue"
      ],
      "metadata": {
        "bucketName": "destinationBucket",
        "region": "westeurope",
        "...": "..."
      }
    })
}

fn start_example() -> Value {
    json!({
      "messageId": "b1d5f9e2-3c4b-4f7a-9c3e-2f1e5d6c7b8a",
      "participantId": "provider-participant-id",
      "counterPartyId": "consumer-participant-id",
      "dataspaceContext": "test-dataspace-context",
      "processId": "test-transfer-process-id",
      "agreementId": "test-agreement-id",
      "datasetId": "asset-id",
      "profile": "https://w3id.org/dspace-sig/profile/http-pull",
      "claims": {
        "membership": "active",
        "sub": "subject"
      },
      "dataAddress": {
        "endpointType": "https://w3id.org/idsa/v4.1/HTTP",
        "endpoint": "http://dataplane.provider.com/api/public",
        "endpointProperties": [
          {
            "name": "authorization",
            "value": "<AUTH_TOKEN>"
          },
          {
            "name": "authType",
            "value": "bearer"
          }
        ]
      },
      "labels": [
        "gold",
        "blue"
      ],
      "metadata": {
        "bucketName": "sourceBucket",
        "region": "westeurope",
        "...": "..."
      }
    })
}

/// The specification's `DataFlowStatusMessage` example, which has `"dataAddress": {}`.
fn status_example_as_published() -> Value {
    json!({
      "messageId": "b1d5f9e2-3c4b-4f7a-9c3e-2f1e5d6c7b8a",
      "dataFlowId": "dataFlow-123",
      "dataAddress": {},
      "state": "PREPARED",
      "error": ""
    })
}

/// The status example without its empty data address (see
/// `spec_status_example_with_empty_data_address_is_rejected`).
fn status_example() -> Value {
    let mut status = status_example_as_published();
    status.as_object_mut().unwrap().remove("dataAddress");
    status
}

fn spec_data_address() -> Value {
    json!({
      "endpointType": "https://w3id.org/idsa/v4.1/HTTP",
      "endpoint": "https://example.com",
      "endpointProperties": [
        {
          "name": "authorization",
          "value": "TOKEN-123"
        },
        {
          "name": "authType",
          "value": "bearer"
        }
      ]
    })
}

fn http_pull_data_address() -> Value {
    json!({
      "endpointType": "https://w3id.org/dspace-sig/profile/http-pull",
      "endpoint": "https://provider.example.com/data/asset-123",
      "endpointProperties": [
        { "name": "authorization", "value": "TOKEN-123" },
        { "name": "authType", "value": "bearer" }
      ]
    })
}

fn assert_invalid(schema: &str, instance: &Value, expected: &[&str]) -> String {
    let errors = validate(schema, instance).expect_err("instance should be rejected");
    for part in expected {
        assert!(
            errors.contains(part),
            "expected {part:?} in the errors:\n{errors}"
        );
    }
    errors
}

#[test]
fn spec_examples_validate() {
    assert_valid("DataFlowPrepareMessage", &prepare_example());
    assert_valid("DataFlowStartMessage", &start_example());
    assert_valid("DataFlowStatusMessage", &status_example());
    assert_valid(
        "DataFlowSuspendMessage",
        &json!({
          "messageId": "b1d5f9e2-3c4b-4f7a-9c3e-2f1e5d6c7b8a",
          "reason": "Suspending data flow due to scheduled maintenance."
        }),
    );
    // The spec's resume example carries `"dataAddress": {}` too; without it:
    assert_valid(
        "DataFlowResumeMessage",
        &json!({ "messageId": "b1d5f9e2-3c4b-4f7a-9c3e-2f1e5d6c7b8a" }),
    );
    assert_valid(
        "DataFlowTerminateMessage",
        &json!({
          "messageId": "b1d5f9e2-3c4b-4f7a-9c3e-2f1e5d6c7b8a",
          "reason": "Terminating data flow due to an unrecoverable error."
        }),
    );
    assert_valid(
        "DataFlowStartedNotificationMessage",
        &json!({
          "messageId": "b1d5f9e2-3c4b-4f7a-9c3e-2f1e5d6c7b8a",
          "dataAddress": {
            "endpointType": "https://w3id.org/idsa/v4.1/HTTP",
            "endpoint": "http://dataplane.provider.com/api/public",
            "endpointProperties": [
              {
                "name": "authorization",
                "value": "<AUTH_TOKEN>"
              },
              {
                "name": "authType",
                "value": "bearer"
              }
            ]
          }
        }),
    );
    assert_valid(
        "DataFlowStatusResponseMessage",
        &json!({
          "dataFlowId": "dataFlow-123",
          "state": "STARTED"
        }),
    );
    assert_valid(
        "ControlPlaneRegistrationMessage",
        &json!({
          "controlplaneId": "bcf2d204-03bc-4354-8e92-b15b68d3c358",
          "endpoint": "https://example.com/signaling",
          "authorization": {
            "type": "..."
          }
        }),
    );
    assert_valid(
        "DataPlaneRegistrationMessage",
        &json!({
          "dataplaneId": "7d6fda82-98b6-4738-a874-1f2c003a79ff",
          "endpoint": "https://example.com/signaling",
          "profiles": [
            "https://w3id.org/dspace-sig/profile/http-pull"
          ],
          "authorization": {
            "type": "..."
          },
          "labels": [
            "label1",
            "label2"
          ]
        }),
    );
}

#[test]
fn messages_with_the_spec_data_address_validate() {
    let mut status = status_example();
    status["dataAddress"] = spec_data_address();
    assert_valid("DataFlowStatusMessage", &status);

    let resume = json!({ "messageId": "m-1", "dataAddress": spec_data_address() });
    assert_valid("DataFlowResumeMessage", &resume);

    let mut start = start_example();
    start["dataAddress"] = spec_data_address();
    start["dataAddress"]["@type"] = json!("DataAddress");
    start["dataAddress"]["endpointProperties"][0]["@type"] = json!("EndpointProperty");
    assert_valid("DataFlowStartMessage", &start);
}

/// The published status example carries `"dataAddress": {}`, which the DataAddress schema
/// (dpf's stand-in, like the Dataspace Protocol's) rejects: `endpointType` and `endpoint` are
/// required.
#[test]
fn spec_status_example_with_empty_data_address_is_rejected() {
    assert_invalid(
        "DataFlowStatusMessage",
        &status_example_as_published(),
        &["/dataAddress", "endpointType", "endpoint"],
    );
}

#[test]
fn start_message_without_process_id_fails_naming_it() {
    let mut start = start_example();
    start.as_object_mut().unwrap().remove("processId");
    let errors = assert_invalid("DataFlowStartMessage", &start, &["processId"]);
    assert!(
        errors.lines().any(|l| l.starts_with("(root): ")),
        "expected the root pointer in:\n{errors}"
    );
}

#[test]
fn status_message_with_unknown_state_fails() {
    let mut status = status_example();
    status["state"] = json!("SUSPENDING");
    assert_invalid("DataFlowStatusMessage", &status, &["/state", "SUSPENDING"]);
}

#[test]
fn status_message_with_null_error_fails() {
    let mut status = status_example();
    status["error"] = Value::Null;
    assert_invalid("DataFlowStatusMessage", &status, &["/error", "null"]);
}

#[test]
fn start_message_with_data_address_without_endpoint_fails() {
    let mut start = start_example();
    start["dataAddress"]
        .as_object_mut()
        .unwrap()
        .remove("endpoint");
    assert_invalid(
        "DataFlowStartMessage",
        &start,
        &["/dataAddress", "endpoint"],
    );
}

#[test]
fn every_violation_is_listed() {
    let mut start = start_example();
    let object = start.as_object_mut().unwrap();
    object.remove("processId");
    object.remove("agreementId");
    object.insert("labels".into(), json!(["gold", 7]));
    object.insert("claims".into(), json!("not-an-object"));
    let errors = assert_invalid(
        "DataFlowStartMessage",
        &start,
        &["processId", "agreementId", "/labels/1", "/claims"],
    );
    assert!(errors.starts_with("4 violation(s)"), "{errors}");
}

#[test]
fn http_data_address_schema() {
    assert_valid("HttpDataAddress", &http_pull_data_address());

    // The HTTP profile requires the https scheme and a profile endpoint type.
    let mut plain_http = http_pull_data_address();
    plain_http["endpoint"] = json!("http://provider.example.com/data");
    assert_invalid("HttpDataAddress", &plain_http, &["/endpoint", "^https://"]);

    let mut idsa_type = http_pull_data_address();
    idsa_type["endpointType"] = json!("https://w3id.org/idsa/v4.1/HTTP");
    assert_invalid("HttpDataAddress", &idsa_type, &["/endpointType"]);

    // The base DataAddress (stand-in) requirements apply too.
    let mut no_endpoint = http_pull_data_address();
    no_endpoint.as_object_mut().unwrap().remove("endpoint");
    assert_invalid("HttpDataAddress", &no_endpoint, &["endpoint"]);

    let mut bad_property = http_pull_data_address();
    bad_property["endpointProperties"][1] = json!({ "name": "authType" });
    assert_invalid(
        "HttpDataAddress",
        &bad_property,
        &["/endpointProperties/1", "value"],
    );
}

#[test]
fn registration_formats_are_checked() {
    let registration = json!({
      "controlplaneId": "cp-1",
      "endpoint": "not a uri",
      "authorization": { "type": "none" }
    });
    assert_invalid(
        "ControlPlaneRegistrationMessage",
        &registration,
        &["/endpoint"],
    );
}

#[test]
fn every_schema_name_compiles() {
    for name in schema_names() {
        assert!(validate(name, &json!(42)).is_err(), "{name} accepted 42");
    }
    assert_eq!(schema_names().len(), 11);
}

#[test]
#[should_panic(expected = "known schemas: DataFlowPrepareMessage")]
fn unknown_schema_name_panics_with_known_names() {
    let _ = validate("DataFlowPauseMessage", &json!({}));
}

#[test]
#[should_panic(expected = "instance:\n{\n  \"messageId\"")]
fn assert_valid_panics_with_errors_and_instance() {
    assert_valid(
        "DataFlowStatusMessage",
        &json!({ "messageId": "m-1", "state": "STARTED" }),
    );
}
