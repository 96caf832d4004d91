//! Property tests of DPS message parsing: arbitrary input never panics, valid messages
//! round-trip exactly, and optional fields are left out rather than written as null.

#![allow(clippy::unwrap_used)]

use dataplane_spi::{DataAddress, DataFlowMessage, DataFlowStatusMessage, EndpointProperty};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9 ./:_-]{0,24}").unwrap()
}

fn address() -> impl Strategy<Value = DataAddress> {
    (
        text(),
        text(),
        proptest::collection::vec((text(), text()), 0..3),
    )
        .prop_map(|(t, e, props)| DataAddress {
            kind: "DataAddress".into(),
            endpoint_type: t,
            endpoint: e,
            endpoint_properties: props
                .into_iter()
                .map(|(name, value)| EndpointProperty {
                    kind: None,
                    name,
                    value,
                })
                .collect(),
        })
}

fn message() -> impl Strategy<Value = DataFlowMessage> {
    (
        (text(), text(), text(), text(), text()),
        (text(), text(), text()),
        proptest::option::of(address()),
        proptest::option::of(proptest::collection::vec(text(), 0..3)),
    )
        .prop_map(
            |((m, p, c, d, pr), (a, ds, profile), data_address, labels)| DataFlowMessage {
                message_id: m,
                participant_id: p,
                counter_party_id: c,
                dataspace_context: d,
                process_id: pr,
                agreement_id: a,
                dataset_id: ds,
                profile,
                claims: serde_json::Map::new(),
                data_address,
                labels,
                metadata: None,
            },
        )
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<DataFlowMessage>(&bytes);
        let _ = serde_json::from_slice::<DataFlowStatusMessage>(&bytes);
        let _ = serde_json::from_slice::<DataAddress>(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(value in any::<i64>().prop_map(serde_json::Value::from).prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(text(), inner, 0..4).prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })) {
        let _ = serde_json::from_value::<DataFlowMessage>(value.clone());
        let _ = serde_json::from_value::<DataAddress>(value);
    }

    #[test]
    fn messages_round_trip_without_nulls(message in message()) {
        let json = serde_json::to_value(&message).unwrap();
        prop_assert!(!json.to_string().contains("null"), "optional fields must be left out: {json}");
        let back: DataFlowMessage = serde_json::from_value(json).unwrap();
        prop_assert_eq!(back, message);
    }
}
