//! Subscriptions as a file, for GitOps. `herald subscriptions apply` reads YAML
//! or JSON: one subscription, a list of them, or a document with a
//! `subscriptions:` list. `export` writes the document form, which reads back.

use serde_json::{Map, Value, json};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("not YAML or JSON: {0}")]
    Syntax(#[from] yaml_serde::Error),
    #[error(
        "expected a subscription, a list of subscriptions, or a document with a `subscriptions:` list"
    )]
    Shape,
}

/// The subscriptions in `text`, each still to be validated.
pub fn parse(text: &str) -> Result<Vec<Value>, FileError> {
    // JSON is YAML (as far as a subscription goes), so one parser reads both.
    let document: Value = yaml_serde::from_str(text)?;
    match document {
        Value::Array(list) => Ok(list),
        Value::Object(mut map) if !map.contains_key("name") => match map.remove("subscriptions") {
            Some(Value::Array(list)) if map.is_empty() => Ok(list),
            _ => Err(FileError::Shape),
        },
        one @ Value::Object(_) => Ok(vec![one]),
        _ => Err(FileError::Shape),
    }
}

/// A document `parse` reads back: `subscriptions:` and the list, as YAML.
pub fn document(subscriptions: Vec<Map<String, Value>>) -> String {
    let document = json!({ "subscriptions": subscriptions });
    yaml_serde::to_string(&document).expect("a JSON value always serialises as YAML")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_a_list_or_a_document_with_a_list() {
        let one = "name: a\nurl: https://example.com/\nevents: ['*']\n";
        assert_eq!(parse(one).unwrap().len(), 1);
        let list = r#"[{"name": "a"}, {"name": "b"}]"#;
        assert_eq!(parse(list).unwrap().len(), 2);
        let document = "subscriptions:\n  - name: a\n  - name: b\n  - name: c\n";
        assert_eq!(parse(document).unwrap().len(), 3);
        assert_eq!(parse("subscriptions: []\n").unwrap().len(), 0);
    }

    #[test]
    fn anything_else_says_what_is_expected() {
        for bad in [
            "42",
            "subscriptions: {}",
            "subscriptions: []\nother: 1",
            "{}",
        ] {
            assert!(matches!(parse(bad), Err(FileError::Shape)), "{bad}");
        }
        assert!(matches!(parse("a: [b"), Err(FileError::Syntax(_))));
    }

    #[test]
    fn an_exported_document_reads_back() {
        let sub = json!({"name": "a", "url": "https://example.com/", "events": ["x.*"], "enabled": false});
        let Value::Object(map) = sub.clone() else {
            unreachable!()
        };
        let text = document(vec![map]);
        assert_eq!(parse(&text).unwrap(), vec![sub]);
    }
}
