//! The one error for outside input that broke a rule: the JSON path of the
//! field and what is wrong with it. Events and subscriptions are validated into
//! it; the API answers it with a 422 naming the field, the fan-out moves the
//! event to `<p>.rejected` with it as the reason.

use std::fmt::Display;

/// A rule a field broke; `field` is its JSON path (`type`, `events[1]`,
/// `headers.x-token`, `body` for the whole document).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Display) -> Self {
        Self {
            field: field.into(),
            message: message.to_string(),
        }
    }

    pub fn required(field: &str) -> Self {
        Self::new(field, "required")
    }

    /// What serde refused, at the path where it happened (`body` for the
    /// document itself), without serde_json's "at line 1 column 9": next to a
    /// field name a position means nothing.
    pub fn from_serde(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = err.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        let message = err.into_inner().to_string();
        let message = match message.find(" at line ") {
            Some(at) => &message[..at],
            None => &message,
        };
        Self::new(field, message)
    }

    /// The same error for item `index` of a list: `[3].type`.
    pub fn in_item(self, index: usize) -> Self {
        Self {
            field: format!("[{index}].{}", self.field),
            message: self.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // only deserialized
    struct Doc {
        n: Option<u8>,
        list: Option<Vec<u8>>,
    }

    fn error_of(json: &str) -> FieldError {
        let mut de = serde_json::Deserializer::from_str(json);
        FieldError::from_serde(serde_path_to_error::deserialize::<_, Doc>(&mut de).unwrap_err())
    }

    #[test]
    fn serde_errors_name_the_path_without_a_position() {
        let err = error_of(r#"{"list": [1, "x"]}"#);
        assert_eq!(err.field, "list[1]");
        assert!(!err.message.contains("line"), "{err}");
        assert_eq!(error_of(r#"{"colour": 1}"#).field, "colour");
        assert_eq!(error_of(r#"{"n": 300}"#).field, "n");
        assert_eq!(error_of("[]").field, "body");
    }

    #[test]
    fn an_item_error_is_prefixed_with_its_index() {
        let err = FieldError::required("type").in_item(3);
        assert_eq!(err.to_string(), "[3].type: required");
    }
}
