//! The API's resources and the rules their fields obey.
//!
//! Validation lives here, next to the types, as pure functions whose errors name the field
//! (`email: must contain one '@'`), so the HTTP layer only turns them into 400s.

use std::fmt;

use simd_json_derive::Serialize;

pub use crate::clock::Timestamp;

/// A JSON string of RFC 3339 text: digits, `-`, `:`, `T` and `Z`, nothing to escape.
impl Serialize for Timestamp {
    fn json_write<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(b"\"")?;
        writer.write_all(&self.rfc3339())?;
        writer.write_all(b"\"")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub created_at: Timestamp,
}

/// The guide's example resource (docs/adding-a-resource.md).
#[cfg(feature = "example-resource")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Product {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) price_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Order {
    pub(crate) id: i64,
    pub(crate) user_id: i64,
    pub(crate) item: String,
    pub(crate) quantity: i32,
    pub(crate) price_cents: i64,
    pub(crate) created_at: Timestamp,
}

/// A TechEmpower world row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct World {
    pub(crate) id: i32,
    #[simd_json(rename = "randomNumber")]
    pub(crate) random_number: i32,
}

/// TechEmpower's fortunes, as a page needs them: every message in one string and the rows
/// pointing into it, so the table costs two allocations rather than one a row, and sorting
/// moves 12-byte rows rather than strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Fortunes {
    text: String,
    /// (id, where its message starts in `text`, its length)
    rows: Vec<(i32, u32, u32)>,
}

impl Fortunes {
    pub(crate) fn with_capacity(rows: usize, text: usize) -> Fortunes {
        Fortunes { text: String::with_capacity(text), rows: Vec::with_capacity(rows) }
    }

    pub(crate) fn push(&mut self, id: i32, message: &str) {
        let at = self.text.len();
        self.text.push_str(message);
        // Messages are rows of a table, far below 4 GiB together.
        self.rows.push((id, at as u32, message.len() as u32));
    }

    /// Sorts the rows by message, in place.
    pub(crate) fn sort_by_message(&mut self) {
        let text = &self.text;
        self.rows.sort_unstable_by(|a, b| message(text, a).cmp(message(text, b)));
    }

    /// (id, message) in their current order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (i32, &str)> {
        self.rows.iter().map(|row| (row.0, message(&self.text, row)))
    }
}

fn message<'t>(text: &'t str, &(_, at, len): &(i32, u32, u32)) -> &'t str {
    &text[at as usize..(at + len) as usize]
}

/// A field that broke a rule: `{field}: {message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub(crate) field: &'static str,
    pub(crate) message: &'static str,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn invalid(field: &'static str, message: &'static str) -> FieldError {
    FieldError { field, message }
}

/// 1–100 characters after trimming, no control characters. Returns the trimmed name.
pub(crate) fn valid_name(raw: &str) -> Result<&str, FieldError> {
    text("name", raw, 100, "must be 1 to 100 characters")
}

/// An order's item: 1–200 characters after trimming, no control characters.
pub(crate) fn valid_item(raw: &str) -> Result<&str, FieldError> {
    text("item", raw, 200, "must be 1 to 200 characters")
}

fn text<'a>(field: &'static str, raw: &'a str, max: usize, length: &'static str) -> Result<&'a str, FieldError> {
    let s = raw.trim();
    let chars = s.chars().count();
    if chars == 0 || chars > max {
        return Err(invalid(field, length));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(s)
}

/// At most 254 characters, exactly one `@`, a non-empty local part and a dotted domain,
/// no whitespace or control characters. Returns the trimmed address.
pub(crate) fn valid_email(raw: &str) -> Result<&str, FieldError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(invalid("email", "must not be empty"));
    }
    if s.chars().count() > 254 {
        return Err(invalid("email", "must be at most 254 characters"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("email", "must not contain spaces or control characters"));
    }
    let (local, domain) = match s.split_once('@') {
        None => return Err(invalid("email", "must contain '@'")),
        Some((_, d)) if d.contains('@') => return Err(invalid("email", "must contain only one '@'")),
        Some(parts) => parts,
    };
    if local.is_empty() {
        return Err(invalid("email", "needs a name before '@'"));
    }
    let dotted = domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.') && !domain.contains("..");
    if !dotted {
        return Err(invalid("email", "needs a domain like example.com after '@'"));
    }
    Ok(s)
}

/// An order's quantity: a whole number from 1 to 2³¹−1.
pub(crate) fn valid_quantity(n: Option<i64>) -> Result<i32, FieldError> {
    n.filter(|&q| q >= 1)
        .and_then(|q| i32::try_from(q).ok())
        .ok_or(invalid("quantity", "must be a whole number from 1 to 2147483647"))
}

