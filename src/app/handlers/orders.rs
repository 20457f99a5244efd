//! /api/v1/users/{id}/orders: a user's orders, a page at a time, and new ones.

use serde::Serialize;

use super::api::{self, db_error, unexpected};
use super::users::next_page;
use super::RequestView;
use crate::app::decode;
use crate::db::model::Order;
use crate::db::{Job, Output};
use crate::http::request::Method;
use crate::http::response::Reply;
use crate::runtime::worker::WorkerCtx;

#[derive(Serialize)]
struct OrderPage<'a> {
    orders: &'a [Order],
    next_after: Option<i64>,
}

pub async fn collection(ctx: &WorkerCtx, mut req: RequestView<'_>, reply: &mut Reply<'_>) {
    let user_id = req.id.unwrap_or_default();
    if req.head.method == Method::Post {
        return create(ctx, &mut req, reply, user_id).await;
    }
    let Some(page) = api::page(&req, reply) else { return };
    match ctx.db.call(Job::ListOrders { user_id, page }).await {
        Ok(Output::Orders(Some(mut orders))) => {
            let next_after = next_page(&mut orders, page.limit, |o| o.id);
            reply.json(200, &OrderPage { orders: &orders, next_after }, &[]);
        }
        Ok(Output::Orders(None)) => reply.error(404, &format!("user {user_id} not found")),
        Ok(other) => unexpected(ctx, reply, &other),
        Err(e) => db_error(ctx, reply, &e, ""),
    }
}

async fn create(ctx: &WorkerCtx, req: &mut RequestView<'_>, reply: &mut Reply<'_>, user_id: i64) {
    let Some(order) = api::decode_body(ctx, req, reply, decode::new_order) else { return };
    let job = Job::CreateOrder { user_id, item: order.item, quantity: order.quantity, price_cents: order.price_cents };
    match ctx.db.call(job).await {
        Ok(Output::Order(Some(order))) => reply.json(201, &order, &[]),
        Ok(Output::Order(None)) => reply.error(404, &format!("user {user_id} not found")),
        Ok(other) => unexpected(ctx, reply, &other),
        Err(e) => db_error(ctx, reply, &e, ""),
    }
}
