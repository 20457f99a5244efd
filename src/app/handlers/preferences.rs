//! /api/v1/users/{id}/preferences: one free-form JSON object of at most 4 KiB per user.

use super::api::{self, db_error};
use crate::app::decode;
use crate::app::App;
use crate::db::DbError;
use crate::http::response::{Reply, JSON};
use crate::http::route::RequestView;

/// `GET /api/v1/users/{id}/preferences`.
pub(crate) async fn get(ctx: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let user_id = req.id.unwrap_or_default();
    answer(ctx, reply, user_id, ctx.db.get_preferences(user_id).await);
}

/// `PUT /api/v1/users/{id}/preferences`: a JSON object of at most 4 KiB, stored re-encoded
/// compactly.
pub(crate) async fn put(ctx: &App, mut req: RequestView<'_>, reply: &mut Reply<'_>) {
    let user_id = req.id.unwrap_or_default();
    let Some(json) = api::decode_body(ctx, &mut req, reply, decode::preferences) else { return };
    answer(ctx, reply, user_id, ctx.db.put_preferences(user_id, json).await);
}

/// The preferences JSON as stored, or 404 for no such user.
fn answer(ctx: &App, reply: &mut Reply<'_>, user_id: i64, answer: Result<Option<String>, DbError>) {
    match answer {
        Ok(Some(json)) => reply.send(200, JSON, json.as_bytes(), &[]),
        Ok(None) => reply.error(404, &format!("user {user_id} not found")),
        Err(e) => db_error(ctx, reply, &e, ""),
    }
}
