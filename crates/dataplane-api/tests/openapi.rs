//! The OpenAPI document describes every route the API serves.

#![allow(clippy::unwrap_used)]

#[test]
fn openapi_lists_every_route() {
    let doc: serde_json::Value = serde_json::from_str(dataplane_api::OPENAPI_JSON).unwrap();
    let source = include_str!("../src/lib.rs");
    // Every `.route("<path>", web::<method>()…)` of the route table, however rustfmt wrapped it.
    let flat: String = source.split_whitespace().collect::<Vec<_>>().join("");
    let mut routes = 0;
    for piece in flat.split(".route(\"").skip(1) {
        let path = piece.split('"').next().unwrap();
        let method = piece
            .split("web::")
            .nth(1)
            .unwrap()
            .split('(')
            .next()
            .unwrap();
        let key = if path.starts_with("/signaling/controlplanes/") {
            path.replace("{id}", "{controlplaneId}")
        } else {
            path.replace("{key:.+}", "{key}")
        };
        assert!(
            doc["paths"][&key].get(method).is_some(),
            "{method} {path} is not in openapi.json"
        );
        routes += 1;
    }
    assert!(routes == 39, "found only {routes} routes");
}
