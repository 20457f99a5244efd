//! ④ (method, path) → route and typed parameters. Pure, no I/O.
//!
//! Matching works on path segments, percent-decoded one by one (so `%2F` inside a segment
//! stays part of it). The result keeps the route's pattern (`/api/v1/users/{id}`), which is
//! what metrics and logs label by — never the raw path, which any client could use to
//! explode the number of series. An unknown path is 404; a known path with a method it
//! does not serve is 405 with `Allow`; an `{id}` that is not a positive 64-bit integer is
//! 400, after the method check.

use std::borrow::Cow;

use crate::http::query::percent_decode;
use crate::http::request::Method;

/// Every route percore serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Health,
    Livez,
    Readyz,
    Metrics,
    /// `/openapi.json`: the API's description.
    OpenApi,
    /// `/api/v1/users`: list (GET), create (POST).
    Users,
    /// `/api/v1/users/{id}`: get, update (PATCH), delete.
    User,
    UserOrders,
    UserPreferences,
    UserSummary,
    Plaintext,
    Json,
    Db,
    Queries,
    Fortunes,
    Updates,
    #[cfg(feature = "test-routes")]
    TestPanic,
    #[cfg(feature = "test-routes")]
    TestSleep,
    #[cfg(feature = "test-routes")]
    TestEcho,
    #[cfg(feature = "test-routes")]
    TestBig,
}

/// Label for requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

impl Route {
    /// Every route, in [`Route::index`] order (metrics keep one slot per route).
    pub const ALL: &'static [Route] = &[
        Route::Health,
        Route::Livez,
        Route::Readyz,
        Route::Metrics,
        Route::OpenApi,
        Route::Users,
        Route::User,
        Route::UserOrders,
        Route::UserPreferences,
        Route::UserSummary,
        Route::Plaintext,
        Route::Json,
        Route::Db,
        Route::Queries,
        Route::Fortunes,
        Route::Updates,
        #[cfg(feature = "test-routes")]
        Route::TestPanic,
        #[cfg(feature = "test-routes")]
        Route::TestSleep,
        #[cfg(feature = "test-routes")]
        Route::TestEcho,
        #[cfg(feature = "test-routes")]
        Route::TestBig,
    ];

    /// This route's position in [`Route::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The pattern, for metrics and logs.
    pub fn pattern(self) -> &'static str {
        match self {
            Route::Health => "/health",
            Route::Livez => "/livez",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::OpenApi => "/openapi.json",
            Route::Users => "/api/v1/users",
            Route::User => "/api/v1/users/{id}",
            Route::UserOrders => "/api/v1/users/{id}/orders",
            Route::UserPreferences => "/api/v1/users/{id}/preferences",
            Route::UserSummary => "/api/v1/users/{id}/summary",
            Route::Plaintext => "/plaintext",
            Route::Json => "/json",
            Route::Db => "/db",
            Route::Queries => "/queries",
            Route::Fortunes => "/fortunes",
            Route::Updates => "/updates",
            #[cfg(feature = "test-routes")]
            Route::TestPanic => "/__test/panic",
            #[cfg(feature = "test-routes")]
            Route::TestSleep => "/__test/sleep",
            #[cfg(feature = "test-routes")]
            Route::TestEcho => "/__test/echo",
            #[cfg(feature = "test-routes")]
            Route::TestBig => "/__test/big",
        }
    }

    /// Whether the handler awaits (a database job, a timer): only those get a deadline
    /// timer, so in-core routes pay nothing for HANDLER_TIMEOUT.
    pub fn is_async(self) -> bool {
        match self {
            Route::Metrics
            | Route::Users
            | Route::User
            | Route::UserOrders
            | Route::UserPreferences
            | Route::UserSummary
            | Route::Db
            | Route::Queries
            | Route::Fortunes
            | Route::Updates => true,
            #[cfg(feature = "test-routes")]
            Route::TestSleep => true,
            _ => false,
        }
    }
}

/// The methods one path serves, and the `Allow` header that lists them.
struct Methods {
    allowed: &'static [Method],
    allow: &'static str,
}

