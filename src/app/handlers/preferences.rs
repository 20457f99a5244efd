//! /api/v1/users/{id}/preferences: one free-form JSON object of at most 4 KiB per user.

use super::api::{self, db_error, unexpected};
use super::RequestView;
use crate::app::decode;
use crate::db::{Job, Output};
use crate::http::request::Method;
use crate::http::response::{Reply, JSON};
use crate::runtime::worker::WorkerCtx;

pub async fn item(ctx: &WorkerCtx, mut req: RequestView<'_>, reply: &mut Reply<'_>) {
    let user_id = req.id.unwrap_or_default();
    let job = if req.head.method == Method::Put {
        match put_job(ctx, &mut req, reply, user_id) {
            Some(job) => job,
            None => return,
        }
    } else {
        Job::GetPreferences { user_id }
    };
    match ctx.db.call(job).await {
        Ok(Output::Preferences(Some(json))) => reply.send(200, JSON, json.as_bytes(), &[]),
        Ok(Output::Preferences(None)) => reply.error(404, &format!("user {user_id} not found")),
        Ok(other) => unexpected(ctx, reply, &other),
        Err(e) => db_error(ctx, reply, &e, ""),
    }
}

/// Validates the body (a JSON object of at most 4 KiB) and stores it re-encoded compactly.
fn put_job(ctx: &WorkerCtx, req: &mut RequestView<'_>, reply: &mut Reply<'_>, user_id: i64) -> Option<Job> {
    let json = api::decode_body(ctx, req, reply, decode::preferences)?;
    Some(Job::PutPreferences { user_id, json })
}
