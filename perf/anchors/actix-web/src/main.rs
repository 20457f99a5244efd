//! The actix-web anchor: /plaintext and /json, and with DATABASE_URL the database routes
//! percore serves (/db, /queries?queries=N, /api/v1/users/{id}) the way TechEmpower's actix
//! entry reaches Postgres: one tokio-postgres connection per worker, its statements
//! prepared once, concurrent queries pipelined on it by the client.
use std::rc::Rc;

use actix_web::{get, http::header, web, App, HttpResponse, HttpServer};
use serde::Serialize;
use tokio_postgres::{Client, NoTls, Statement};

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
struct User {
    id: i64,
    name: String,
    email: String,
    created_at: String,
}

/// A worker's own connection and statements.
struct Db {
    client: Client,
    world: Statement,
    user: Statement,
}

async fn connect(url: &str) -> Db {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    actix_web::rt::spawn(async move {
        let _ = connection.await;
    });
    let world = client.prepare("SELECT id, randomnumber FROM world WHERE id = $1").await.expect("prepare");
    let user = client.prepare("SELECT id, name, email, created_at FROM users WHERE id = $1").await.expect("prepare");
    Db { client, world, user }
}

fn json_body<T: Serialize>(value: &T) -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CONTENT_TYPE, "application/json")).body(serde_json::to_vec(value).unwrap())
}

fn unavailable() -> HttpResponse {
    HttpResponse::ServiceUnavailable().insert_header((header::CONTENT_TYPE, "application/json")).body(r#"{"error":"database"}"#)
}

async fn world(db: &Db) -> Result<World, tokio_postgres::Error> {
    let id = fastrand::i32(1..=10_000);
    let row = db.client.query_one(&db.world, &[&id]).await?;
    Ok(World { id: row.get(0), random_number: row.get(1) })
}

#[get("/plaintext")]
async fn plaintext() -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CONTENT_TYPE, "text/plain")).body("Hello, World!")
}

#[get("/json")]
async fn json() -> HttpResponse {
    json_body(&Message { message: "Hello, World!" })
}

#[get("/db")]
async fn single_query(db: web::Data<Rc<Db>>) -> HttpResponse {
    match world(&db).await {
        Ok(w) => json_body(&w),
        Err(_) => unavailable(),
    }
}

#[derive(serde::Deserialize)]
struct Queries {
    queries: Option<String>,
}

#[get("/queries")]
async fn multiple_queries(db: web::Data<Rc<Db>>, q: web::Query<Queries>) -> HttpResponse {
    let n = q.queries.as_deref().and_then(|v| v.parse::<usize>().ok()).unwrap_or(1).clamp(1, 500);
    match futures_util::future::try_join_all((0..n).map(|_| world(&db))).await {
        Ok(worlds) => json_body(&worlds),
        Err(_) => unavailable(),
    }
}

#[get("/api/v1/users/{id}")]
async fn user_by_id(db: web::Data<Rc<Db>>, id: web::Path<String>) -> HttpResponse {
    let Ok(id) = id.parse::<i64>() else {
        return HttpResponse::BadRequest().body(r#"{"error":"bad id"}"#);
    };
    match db.client.query_opt(&db.user, &[&id]).await {
        Ok(Some(row)) => {
            let at: chrono::DateTime<chrono::Utc> = row.get(3);
            json_body(&User {
                id: row.get(0),
                name: row.get(1),
                email: row.get(2),
                created_at: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            })
        }
        Ok(None) => HttpResponse::NotFound().body(r#"{"error":"not found"}"#),
        Err(_) => unavailable(),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("ADDR").unwrap();
    let url = std::env::var("DATABASE_URL").ok();
    HttpServer::new(move || {
        let app = App::new().service(plaintext).service(json);
        match url.clone() {
            None => app,
            Some(url) => app
                .data_factory(move || {
                    let url = url.clone();
                    async move { Ok::<_, ()>(Rc::new(connect(&url).await)) }
                })
                .service(single_query)
                .service(multiple_queries)
                .service(user_by_id),
        }
    })
    .backlog(4096)
    .bind(addr)?
    .run()
    .await
}
