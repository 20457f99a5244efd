//! JSON request bodies: parsed in place with simd-json, then read field by field so every
//! complaint names its field (`quantity: must be a whole number`) or says where the JSON
//! broke (`body: invalid JSON at byte 17: expected ',' or '}'`).
//!
//! Pure: bytes in, values or messages out. The parse reuses the worker's simd-json buffers.

use simd_json::prelude::*;
use simd_json::{BorrowedValue, Buffers, ErrorType};

/// A parsed JSON object body.
pub(crate) struct Body<'a> {
    value: BorrowedValue<'a>,
}

/// Parses `body` as a JSON object whose keys are all in `allowed`.
pub(crate) fn object<'a>(body: &'a mut [u8], buffers: &mut Buffers, allowed: &[&str]) -> Result<Body<'a>, String> {
    let value = parse(body, buffers)?;
    let Some(object) = value.as_object() else {
        return Err(format!("body: must be a JSON object, not {}", kind(&value)));
    };
    if let Some(unknown) = object.keys().find(|k| !allowed.contains(&k.as_ref())) {
        return Err(format!("body: unknown field {unknown:?} (expected {})", allowed.join(", ")));
    }
    Ok(Body { value })
}

/// Parses any JSON value (for preferences, which are free-form).
pub(crate) fn parse<'a>(body: &'a mut [u8], buffers: &mut Buffers) -> Result<BorrowedValue<'a>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("body: expected JSON, got an empty body".to_owned());
    }
    simd_json::to_borrowed_value_with_buffers(body, buffers)
        .map_err(|e| format!("body: invalid JSON at byte {}: {}", e.index(), describe(e.error())))
}

impl<'a> Body<'a> {
    fn get(&self, key: &str) -> Option<&BorrowedValue<'a>> {
        self.value.as_object().and_then(|o| o.get(key))
    }

    /// A string field; `Ok(None)` when absent. `null` is not a string: the field is either
    /// sent with its type or left out.
    pub(crate) fn str(&self, key: &'static str) -> Result<Option<&str>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| format!("{key}: must be a string, not {}", kind(v))),
        }
    }

    /// A required string field.
    pub(crate) fn required_str(&self, key: &'static str) -> Result<&str, String> {
        self.str(key)?.ok_or_else(|| format!("{key}: is required"))
    }

    /// An integer field (no fraction, no exponent, within i64); `Ok(None)` when absent.
    pub(crate) fn int(&self, key: &'static str) -> Result<Option<i64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| format!("{key}: must be a whole number, not {}", kind(v))),
        }
    }
}

/// `an object`, `a string`, … for messages.
fn kind(v: &BorrowedValue<'_>) -> &'static str {
    match v.value_type() {
        ValueType::Null => "null",
        ValueType::Bool => "a boolean",
        ValueType::String => "a string",
        ValueType::Array => "an array",
        ValueType::Object => "an object",
        ValueType::F64 if v.as_f64().is_some_and(|f| f.fract() != 0.0) => "a fraction",
        // 1e3, or an integer past 64 bits (read as a double, as JavaScript and Go's `any` do).
        ValueType::F64 => "a number with an exponent or beyond 64 bits",
        ValueType::U64 => "a number beyond the signed 64-bit range",
        _ => "a number",
    }
}

fn describe(e: &ErrorType) -> String {
    match e {
        ErrorType::ExpectedMapComma => "expected ',' or '}'".into(),
        ErrorType::ExpectedArrayComma => "expected ',' or ']'".into(),
        ErrorType::ExpectedObjectColon => "expected ':'".into(),
        ErrorType::ExpectedObjectKey => "expected a quoted key".into(),
        ErrorType::ExpectedMapEnd | ErrorType::ExpectedArray => "unexpected end".into(),
        ErrorType::Eof => "unexpected end of input".into(),
        ErrorType::TrailingData => "data after the JSON value".into(),
        ErrorType::InvalidEscape | ErrorType::InvalidUnicodeEscape => "invalid escape sequence".into(),
        ErrorType::InvalidUtf8 => "invalid UTF-8".into(),
        ErrorType::InvalidNumber | ErrorType::InvalidExponent => "invalid number".into(),
        ErrorType::KeyMustBeAString | ErrorType::BadKeyType => "object keys must be strings".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(text: &str) -> Result<(Option<String>, Option<i64>), String> {
        let mut bytes = text.as_bytes().to_vec();
        let mut buffers = Buffers::default();
        let body = object(&mut bytes, &mut buffers, &["name", "n"])?;
        Ok((body.str("name")?.map(str::to_owned), body.int("n")?))
    }

    #[test]
    fn fields() {
        assert_eq!(obj(r#"{"name":"Ada","n":3}"#), Ok((Some("Ada".into()), Some(3))));
        assert_eq!(obj(r#"{"name":"A\u00e9"}"#), Ok((Some("Aé".into()), None)));
        assert_eq!(obj(r#"{"name":null}"#), Err("name: must be a string, not null".to_owned()));
        assert_eq!(obj(r#"{"n":null}"#), Err("n: must be a whole number, not null".to_owned()));
    }

    #[test]
    fn messages_name_the_field_or_the_place() {
        let cases = [
            (r#"{"name":5}"#, "name: must be a string, not a number"),
            (r#"{"n":"3"}"#, "n: must be a whole number, not a string"),
            (r#"{"n":1.5}"#, "n: must be a whole number, not a fraction"),
            (r#"{"n":1e3}"#, "n: must be a whole number, not a number with an exponent or beyond 64 bits"),
            (
                r#"{"n":876050756799401203597312}"#,
                "n: must be a whole number, not a number with an exponent or beyond 64 bits",
            ),
            (r#"{"n":9223372036854775808}"#, "n: must be a whole number, not a number beyond the signed 64-bit range"),
            (r#"{"other":1}"#, "body: unknown field \"other\""),
            ("[1,2]", "body: must be a JSON object, not an array"),
            ("", "body: expected JSON, got an empty body"),
            (r#"{"name":"a" "n":1}"#, "body: invalid JSON at byte"),
            (r#"{"name":"a"} x"#, "body: invalid JSON"),
        ];
        for (text, want) in cases {
            let got = obj(text).unwrap_err();
            assert!(got.starts_with(want), "{text} → {got}");
        }
    }
}
