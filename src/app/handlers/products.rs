//! /api/v1/products and /api/v1/products/{id}: the guide's example resource
//! (docs/adding-a-resource.md), compiled and tested with the `example-resource` feature.

use simd_json_derive::Serialize;

use super::api::{self, db_error, next_page};
use crate::app::decode;
use crate::app::App;
use crate::db::model::Product;
use crate::http::response::Reply;
use crate::http::route::RequestView;

#[derive(Serialize)]
struct ProductPage<'a> {
    products: &'a [Product],
    next_after: Option<i64>,
}

/// `GET /api/v1/products`: a page of products by id.
pub(crate) async fn list(ctx: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let Some(page) = api::page(&req, reply) else { return };
    match ctx.db.list_products(page).await {
        Ok(mut products) => {
            let next_after = next_page(&mut products, page.limit, |p| p.id);
            reply.json(200, &ProductPage { products: &products, next_after }, &[]);
        }
        Err(e) => db_error(ctx, reply, &e, ""),
    }
}

/// `POST /api/v1/products`: 201 with the product and its Location.
pub(crate) async fn create(ctx: &App, mut req: RequestView<'_>, reply: &mut Reply<'_>) {
    let Some(product) = api::decode_body(ctx, &mut req, reply, decode::new_product) else { return };
    match ctx.db.create_product(product.name, product.price_cents).await {
        Ok(product) => {
            let location = format!("/api/v1/products/{}", product.id);
            reply.json(201, &product, &[("Location", location.as_bytes())]);
        }
        Err(e) => db_error(ctx, reply, &e, ""),
    }
}

/// `GET /api/v1/products/{id}`.
pub(crate) async fn get(ctx: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let id = req.id.unwrap_or_default();
    match ctx.db.get_product(id).await {
        Ok(Some(product)) => reply.json(200, &product, &[]),
        Ok(None) => reply.error(404, &format!("product {id} not found")),
        Err(e) => db_error(ctx, reply, &e, ""),
    }
}
