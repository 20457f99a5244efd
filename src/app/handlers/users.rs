//! /api/v1/users and /api/v1/users/{id}: list, create, get, update, delete — and the
//! summary, whose three reads run at once.

use serde::Serialize;

use super::api::{self, db_error, unexpected};
use crate::app::decode;
use crate::app::App;
use crate::db::model::{Order, User};
use crate::db::{Job, Output};
use crate::http::response::Reply;
use crate::http::route::RequestView;

const EMAIL_TAKEN: &str = "email: already taken";

#[derive(Serialize)]
struct UserPage<'a> {
    users: &'a [User],
    next_after: Option<i64>,
}

/// `GET /api/v1/users`: a page of users by id.
pub async fn list(ctx: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let Some(page) = api::page(&req, reply) else { return };
    match ctx.db.call(Job::ListUsers { page }).await {
        Ok(Output::Users(mut users)) => {
            let next_after = next_page(&mut users, page.limit, |u| u.id);
            reply.json(200, &UserPage { users: &users, next_after }, &[]);
        }
        Ok(other) => unexpected(ctx, reply, &other),
        Err(e) => db_error(ctx, reply, &e, EMAIL_TAKEN),
    }
}

/// Cuts the extra row a page query fetched; the id to continue after, if there is more.
pub fn next_page<T>(rows: &mut Vec<T>, limit: u32, id: impl Fn(&T) -> i64) -> Option<i64> {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(id)
    } else {
        None
    }
}

/// `POST /api/v1/users`: 201 with the user and its Location.
pub async fn create(ctx: &App, mut req: RequestView<'_>, reply: &mut Reply<'_>) {
    let Some(user) = api::decode_body(ctx, &mut req, reply, decode::new_user) else { return };
    let job = Job::CreateUser { name: user.name, email: user.email };
    match ctx.db.call(job).await {
        Ok(Output::User(Some(user))) => {
            let location = format!("/api/v1/users/{}", user.id);
            reply.json(201, &user, &[("Location", location.as_bytes())]);
        }
        Ok(other) => unexpected(ctx, reply, &other),
        Err(e) => db_error(ctx, reply, &e, EMAIL_TAKEN),
    }
}

/// `GET /api/v1/users/{id}`.
pub async fn get(ctx: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let id = req.id.unwrap_or_default();
    answer_item(ctx, reply, id, Job::GetUser { id }).await;
}

/// `PATCH /api/v1/users/{id}` with `name` and/or `email`.
pub async fn update(ctx: &App, mut req: RequestView<'_>, reply: &mut Reply<'_>) {
    let id = req.id.unwrap_or_default();
    let Some(change) = api::decode_body(ctx, &mut req, reply, decode::user_change) else { return };
    answer_item(ctx, reply, id, Job::UpdateUser { id, name: change.name, email: change.email }).await;
}

/// `DELETE /api/v1/users/{id}`: 204.
pub async fn delete(ctx: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let id = req.id.unwrap_or_default();
    answer_item(ctx, reply, id, Job::DeleteUser { id }).await;
}

/// The answer of a job on one user: the user, 204 for a deletion, 404 for no such user.
async fn answer_item(ctx: &App, reply: &mut Reply<'_>, id: i64, job: Job) {
    match ctx.db.call(job).await {
        Ok(Output::User(Some(user))) => reply.json(200, &user, &[]),
        Ok(Output::User(None)) | Ok(Output::Deleted(false)) => reply.error(404, &format!("user {id} not found")),
        Ok(Output::Deleted(true)) => reply.empty(204, &[]),
        Ok(other) => unexpected(ctx, reply, &other),
        Err(e) => db_error(ctx, reply, &e, EMAIL_TAKEN),
    }
}

/// The summary's orders: the newest ten.
const SUMMARY_ORDERS: u32 = 10;

/// `/api/v1/users/{id}/summary`: details, newest orders and preferences, read at once on
/// three pool threads, so the latency is the slowest read, not the sum.
pub async fn summary(ctx: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let id = req.id.unwrap_or_default();
    let submitted = ctx.db.submit(Job::GetUser { id }).and_then(|details| {
        let orders = ctx.db.submit(Job::RecentOrders { user_id: id, limit: SUMMARY_ORDERS })?;
        let preferences = ctx.db.submit(Job::GetPreferences { user_id: id })?;
        Ok((details, orders, preferences))
    });
    let (details, orders, preferences) = match submitted {
        Ok(pending) => pending,
        Err(e) => return db_error(ctx, reply, &e, ""),
    };
    let (details, orders, preferences) = (details.await, orders.await, preferences.await);
    match (details, orders, preferences) {
        (Ok(Output::User(Some(user))), Ok(Output::Orders(Some(orders))), Ok(Output::Preferences(Some(prefs)))) => {
            reply.json_with(200, |out| write_summary(out, &user, &orders, &prefs));
        }
        (Ok(Output::User(None)), _, _) => reply.error(404, &format!("user {id} not found")),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => db_error(ctx, reply, &e, ""),
        // The user was deleted between the reads.
        (_, _, Ok(Output::Preferences(None))) | (_, Ok(Output::Orders(None)), _) => {
            reply.error(404, &format!("user {id} not found"))
        }
        (other, _, _) => unexpected(ctx, reply, &other.unwrap_or(Output::Done)),
    }
}

/// `{"details":…,"orders":[…],"preferences":{…}}`, with the stored preferences JSON
/// spliced in as it is.
fn write_summary(out: &mut Vec<u8>, user: &User, orders: &[Order], preferences: &str) -> Result<(), simd_json::Error> {
    out.extend_from_slice(b"{\"details\":");
    simd_json::serde::to_writer(&mut *out, user)?;
    out.extend_from_slice(b",\"orders\":");
    simd_json::serde::to_writer(&mut *out, orders)?;
    out.extend_from_slice(b",\"preferences\":");
    out.extend_from_slice(preferences.as_bytes());
    out.push(b'}');
    Ok(())
}
