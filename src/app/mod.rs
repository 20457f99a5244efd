//! The application percore serves: its [`routes`] (④ — every route declared once), the
//! [`handlers`] (⑤ — one file per resource), and how request bodies become validated
//! inputs ([`json`] reads, [`decode`] checks). Its API is described in `openapi.json`
//! beside this file.

pub mod decode;
pub mod handlers;
pub mod json;
pub mod routes;