/// An order's price in cents: a whole number ≥ 0.
pub(crate) fn valid_price_cents(n: Option<i64>) -> Result<i64, FieldError> {
    n.filter(|&p| p >= 0).ok_or(invalid("price_cents", "must be a whole number of cents, 0 or more"))
}

/// Largest preferences object, in bytes of JSON as sent.
pub(crate) const MAX_PREFERENCES_BYTES: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(&Timestamp(0).rfc3339(), b"1970-01-01T00:00:00Z");
        assert_eq!(&Timestamp(1_767_323_045).rfc3339(), b"2026-01-02T03:04:05Z");
        let user =
            User { id: 1, name: "Ada".into(), email: "ada@example.com".into(), created_at: Timestamp(1_767_323_045) };
        assert_eq!(
            user.json_string().unwrap(),
            r#"{"id":1,"name":"Ada","email":"ada@example.com","created_at":"2026-01-02T03:04:05Z"}"#
        );
    }

    #[test]
    fn worlds_keep_their_camel_case_key() {
        let world = World { id: 4711, random_number: -8 };
        assert_eq!(world.json_string().unwrap(), r#"{"id":4711,"randomNumber":-8}"#);
    }

    /// Reads a serialized user back with simd-json's parser: every string, whatever it
    /// holds, comes back as it went in.
    fn round_trip(user: &User) -> (i64, String, String, String) {
        use simd_json::prelude::*;
        let mut json = user.json_vec().unwrap();
        let value = simd_json::to_owned_value(&mut json).unwrap();
        let text = |key: &str| value.get_str(key).unwrap().to_owned();
        (value.get_i64("id").unwrap(), text("name"), text("email"), text("created_at"))
    }

    #[test]
    fn strings_are_escaped() {
        let name = "\"quoted\" back\\slash \u{0}\u{1f}\n\t é 中 🦀 </script>".to_owned();
        let user = User { id: -3, name: name.clone(), email: "a\"b@example.com".into(), created_at: Timestamp(0) };
        let json = user.json_string().unwrap();
        assert!(json.contains(r#"\"quoted\" back\\slash \u0000\u001f\n\t é"#), "{json}");
        assert_eq!(round_trip(&user), (-3, name, "a\"b@example.com".into(), "1970-01-01T00:00:00Z".into()));
    }

    proptest::proptest! {
        #[test]
        fn any_user_round_trips(id in proptest::num::i64::ANY, name in ".*", email in ".*", at in 0i64..253_402_300_799) {
            let user = User { id, name: name.clone(), email: email.clone(), created_at: Timestamp(at) };
            let rfc3339 = String::from_utf8(Timestamp(at).rfc3339().to_vec()).unwrap();
            proptest::prop_assert_eq!(round_trip(&user), (id, name, email, rfc3339));
        }
    }

    #[test]
    fn names() {
        assert_eq!(valid_name("  Ada  "), Ok("Ada"));
        assert_eq!(valid_name(&"é".repeat(100)).map(|s| s.chars().count()), Ok(100));
        for bad in ["", "   ", &"a".repeat(101), "a\u{0}b", "line\nbreak"] {
            let e = valid_name(bad).unwrap_err();
            assert_eq!(e.field, "name", "{bad:?}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(valid_email(" ada@example.com "), Ok("ada@example.com"));
        assert_eq!(valid_email("a.b+c@sub.example.co.uk"), Ok("a.b+c@sub.example.co.uk"));
        let cases = [
            ("", "must not be empty"),
            ("ada.example.com", "must contain '@'"),
            ("a@b@example.com", "only one '@'"),
            ("@example.com", "a name before"),
            ("ada@localhost", "domain"),
            ("ada@.example.com", "domain"),
            ("ada@example.com.", "domain"),
            ("ada@example..com", "domain"),
            ("a da@example.com", "spaces"),
        ];
        for (bad, why) in cases {
            let e = valid_email(bad).unwrap_err();
            assert!(e.field == "email" && e.to_string().contains(why), "{bad:?} → {e}");
        }
        let long = format!("{}@example.com", "a".repeat(243));
        assert_eq!(long.len(), 255);
        assert!(valid_email(&long).unwrap_err().message.contains("254"));
        assert!(valid_email(&long[1..]).is_ok());
    }

    #[test]
    fn numbers() {
        assert_eq!(valid_quantity(Some(1)), Ok(1));
        assert!(valid_quantity(Some(0)).is_err());
        assert!(valid_quantity(None).is_err());
        assert!(valid_quantity(Some(1 << 31)).is_err());
        assert_eq!(valid_price_cents(Some(0)), Ok(0));
        assert!(valid_price_cents(Some(-1)).is_err());
    }
}