const GET: Methods = Methods { allowed: &[Method::Get, Method::Head], allow: "GET, HEAD" };
const GET_POST: Methods = Methods { allowed: &[Method::Get, Method::Head, Method::Post], allow: "GET, HEAD, POST" };
const GET_PUT: Methods = Methods { allowed: &[Method::Get, Method::Head, Method::Put], allow: "GET, HEAD, PUT" };
const GET_PATCH_DELETE: Methods =
    Methods { allowed: &[Method::Get, Method::Head, Method::Patch, Method::Delete], allow: "GET, HEAD, PATCH, DELETE" };
#[cfg(feature = "test-routes")]
const POST_PUT: Methods = Methods { allowed: &[Method::Post, Method::Put], allow: "POST, PUT" };

/// The outcome of routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Found {
        route: Route,
        id: Option<i64>,
    },
    NotFound,
    MethodNotAllowed {
        route: Route,
        allow: &'static str,
    },
    /// A path segment that should be an id is not a positive 64-bit integer.
    BadId {
        route: Route,
    },
    /// A malformed percent-escape in the path.
    BadPath,
}

/// The error answer for a request that routing turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: &'static str,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl Resolved {
    /// The error answer for anything but `Found`.
    pub fn refusal(&self) -> Option<Refusal> {
        let (status, message, allow) = match *self {
            Resolved::Found { .. } => return None,
            Resolved::NotFound => (404, "Not Found", None),
            Resolved::MethodNotAllowed { allow, .. } => (405, "Method Not Allowed", Some(allow)),
            Resolved::BadId { .. } => (400, "id: must be a positive integer", None),
            Resolved::BadPath => (400, "path: malformed percent-encoding", None),
        };
        Some(Refusal { status, message, allow })
    }

    /// The route the path matched, if it matched one (for the metrics' route label).
    pub fn route(&self) -> Option<Route> {
        match self {
            Resolved::Found { route, .. } | Resolved::MethodNotAllowed { route, .. } | Resolved::BadId { route } => {
                Some(*route)
            }
            Resolved::NotFound | Resolved::BadPath => None,
        }
    }
}

/// The routes mounted in this process.
#[derive(Debug, Clone, Copy)]
pub struct Router {
    pub bench_routes: bool,
}

impl Router {
    pub fn resolve(&self, method: Method, raw_path: &[u8]) -> Resolved {
        self.resolve_scanned(method, raw_path, raw_path.contains(&b'%'))
    }

    /// [`Self::resolve`] for a path already known to hold a `%` or not (the parser notes it
    /// in [`crate::http::request::Head::path_encoded`]), so it is not scanned twice.
    pub fn resolve_scanned(&self, method: Method, raw_path: &[u8], encoded: bool) -> Resolved {
        let path: Cow<'_, [u8]> = if encoded {
            // Decode segment by segment so an encoded slash does not split a segment.
            let mut decoded = Vec::with_capacity(raw_path.len());
            for (i, segment) in raw_path.split(|&b| b == b'/').enumerate() {
                if i > 0 {
                    decoded.push(b'/');
                }
                match percent_decode(segment, false) {
                    Ok(s) if !s.contains(&b'/') => decoded.extend_from_slice(&s),
                    _ => return Resolved::BadPath,
                }
            }
            Cow::Owned(decoded)
        } else {
            Cow::Borrowed(raw_path)
        };
        let (route, methods, id) = match self.match_path(&path) {
            Some(m) => m,
            None => return Resolved::NotFound,
        };
        if !methods.allowed.contains(&method) {
            return Resolved::MethodNotAllowed { route, allow: methods.allow };
        }
        match id {
            None => Resolved::Found { route, id: None },
            Some(segment) => match parse_id(segment) {
                Some(id) => Resolved::Found { route, id: Some(id) },
                None => Resolved::BadId { route },
            },
        }
    }

    /// The route for a decoded path, the methods it serves and its `{id}` segment.
    fn match_path<'p>(&self, path: &'p [u8]) -> Option<(Route, &'static Methods, Option<&'p [u8]>)> {
        let found = match path {
            b"/health" => (Route::Health, &GET, None),
            b"/livez" => (Route::Livez, &GET, None),
            b"/readyz" => (Route::Readyz, &GET, None),
            b"/metrics" => (Route::Metrics, &GET, None),
            b"/openapi.json" => (Route::OpenApi, &GET, None),
            b"/api/v1/users" => (Route::Users, &GET_POST, None),
            _ if path.starts_with(b"/api/v1/users/") => return self.match_user(&path[b"/api/v1/users/".len()..]),
            b"/plaintext" if self.bench_routes => (Route::Plaintext, &GET, None),
            b"/json" if self.bench_routes => (Route::Json, &GET, None),
            b"/db" if self.bench_routes => (Route::Db, &GET, None),
            b"/queries" if self.bench_routes => (Route::Queries, &GET, None),
            b"/fortunes" if self.bench_routes => (Route::Fortunes, &GET, None),
            b"/updates" if self.bench_routes => (Route::Updates, &GET, None),
            #[cfg(feature = "test-routes")]
            b"/__test/panic" => (Route::TestPanic, &GET, None),
            #[cfg(feature = "test-routes")]
            b"/__test/sleep" => (Route::TestSleep, &GET, None),
            #[cfg(feature = "test-routes")]
            b"/__test/echo" => (Route::TestEcho, &POST_PUT, None),
            #[cfg(feature = "test-routes")]
            b"/__test/big" => (Route::TestBig, &GET, None),
            _ => return None,
        };
        Some(found)
    }
}

