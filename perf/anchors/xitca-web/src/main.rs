//! The xitca-web anchor: /plaintext and /json, and with DATABASE_URL the database routes
//! percore serves (/db, /queries?queries=N, /fortunes, /api/v1/users/{id}) the way
//! TechEmpower's xitca-web entry reaches Postgres: one xitca-postgres connection per worker
//! thread (the app's async state, built on each worker), its statements prepared once, and
//! concurrent queries pipelined on it by the client. Like that entry it serves HTTP over
//! io_uring (XITCA_IO_URING=0: tokio's epoll) and allocates with mimalloc.
use std::future::IntoFuture;
use std::time::SystemTime;

use serde::Serialize;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use xitca_postgres::iter::AsyncLendingIterator;
use xitca_postgres::types::Type;
use xitca_postgres::{Client, Execute, Postgres, Statement};
use xitca_web::body::ResponseBody;
use xitca_web::handler::handler_service;
use xitca_web::http::header::{HeaderValue, CONTENT_TYPE};
use xitca_web::http::{StatusCode, WebResponse};
use xitca_web::route::get;
use xitca_web::{App, WebContext};

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

#[derive(Serialize)]
struct World {
    id: i32,
    #[serde(rename = "randomNumber")]
    random_number: i32,
}

#[derive(Serialize)]
struct User<'a> {
    id: i64,
    name: &'a str,
    email: &'a str,
    created_at: String,
}

/// A worker's own connection and statements; `None` without DATABASE_URL.
struct Db {
    client: Client,
    world: Statement,
    fortune: Statement,
    user: Statement,
}

type State = Option<Db>;

async fn connect(url: String) -> Result<Db, xitca_postgres::Error> {
    let (client, driver) = Postgres::new(url).connect().await?;
    tokio_spawn(driver.into_future());
    let world = Statement::named("SELECT id, randomnumber FROM world WHERE id = $1", &[Type::INT4])
        .execute(&client)
        .await?
        .leak();
    let fortune = Statement::named("SELECT id, message FROM fortune", &[]).execute(&client).await?.leak();
    let user = Statement::named("SELECT id, name, email, created_at FROM users WHERE id = $1", &[Type::INT8])
        .execute(&client)
        .await?
        .leak();
    Ok(Db { client, world, fortune, user })
}

/// The driver runs beside the handlers on the worker's own runtime.
fn tokio_spawn<F: std::future::Future + 'static>(f: F) {
    tokio::task::spawn_local(async move {
        let _ = f.await;
    });
}

fn respond(status: StatusCode, kind: &'static str, body: Vec<u8>) -> WebResponse {
    let mut res = WebResponse::new(ResponseBody::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    res
}

fn json(value: &impl Serialize) -> WebResponse {
    respond(StatusCode::OK, "application/json", serde_json::to_vec(value).unwrap())
}

fn unavailable() -> WebResponse {
    respond(StatusCode::SERVICE_UNAVAILABLE, "application/json", br#"{"error":"database"}"#.to_vec())
}

async fn world(db: &Db) -> Result<World, xitca_postgres::Error> {
    let id = fastrand::i32(1..=10_000);
    let mut rows = db.world.bind([id]).query(&db.client).await?;
    let row = rows.try_next().await?.ok_or_else(|| xitca_postgres::Error::from(std::io::Error::other("no row")))?;
    Ok(World { id: row.get(0), random_number: row.get(1) })
}

async fn plaintext() -> WebResponse {
    respond(StatusCode::OK, "text/plain", b"Hello, World!".to_vec())
}

async fn message() -> WebResponse {
    json(&Message { message: "Hello, World!" })
}

async fn single_query(ctx: &WebContext<'_, State>) -> WebResponse {
    let db = ctx.state().as_ref().unwrap();
    match world(db).await {
        Ok(w) => json(&w),
        Err(_) => unavailable(),
    }
}

async fn multiple_queries(ctx: &WebContext<'_, State>) -> WebResponse {
    let db = ctx.state().as_ref().unwrap();
    let n = ctx
        .req()
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("queries="))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, 500);
    match futures_util::future::try_join_all((0..n).map(|_| world(db))).await {
        Ok(worlds) => json(&worlds),
        Err(_) => unavailable(),
    }
}

async fn fortunes(ctx: &WebContext<'_, State>) -> WebResponse {
    let db = ctx.state().as_ref().unwrap();
    let mut list: Vec<(i32, String)> = Vec::with_capacity(16);
    let result: Result<(), xitca_postgres::Error> = async {
        let mut rows = db.fortune.bind_none().query(&db.client).await?;
        while let Some(row) = rows.try_next().await? {
            list.push((row.get(0), row.get::<&str>(1).to_owned()));
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        return unavailable();
    }
    list.push((0, "Additional fortune added at request time.".to_owned()));
    list.sort_unstable_by(|a, b| a.1.cmp(&b.1));
    let mut html = String::with_capacity(1200);
    html.push_str(
        "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table><tr><th>id</th><th>message</th></tr>",
    );
    for (id, message) in &list {
        html.push_str("<tr><td>");
        html.push_str(&id.to_string());
        html.push_str("</td><td>");
        escape(&mut html, message);
        html.push_str("</td></tr>");
    }
    html.push_str("</table></body></html>");
    respond(StatusCode::OK, "text/html; charset=utf-8", html.into_bytes())
}

fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
}

async fn user_by_id(ctx: &WebContext<'_, State>) -> WebResponse {
    let db = ctx.state().as_ref().unwrap();
    let Some(Ok(id)) = ctx.req().uri().path().strip_prefix("/api/v1/users/").map(str::parse::<i64>) else {
        return respond(StatusCode::BAD_REQUEST, "application/json", br#"{"error":"bad id"}"#.to_vec());
    };
    let found: Result<Option<Vec<u8>>, xitca_postgres::Error> = async {
        let mut rows = db.user.bind([id]).query(&db.client).await?;
        Ok(match rows.try_next().await? {
            Some(row) => {
                let at: chrono::DateTime<chrono::Utc> = row.get::<SystemTime>(3).into();
                Some(
                    serde_json::to_vec(&User {
                        id: row.get(0),
                        name: row.get(1),
                        email: row.get(2),
                        created_at: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    })
                    .unwrap(),
                )
            }
            None => None,
        })
    }
    .await;
    match found {
        Ok(Some(body)) => respond(StatusCode::OK, "application/json", body),
        Ok(None) => respond(StatusCode::NOT_FOUND, "application/json", br#"{"error":"not found"}"#.to_vec()),
        Err(_) => unavailable(),
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::var("ADDR").unwrap();
    let url = std::env::var("DATABASE_URL").ok();
    let io_uring = std::env::var("XITCA_IO_URING").map_or(true, |v| v != "0");
    let app = App::new()
        .with_async_state(move || {
            let url = url.clone();
            async move {
                match url {
                    Some(url) => connect(url).await.map(Some),
                    None => Ok(None),
                }
            }
        })
        .at("/plaintext", get(handler_service(plaintext)))
        .at("/json", get(handler_service(message)))
        .at("/db", get(handler_service(single_query)))
        .at("/queries", get(handler_service(multiple_queries)))
        .at("/fortunes", get(handler_service(fortunes)))
        .at("/api/v1/users/{id}", get(handler_service(user_by_id)));
    let server = app.serve().backlog(4096);
    let server = if io_uring { server.enable_io_uring() } else { server };
    server.bind(addr)?.run().wait()
}
