use actix_web::{get, http::header, App, HttpResponse, HttpServer};
use serde::Serialize;

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

#[get("/plaintext")]
async fn plaintext() -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CONTENT_TYPE, "text/plain")).body("Hello, World!")
}

#[get("/json")]
async fn json() -> HttpResponse {
    let body = serde_json::to_vec(&Message { message: "Hello, World!" }).unwrap();
    HttpResponse::Ok().insert_header((header::CONTENT_TYPE, "application/json")).body(body)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("ADDR").unwrap();
    HttpServer::new(|| App::new().service(plaintext).service(json)).backlog(4096).bind(addr)?.run().await
}