impl Router {
    /// `{id}`, `{id}/orders`, `{id}/preferences`, `{id}/summary` under `/api/v1/users/`.
    fn match_user<'p>(&self, rest: &'p [u8]) -> Option<(Route, &'static Methods, Option<&'p [u8]>)> {
        let (id, tail) = match memchr::memchr(b'/', rest) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, &b""[..]),
        };
        let (route, methods) = match tail {
            b"" => (Route::User, &GET_PATCH_DELETE),
            b"/orders" => (Route::UserOrders, &GET_POST),
            b"/preferences" => (Route::UserPreferences, &GET_PUT),
            b"/summary" => (Route::UserSummary, &GET),
            _ => return None,
        };
        Some((route, methods, Some(id)))
    }
}

/// A positive 64-bit integer in plain decimal: no sign, no leading zeros, no spaces.
pub fn parse_id(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 19 || s[0] == b'0' || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse::<i64>().ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Router = Router { bench_routes: true };

    #[test]
    fn static_routes() {
        assert_eq!(ALL.resolve(Method::Get, b"/health"), Resolved::Found { route: Route::Health, id: None });
        assert_eq!(ALL.resolve(Method::Head, b"/livez"), Resolved::Found { route: Route::Livez, id: None });
        assert_eq!(ALL.resolve(Method::Get, b"/plaintext"), Resolved::Found { route: Route::Plaintext, id: None });
        assert_eq!(ALL.resolve(Method::Get, b"/%68ealth"), Resolved::Found { route: Route::Health, id: None });
    }

    #[test]
    fn unknown_paths_and_methods() {
        assert_eq!(ALL.resolve(Method::Get, b"/nope"), Resolved::NotFound);
        assert_eq!(ALL.resolve(Method::Get, b"/health/"), Resolved::NotFound);
        assert_eq!(ALL.resolve(Method::Get, b"/"), Resolved::NotFound);
        assert_eq!(
            ALL.resolve(Method::Post, b"/health"),
            Resolved::MethodNotAllowed { route: Route::Health, allow: "GET, HEAD" }
        );
        // A method token percore does not know is refused like any other the route does not
        // serve (405 with Allow), as Go's ServeMux and actix-web answer; 501 is for codings.
        assert_eq!(
            ALL.resolve(Method::Other, b"/health"),
            Resolved::MethodNotAllowed { route: Route::Health, allow: "GET, HEAD" }
        );
        assert_eq!(ALL.resolve(Method::Other, b"/nope"), Resolved::NotFound);
        let refused = ALL.resolve(Method::Post, b"/health").refusal().unwrap();
        assert_eq!((refused.status, refused.allow), (405, Some("GET, HEAD")));
        assert_eq!(ALL.resolve(Method::Get, b"/health").refusal(), None);
        assert_eq!(ALL.resolve(Method::Get, b"/he%zzalth"), Resolved::BadPath);
        assert_eq!(ALL.resolve(Method::Get, b"/health%2F"), Resolved::BadPath);
    }

    #[test]
    fn bench_routes_only_when_mounted() {
        let plain = Router { bench_routes: false };
        assert_eq!(plain.resolve(Method::Get, b"/plaintext"), Resolved::NotFound);
        assert_eq!(plain.resolve(Method::Get, b"/json"), Resolved::NotFound);
    }

    #[test]
    fn api_routes_and_their_ids() {
        let found = |route, id| Resolved::Found { route, id: Some(id) };
        assert_eq!(ALL.resolve(Method::Get, b"/api/v1/users"), Resolved::Found { route: Route::Users, id: None });
        assert_eq!(ALL.resolve(Method::Post, b"/api/v1/users"), Resolved::Found { route: Route::Users, id: None });
        assert_eq!(ALL.resolve(Method::Patch, b"/api/v1/users/42"), found(Route::User, 42));
        assert_eq!(ALL.resolve(Method::Delete, b"/api/v1/users/42"), found(Route::User, 42));
        assert_eq!(ALL.resolve(Method::Post, b"/api/v1/users/7/orders"), found(Route::UserOrders, 7));
        assert_eq!(ALL.resolve(Method::Put, b"/api/v1/users/7/preferences"), found(Route::UserPreferences, 7));
        assert_eq!(ALL.resolve(Method::Get, b"/api/v1/users/7/summary"), found(Route::UserSummary, 7));
        assert_eq!(ALL.resolve(Method::Get, b"/api/v1/users/abc"), Resolved::BadId { route: Route::User });
        assert_eq!(ALL.resolve(Method::Get, b"/api/v1/users/0/orders"), Resolved::BadId { route: Route::UserOrders });
        assert_eq!(ALL.resolve(Method::Get, b"/api/v1/users/-1"), Resolved::BadId { route: Route::User });
        assert_eq!(
            ALL.resolve(Method::Get, b"/api/v1/users/99999999999999999999"),
            Resolved::BadId { route: Route::User }
        );
        assert_eq!(
            ALL.resolve(Method::Post, b"/api/v1/users/abc"),
            Resolved::MethodNotAllowed { route: Route::User, allow: "GET, HEAD, PATCH, DELETE" }
        );
        assert_eq!(
            ALL.resolve(Method::Delete, b"/api/v1/users"),
            Resolved::MethodNotAllowed { route: Route::Users, allow: "GET, HEAD, POST" }
        );
        assert_eq!(ALL.resolve(Method::Get, b"/api/v1/users/1/nope"), Resolved::NotFound);
        assert_eq!(ALL.resolve(Method::Get, b"/api/v1/users/1/orders/"), Resolved::NotFound);
        assert_eq!(ALL.resolve(Method::Get, b"/api/v1/users/"), Resolved::BadId { route: Route::User });
    }

    #[test]
    fn route_indices_follow_the_list() {
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
    }

    #[test]
    fn ids() {
        assert_eq!(parse_id(b"1"), Some(1));
        assert_eq!(parse_id(b"9223372036854775807"), Some(i64::MAX));
        for bad in
            [&b""[..], b"0", b"-1", b"+1", b"01", b"1.0", b"9223372036854775808", b"99999999999999999999", b"1a", b" 1"]
        {
            assert_eq!(parse_id(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn every_route_has_a_pattern_that_routes_back_to_it() {
        let routes = [Route::Health, Route::Livez, Route::Readyz, Route::Users, Route::Plaintext, Route::Json];
        for route in routes {
            assert_eq!(ALL.resolve(Method::Get, route.pattern().as_bytes()), Resolved::Found { route, id: None });
        }
        for route in [Route::User, Route::UserOrders, Route::UserPreferences, Route::UserSummary] {
            let path = route.pattern().replace("{id}", "5");
            assert_eq!(ALL.resolve(Method::Get, path.as_bytes()), Resolved::Found { route, id: Some(5) });
        }
    }
}
