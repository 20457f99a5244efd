//! Request bodies to validated inputs: the /api/v1 routes' JSON bodies, decoded and checked
//! field by field. Pure — bytes in, inputs or a precise complaint out — so the fuzzer
//! (tests/fuzz) and the unit tests drive exactly what the handlers run.

use simd_json::prelude::*;
use simd_json::Buffers;

use crate::app::json;
use crate::db::model::{self, MAX_PREFERENCES_BYTES};

/// Why a body was refused: the status (400 or 413) and the message naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub status: u16,
    pub message: String,
}

impl From<String> for Rejected {
    fn from(message: String) -> Self {
        Rejected { status: 400, message }
    }
}

impl From<model::FieldError> for Rejected {
    fn from(e: model::FieldError) -> Self {
        Rejected { status: 400, message: e.to_string() }
    }
}

/// POST /api/v1/users.
#[derive(Debug, PartialEq, Eq)]
pub struct NewUser {
    pub name: String,
    pub email: String,
}

/// PATCH /api/v1/users/{id}: one field or both.
#[derive(Debug, PartialEq, Eq)]
pub struct UserChange {
    pub name: Option<String>,
    pub email: Option<String>,
}

/// POST /api/v1/users/{id}/orders.
#[derive(Debug, PartialEq, Eq)]
pub struct NewOrder {
    pub item: String,
    pub quantity: i32,
    pub price_cents: i64,
}

/// POST /api/v1/products: the guide's example resource (docs/adding-a-resource.md).
#[cfg(feature = "example-resource")]
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NewProduct {
    pub(crate) name: String,
    pub(crate) price_cents: i64,
}

#[cfg(feature = "example-resource")]
const PRODUCT_FIELDS: &[&str] = &["name", "price_cents"];

#[cfg(feature = "example-resource")]
pub(crate) fn new_product(body: &mut [u8], buffers: &mut Buffers) -> Result<NewProduct, Rejected> {
    let body = json::object(body, buffers, PRODUCT_FIELDS)?;
    let name = model::valid_name(body.required_str("name")?)?.to_owned();
    Ok(NewProduct { name, price_cents: model::valid_price_cents(body.int("price_cents")?)? })
}

const USER_FIELDS: &[&str] = &["name", "email"];
const ORDER_FIELDS: &[&str] = &["item", "quantity", "price_cents"];

pub fn new_user(body: &mut [u8], buffers: &mut Buffers) -> Result<NewUser, Rejected> {
    let body = json::object(body, buffers, USER_FIELDS)?;
    let (name, email) = (body.required_str("name")?, body.required_str("email")?);
    Ok(NewUser { name: model::valid_name(name)?.to_owned(), email: model::valid_email(email)?.to_owned() })
}

pub fn user_change(body: &mut [u8], buffers: &mut Buffers) -> Result<UserChange, Rejected> {
    let body = json::object(body, buffers, USER_FIELDS)?;
    let (name, email) = (body.str("name")?, body.str("email")?);
    if name.is_none() && email.is_none() {
        return Err(Rejected::from("body: expected name, email or both".to_owned()));
    }
    Ok(UserChange {
        name: name.map(model::valid_name).transpose()?.map(str::to_owned),
        email: email.map(model::valid_email).transpose()?.map(str::to_owned),
    })
}

pub fn new_order(body: &mut [u8], buffers: &mut Buffers) -> Result<NewOrder, Rejected> {
    let body = json::object(body, buffers, ORDER_FIELDS)?;
    let item = model::valid_item(body.required_str("item")?)?.to_owned();
    let quantity = model::valid_quantity(body.int("quantity")?)?;
    let price_cents = model::valid_price_cents(body.int("price_cents")?)?;
    Ok(NewOrder { item, quantity, price_cents })
}

