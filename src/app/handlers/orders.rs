//! /api/v1/users/{id}/orders: a user's orders, a page at a time, and new ones.

use simd_json_derive::Serialize;

use super::api::{self, db_error, next_page};
use crate::app::decode;
use crate::app::App;
use crate::db::model::Order;
use crate::http::response::Reply;
use crate::http::route::RequestView;

#[derive(Serialize)]
struct OrderPage<'a> {
    orders: &'a [Order],
    next_after: Option<i64>,
}

/// `GET /api/v1/users/{id}/orders`: a page of the user's orders.
pub(crate) async fn list(ctx: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let user_id = req.id.unwrap_or_default();
    let Some(page) = api::page(&req, reply) else { return };
    match ctx.db.list_orders(user_id, page).await {
        Ok(Some(mut orders)) => {
            let next_after = next_page(&mut orders, page.limit, |o| o.id);
            reply.json(200, &OrderPage { orders: &orders, next_after }, &[]);
        }
        Ok(None) => reply.error(404, &format!("user {user_id} not found")),
        Err(e) => db_error(ctx, reply, &e, ""),
    }
}

/// `POST /api/v1/users/{id}/orders`: 201 with the order.
pub(crate) async fn create(ctx: &App, mut req: RequestView<'_>, reply: &mut Reply<'_>) {
    let user_id = req.id.unwrap_or_default();
    let Some(order) = api::decode_body(ctx, &mut req, reply, decode::new_order) else { return };
    match ctx.db.create_order(user_id, order.item, order.quantity, order.price_cents).await {
        Ok(Some(order)) => reply.json(201, &order, &[]),
        Ok(None) => reply.error(404, &format!("user {user_id} not found")),
        Err(e) => db_error(ctx, reply, &e, ""),
    }
}
