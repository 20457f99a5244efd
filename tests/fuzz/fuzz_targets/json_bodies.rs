//! The /api/v1 body decoders on arbitrary bytes.
//!
//! Properties: they never panic, and what they accept obeys the contract — a name of 1–100
//! characters with no surrounding space, an email with one `@` and a dotted domain,
//! quantity ≥ 1, price_cents ≥ 0, preferences a JSON object that re-parses as one; what they
//! refuse gets 400 or 413 with a message that names a field or the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore::app::decode::{self, Rejected};
use simd_json::prelude::*;
use simd_json::Buffers;

fn refusal_is_precise(r: &Rejected) {
    assert!(r.status == 400 || r.status == 413, "{r:?}");
    let field = r.message.split(':').next().unwrap_or("");
    assert!(
        ["body", "name", "email", "item", "quantity", "price_cents", "preferences"].contains(&field),
        "the message names a field: {r:?}"
    );
}

fn valid_text(s: &str, max: usize) {
    assert_eq!(s, s.trim());
    assert!((1..=max).contains(&s.chars().count()));
}

fuzz_target!(|data: &[u8]| {
    let mut buffers = Buffers::default();
    match decode::new_user(&mut data.to_vec(), &mut buffers) {
        Ok(u) => {
            valid_text(&u.name, 100);
            assert_eq!(u.email.matches('@').count(), 1);
            assert!(u.email.chars().count() <= 254);
        }
        Err(r) => refusal_is_precise(&r),
    }
    match decode::user_change(&mut data.to_vec(), &mut buffers) {
        Ok(c) => {
            assert!(c.name.is_some() || c.email.is_some());
            if let Some(n) = &c.name {
                valid_text(n, 100);
            }
        }
        Err(r) => refusal_is_precise(&r),
    }
    match decode::new_order(&mut data.to_vec(), &mut buffers) {
        Ok(o) => {
            valid_text(&o.item, 200);
            assert!(o.quantity >= 1 && o.price_cents >= 0);
        }
        Err(r) => refusal_is_precise(&r),
    }
    match decode::preferences(&mut data.to_vec(), &mut buffers) {
        Ok(json) => {
            let mut again = json.clone().into_bytes();
            let value = simd_json::to_borrowed_value(&mut again).expect("stored preferences re-parse");
            assert!(value.is_object());
        }
        Err(r) => refusal_is_precise(&r),
    }
});