/// PUT /api/v1/users/{id}/preferences: a JSON object of at most 4 KiB as sent, returned
/// re-encoded compactly for storage.
pub fn preferences(body: &mut [u8], buffers: &mut Buffers) -> Result<String, Rejected> {
    if body.len() > MAX_PREFERENCES_BYTES {
        return Err(Rejected { status: 413, message: "preferences: must be at most 4096 bytes of JSON".to_owned() });
    }
    let value = json::parse(body, buffers)?;
    if !value.is_object() {
        return Err(Rejected::from("preferences: must be a JSON object".to_owned()));
    }
    Ok(value.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffers() -> Buffers {
        Buffers::default()
    }

    fn decode<T>(f: fn(&mut [u8], &mut Buffers) -> Result<T, Rejected>, body: &str) -> Result<T, Rejected> {
        f(&mut body.as_bytes().to_vec(), &mut buffers())
    }

    fn refused<T: std::fmt::Debug>(r: Result<T, Rejected>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.status, 400);
        e.message
    }

    #[test]
    fn users() {
        assert_eq!(
            decode(new_user, r#"{"name":"  Ada ","email":"ada@example.com"}"#),
            Ok(NewUser { name: "Ada".into(), email: "ada@example.com".into() })
        );
        assert!(refused(decode(new_user, r#"{"name":"Ada"}"#)).starts_with("email: is required"));
        assert!(refused(decode(new_user, r#"{"name":"","email":"a@b.c"}"#)).starts_with("name:"));
        assert!(refused(decode(new_user, r#"{"name":"A","email":"a@b"}"#)).starts_with("email:"));
        assert!(refused(decode(new_user, r#"{"name":"A","email":"a@b.c","admin":true}"#)).contains("unknown field"));
        assert!(refused(decode(new_user, r#"{"name":1,"email":"a@b.c"}"#)).starts_with("name: must be a string"));
        assert!(refused(decode(new_user, r#"["name"]"#)).starts_with("body: must be a JSON object"));
        assert!(refused(decode(new_user, r#"{"name":"A",}"#)).starts_with("body: invalid JSON at byte"));
    }

    #[test]
    fn user_changes() {
        assert_eq!(decode(user_change, r#"{"name":"B"}"#), Ok(UserChange { name: Some("B".into()), email: None }));
        assert!(refused(decode(user_change, "{}")).contains("expected name, email or both"));
        assert!(refused(decode(user_change, r#"{}"#)).contains("expected name"));
        assert_eq!(refused(decode(user_change, r#"{"email":null,"name":"0"}"#)), "email: must be a string, not null");
    }

    #[test]
    fn orders() {
        assert_eq!(
            decode(new_order, r#"{"item":"tea","quantity":2,"price_cents":0}"#),
            Ok(NewOrder { item: "tea".into(), quantity: 2, price_cents: 0 })
        );
        for (body, field) in [
            (r#"{"item":"tea","quantity":0,"price_cents":1}"#, "quantity"),
            (r#"{"item":"tea","quantity":1.5,"price_cents":1}"#, "quantity"),
            (r#"{"item":"tea","quantity":"2","price_cents":1}"#, "quantity"),
            (r#"{"item":"tea","quantity":2147483648,"price_cents":1}"#, "quantity"),
            (r#"{"item":"tea","quantity":1,"price_cents":-1}"#, "price_cents"),
            (r#"{"item":"tea","quantity":1,"price_cents":1e3}"#, "price_cents"),
            (r#"{"item":"tea","quantity":1,"price_cents":18446744073709551615}"#, "price_cents"),
            (r#"{"quantity":1,"price_cents":1}"#, "item"),
        ] {
            assert!(refused(decode(new_order, body)).starts_with(field), "{body}");
        }
    }

    #[test]
    fn preferences_are_objects_of_at_most_4_kib() {
        assert_eq!(decode(preferences, r#"{ "theme" : "dark" }"#), Ok(r#"{"theme":"dark"}"#.to_owned()));
        assert!(refused(decode(preferences, "[1]")).contains("must be a JSON object"));
        let big = format!(r#"{{"k":"{}"}}"#, "x".repeat(4096));
        assert_eq!(decode(preferences, &big).unwrap_err().status, 413);
    }

    /// Found by schemathesis: any JSON number is valid JSON, however large; one past 64 bits
    /// is kept as a double, as a JavaScript client or Go's encoding/json would read it.
    #[test]
    fn preferences_take_numbers_of_any_size() {
        let stored = decode(preferences, r#"{"big":876050756799401203597312,"tiny":-1.1125369292536007e-308}"#);
        let mut stored = stored.unwrap().into_bytes();
        let stored = simd_json::to_owned_value(&mut stored).unwrap();
        assert_eq!(stored.get("big").and_then(|v| v.as_f64()), Some(876050756799401203597312.0));
        assert_eq!(stored.get("tiny").and_then(|v| v.as_f64()), Some(-1.1125369292536007e-308));
    }
}
