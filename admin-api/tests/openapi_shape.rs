//! The admin API's OpenAPI document keeps its shape: every path, operation, parameter,
//! schema and field as recorded in `openapi_shape.json`. Only descriptions may change, so
//! a refactoring that renames a schema, moves a field or drops a response fails here.
//! After a deliberate API change, regenerate the record with
//! `TOLLGATE_WRITE_OPENAPI_SHAPE=1 cargo test -p tollgate-admin --test openapi_shape`.

use serde_json::Value;

const RECORD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openapi_shape.json");

/// The document without its prose: `description` and `summary` texts are dropped (a
/// property *named* `description` is an object and stays).
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, v)| {
                    !(matches!(k.as_str(), "description" | "summary") && v.is_string())
                })
                .map(|(k, v)| (k.clone(), shape(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        other => other.clone(),
    }
}

#[test]
fn paths_and_schemas_keep_their_shape() {
    let document = serde_json::to_value(tollgate_admin::openapi()).unwrap();
    let now = shape(&document);
    if std::env::var_os("TOLLGATE_WRITE_OPENAPI_SHAPE").is_some() {
        let text = serde_json::to_string_pretty(&now).unwrap();
        std::fs::write(RECORD, text + "\n").unwrap();
    }
    let recorded: Value = serde_json::from_str(&std::fs::read_to_string(RECORD).unwrap()).unwrap();
    // Compared part by part, so a failure names what moved.
    for part in ["/paths", "/components/schemas"] {
        let (was, is) = (&recorded.pointer(part), &now.pointer(part));
        let (was, is) = (was.unwrap_or(&Value::Null), is.unwrap_or(&Value::Null));
        let (Some(was), Some(is)) = (was.as_object(), is.as_object()) else {
            assert_eq!(was, is, "{part} changed");
            continue;
        };
        let names: std::collections::BTreeSet<_> = was.keys().chain(is.keys()).collect();
        for name in names {
            assert_eq!(
                was.get(name),
                is.get(name),
                "{part}.{name} changed shape (left: recorded, right: now)"
            );
        }
    }
    assert_eq!(
        recorded, now,
        "the document changed outside paths and schemas"
    );
}

#[test]
fn the_shape_keeps_fields_named_description() {
    let doc = serde_json::json!({
        "description": "prose",
        "properties": { "description": { "type": "string", "description": "prose" } }
    });
    assert_eq!(
        shape(&doc),
        serde_json::json!({ "properties": { "description": { "type": "string" } } })
    );
}
