//! /api/v1/users and /api/v1/users/{id}: list, create, get, update, delete — and the
//! summary, whose three reads run at once.

use simd_json_derive::Serialize;

use super::api::{self, db_error, next_page};
use crate::app::decode;
use crate::app::App;
use crate::db::model::{Order, User};
use crate::db::DbError;
use crate::http::response::Reply;
use crate::http::route::RequestView;

const EMAIL_TAKEN: &str = "email: already taken";

#[derive(Serialize)]
struct UserPage<'a> {
    users: &'a [User],
    next_after: Option<i64>,
}

/// `GET /api/v1/users`: a page of users by id.
pub(crate) async fn list(ctx: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let Some(page) = api::page(&req, reply) else { return };
    match ctx.db.list_users(page).await {
        Ok(mut users) => {
            let next_after = next_page(&mut users, page.limit, |u| u.id);
            reply.json(200, &UserPage { users: &users, next_after }, &[]);
        }
        Err(e) => db_error(ctx, reply, &e, EMAIL_TAKEN),
    }
}

/// `POST /api/v1/users`: 201 with the user and its Location.
pub(crate) async fn create(ctx: &App, mut req: RequestView<'_>, reply: &mut Reply<'_>) {
    let Some(user) = api::decode_body(ctx, &mut req, reply, decode::new_user) else { return };
    match ctx.db.create_user(user.name, user.email).await {
        Ok(user) => {
            let location = format!("/api/v1/users/{}", user.id);
            reply.json(201, &user, &[("Location", location.as_bytes())]);
        }
        Err(e) => db_error(ctx, reply, &e, EMAIL_TAKEN),
    }
}

/// `GET /api/v1/users/{id}`.
pub(crate) async fn get(ctx: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let id = req.id.unwrap_or_default();
    answer_user(ctx, reply, id, ctx.db.get_user(id).await);
}

/// `PATCH /api/v1/users/{id}` with `name` and/or `email`.
pub(crate) async fn update(ctx: &App, mut req: RequestView<'_>, reply: &mut Reply<'_>) {
    let id = req.id.unwrap_or_default();
    let Some(change) = api::decode_body(ctx, &mut req, reply, decode::user_change) else { return };
    answer_user(ctx, reply, id, ctx.db.update_user(id, change.name, change.email).await);
}

/// `DELETE /api/v1/users/{id}`: 204.
pub(crate) async fn delete(ctx: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let id = req.id.unwrap_or_default();
    match ctx.db.delete_user(id).await {
        Ok(true) => reply.empty(204, &[]),
        Ok(false) => reply.error(404, &format!("user {id} not found")),
        Err(e) => db_error(ctx, reply, &e, EMAIL_TAKEN),
    }
}

/// The user, or 404 for no such user.
fn answer_user(ctx: &App, reply: &mut Reply<'_>, id: i64, answer: Result<Option<User>, DbError>) {
    match answer {
        Ok(Some(user)) => reply.json(200, &user, &[]),
        Ok(None) => reply.error(404, &format!("user {id} not found")),
        Err(e) => db_error(ctx, reply, &e, EMAIL_TAKEN),
    }
}

/// The summary's orders: the newest ten.
const SUMMARY_ORDERS: u32 = 10;

/// `/api/v1/users/{id}/summary`: details, newest orders and preferences, read at once on
/// three pool threads, so the latency is the slowest read, not the sum.
pub(crate) async fn summary(ctx: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let id = req.id.unwrap_or_default();
    // All three submitted before any is awaited: they run at once.
    let (details, orders, preferences) =
        (ctx.db.get_user(id), ctx.db.recent_orders(id, SUMMARY_ORDERS), ctx.db.get_preferences(id));
    match (details.await, orders.await, preferences.await) {
        (Ok(Some(user)), Ok(orders), Ok(Some(prefs))) => {
            reply.json_with(200, |out| write_summary(out, &user, &orders, &prefs));
        }
        (Ok(None), _, _) => reply.error(404, &format!("user {id} not found")),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => db_error(ctx, reply, &e, ""),
        // The user was deleted between the reads.
        (_, _, Ok(None)) => reply.error(404, &format!("user {id} not found")),
    }
}

/// `{"details":…,"orders":[…],"preferences":{…}}`, with the stored preferences JSON
/// spliced in as it is.
fn write_summary(out: &mut Vec<u8>, user: &User, orders: &[Order], preferences: &str) -> std::io::Result<()> {
    out.extend_from_slice(b"{\"details\":");
    user.json_write(out)?;
    out.extend_from_slice(b",\"orders\":");
    orders.json_write(out)?;
    out.extend_from_slice(b",\"preferences\":");
    out.extend_from_slice(preferences.as_bytes());
    out.push(b'}');
    Ok(())
}
