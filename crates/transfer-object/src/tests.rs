//! Address parsing and the policy, without a server.

#![allow(clippy::unwrap_used)]

use dataplane_spi::{DataSinkFactory, DataSourceFactory, ResourceAddress, TransferError};

use crate::{
    AddressPolicy, ObjectOptions, ObjectSinkFactory, ObjectSourceFactory, AZURE_TYPE, S3_TYPE,
};

fn address(value: serde_json::Value) -> ResourceAddress {
    ResourceAddress::from_json(value).unwrap()
}

fn s3(extra: serde_json::Value) -> ResourceAddress {
    let mut base = serde_json::json!({
        "type": "AmazonS3",
        "region": "eu-west-1",
        "bucketName": "b",
        "keyName": "k.bin",
        "endpointOverride": "http://127.0.0.1:9",
        "accessKeyId": "AKIDEXAMPLE",
        "secretAccessKey": "very-secret",
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    address(base)
}

fn invalid(result: Result<impl std::fmt::Debug, TransferError>) -> String {
    match result {
        Err(TransferError::InvalidAddress(message)) => message,
        other => panic!("expected InvalidAddress, got {other:?}"),
    }
}

#[test]
fn missing_or_half_properties_are_invalid_addresses() {
    let sources = ObjectSourceFactory::new(
        S3_TYPE,
        AddressPolicy::unrestricted(),
        ObjectOptions::default(),
    );
    assert!(
        invalid(sources.create(&s3(serde_json::json!({"bucketName": null}))))
            .contains("bucketName")
    );
    assert!(
        invalid(sources.create(&s3(serde_json::json!({"keyName": null})))).contains("keyPrefix")
    );
    assert!(
        invalid(sources.create(&s3(serde_json::json!({"secretAccessKey": null})))).contains("both")
    );
    let azure = ObjectSinkFactory::new(
        AZURE_TYPE,
        AddressPolicy::unrestricted(),
        ObjectOptions::default(),
    );
    let message = invalid(azure.create(&address(
        serde_json::json!({"type": "AzureStorage", "account": "a", "blobName": "x"}),
    )));
    assert!(message.contains("container"), "{message}");
    // EDC's expanded property names are read too.
    let expanded = address(serde_json::json!({
        "type": "AmazonS3",
        "https://w3id.org/edc/v0.0.1/ns/bucketName": "b",
        "https://w3id.org/edc/v0.0.1/ns/keyName": "k",
        "endpointOverride": "http://127.0.0.1:9",
        "accessKeyId": "a", "secretAccessKey": "s",
    }));
    sources.create(&expanded).unwrap();
}

#[test]
fn an_endpoint_the_policy_denies_is_an_invalid_address_and_secrets_stay_out_of_messages() {
    let policy = AddressPolicy::builder()
        .denied_networks(address_policy::parse_networks("127.0.0.0/8").unwrap())
        .build()
        .unwrap();
    let sinks = ObjectSinkFactory::new(S3_TYPE, policy, ObjectOptions::default());
    let message = invalid(sinks.create(&s3(serde_json::json!({}))));
    assert!(message.contains("denied network"), "{message}");
    assert!(!message.contains("very-secret"));
    let https_only = AddressPolicy::builder()
        .require_https(true)
        .build()
        .unwrap();
    let sinks = ObjectSinkFactory::new(S3_TYPE, https_only, ObjectOptions::default());
    assert!(invalid(sinks.create(&s3(serde_json::json!({})))).contains("HTTPS"));
    let fine = ObjectSinkFactory::new(
        S3_TYPE,
        AddressPolicy::unrestricted(),
        ObjectOptions::default(),
    );
    let sink = fine.create(&s3(serde_json::json!({}))).unwrap();
    assert!(!format!("{sink:?}").contains("very-secret"));
}

#[tokio::test]
async fn a_write_the_pipeline_does_not_drive_is_refused() {
    let sinks = ObjectSinkFactory::new(
        S3_TYPE,
        AddressPolicy::unrestricted(),
        ObjectOptions::default(),
    );
    let sink = sinks.create(&s3(serde_json::json!({}))).unwrap();
    assert_eq!(sink.resume_point(u64::MAX).await.unwrap(), None);
    let input = dataplane_spi::SourceStream {
        stream: Box::pin(futures::stream::empty()),
        size: None,
        content_type: None,
        offset: 0,
    };
    assert!(matches!(
        sink.write(input).await,
        Err(TransferError::Rejected(_))
    ));
    assert!(sink.restore_state("not json").is_err());
    sink.restore_state(r#"{"uploadId":"u","partSize":8388608,"parts":["a","b"]}"#)
        .unwrap();
    assert_eq!(sink.resume_point(0).await.unwrap(), Some(2 * 8_388_608));
    assert!(sink.state().unwrap().contains("\"u\""));
    // A restart from zero drops the old upload (aborted in the background) and starts anew.
    let empty = dataplane_spi::SourceStream {
        stream: Box::pin(futures::stream::empty()),
        size: None,
        content_type: None,
        offset: 0,
    };
    assert_eq!(sink.write(empty).await.unwrap(), 0);
    assert_eq!(sink.resume_point(0).await.unwrap(), Some(0));
}

#[test]
fn options_are_checked() {
    assert!(ObjectOptions {
        part_size: 1024,
        ..ObjectOptions::default()
    }
    .validated()
    .is_err());
    assert!(ObjectOptions {
        parts_in_flight: 0,
        ..ObjectOptions::default()
    }
    .validated()
    .is_err());
    assert!(ObjectOptions::default().validated().is_ok());
}
