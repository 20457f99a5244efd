//! ④ Every route percore serves, each declared once: its pattern, when it is mounted, and
//! for each method the handler and how it answers: `now` in place, `wait` awaiting (a
//! scrape, a timer), `store` awaiting the database (and refused at the door while the store
//! is overloaded).
//!
//! `routes!` turns the table into the [`Route`] enum, the router's rows, the `Allow` lists,
//! the metrics labels ([`Route::pattern`]), and the two dispatch functions — so none of them
//! can disagree with another. `tests/it/openapi.rs` checks the table against `openapi.json`.
//!
//! A handler is `fn(&App, RequestView, &mut Reply)` when it answers in the worker, or an
//! `async fn` of the same arguments when it waits. `HEAD` runs the `GET` handler (the reply
//! drops the body).

#[cfg(feature = "example-resource")]
use super::handlers::products;
#[cfg(feature = "test-routes")]
use super::handlers::testing;
use super::handlers::{bench, health, metrics, orders, preferences, users};
use super::App;
use crate::http::request::Method;
use crate::http::response::Reply;
use crate::http::route::{Matcher, Methods, Pattern, RequestView};

/// When a route is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mount {
    Always,
    /// With BENCH_ROUTES=1: the TechEmpower test types.
    Bench,
}

/// The TechEmpower routes keep exactly the headers the benchmark specifies; every other
/// answer says `Cache-Control: no-store`. A constant per route: no test at run time.
#[inline(always)]
fn cache_policy(mount: Mount, reply: &mut Reply<'_>) {
    if mount == Mount::Bench {
        reply.allow_caching();
    }
}

/// `"GET, HEAD, "` → `"GET, HEAD"`, at compile time.
const fn trim_list(list: &'static str) -> &'static str {
    let (head, _) = list.as_bytes().split_at(list.len() - 2);
    match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(_) => panic!("a method list is ASCII"),
    }
}

macro_rules! method {
    (GET) => {
        Method::Get
    };
    (HEAD) => {
        Method::Head
    };
    (POST) => {
        Method::Post
    };
    (PUT) => {
        Method::Put
    };
    (PATCH) => {
        Method::Patch
    };
    (DELETE) => {
        Method::Delete
    };
}

/// A `now` handler's call in [`handle_now`]; a `wait` handler never gets there.
macro_rules! handle_now {
    (now, $handler:path, $app:ident, $req:ident, $reply:ident) => {
        $handler($app, $req, $reply)
    };
    ($waits:ident, $handler:path, $app:ident, $req:ident, $reply:ident) => {{
        let _ = ($app, $reply);
        unreachable!("a waiting route is handled through routes::handle")
    }};
}

/// Any handler, in [`handle`].
macro_rules! handle_any {
    (now, $handler:path, $app:ident, $req:ident, $reply:ident) => {
        $handler($app, $req, $reply)
    };
    (wait, $handler:path, $app:ident, $req:ident, $reply:ident) => {
        $handler($app, $req, $reply).await
    };
    (store, $handler:path, $app:ident, $req:ident, $reply:ident) => {
        $handler($app, $req, $reply).await
    };
}

macro_rules! is_wait {
    (now) => {
        false
    };
    (wait) => {
        true
    };
    (store) => {
        true
    };
}

macro_rules! is_store {
    (now) => {
        false
    };
    (wait) => {
        false
    };
    (store) => {
        true
    };
}

macro_rules! routes {
    ($(
        $(#[doc = $doc:literal])*
        $(#[cfg($cfg:meta)])?
        $name:ident $pattern:literal $mount:ident {
            $( $($method:ident)+ => $kind:ident $handler:path ),+ $(,)?
        }
    )*) => {
        /// Every route percore serves.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Route {
            $( $(#[doc = $doc])* $(#[cfg($cfg)])? $name, )*
        }

        impl Route {
            /// Every route, in [`Route::index`] order (metrics keep one slot per route).
            pub const ALL: &'static [Route] = &[ $( $(#[cfg($cfg)])? Route::$name, )* ];

            /// The route's patterns in [`Route::index`] order: the metrics' `route` labels.
            pub(crate) const PATTERNS: &'static [&'static str] = &[ $( $(#[cfg($cfg)])? $pattern, )* ];

            /// This route's position in [`Route::ALL`].
            pub(crate) fn index(self) -> usize {
                self as usize
            }

            /// The pattern, for metrics and logs.
            pub fn pattern(self) -> &'static str {
                match self { $( $(#[cfg($cfg)])? Route::$name => $pattern, )* }
            }

            pub(crate) fn mount(self) -> Mount {
                match self { $( $(#[cfg($cfg)])? Route::$name => Mount::$mount, )* }
            }

            /// The methods this route serves and its `Allow` list.
            pub(crate) fn methods(self) -> Methods {
                match self {
                    $( $(#[cfg($cfg)])? Route::$name => Methods {
                        allowed: &[ $( $( method!($method), )+ )+ ],
                        allow: trim_list(concat!( $( $( stringify!($method), ", ", )+ )+ )),
                    }, )*
                }
            }

            /// Whether the handler for `method` awaits: only those get a deadline timer and
            /// a watch for the client leaving, so in-core routes pay for neither.
            #[inline]
            pub(crate) fn waits(self, method: Method) -> bool {
                match self { $( $(#[cfg($cfg)])? Route::$name => $name::waits(method), )* }
            }

            /// Whether the handler for `method` works on the store: such a request is
            /// refused at the door while the store is overloaded (codel.rs).
            #[inline]
            pub(crate) fn uses_store(self, method: Method) -> bool {
                match self { $( $(#[cfg($cfg)])? Route::$name => $name::uses_store(method), )* }
            }
        }

        // One module per route holds its method dispatch, so a route's `cfg` covers it whole.
        $(
            $(#[cfg($cfg)])?
            #[allow(non_snake_case)]
            mod $name {
                use super::*;

                #[inline]
                pub(super) fn waits(method: Method) -> bool {
                    #[allow(unreachable_patterns)]
                    match method {
                        $( $(method!($method))|+ => is_wait!($kind), )+
                        _ => false,
                    }
                }

                #[inline]
                pub(super) fn uses_store(method: Method) -> bool {
                    #[allow(unreachable_patterns)]
                    match method {
                        $( $(method!($method))|+ => is_store!($kind), )+
                        _ => false,
                    }
                }

                #[inline]
                pub(super) fn handle_now(app: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
                    cache_policy(Mount::$mount, reply);
                    #[allow(unreachable_patterns)]
                    match req.method() {
                        $( $(method!($method))|+ => handle_now!($kind, $handler, app, req, reply), )+
                        _ => unreachable!("the router resolved a method the route does not serve"),
                    }
                }

                pub(super) async fn handle(app: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
                    cache_policy(Mount::$mount, reply);
                    #[allow(unreachable_patterns)]
                    match req.method() {
                        $( $(method!($method))|+ => handle_any!($kind, $handler, app, req, reply), )+
                        _ => unreachable!("the router resolved a method the route does not serve"),
                    }
                }
            }
        )*

        /// Runs an in-core handler.
        #[inline]
        pub(crate) fn handle_now(app: &App, route: Route, req: RequestView<'_>, reply: &mut Reply<'_>) {
            match route { $( $(#[cfg($cfg)])? Route::$name => $name::handle_now(app, req, reply), )* }
        }

        /// Runs any handler, awaiting the ones that wait.
        pub(crate) async fn handle(app: &App, route: Route, req: RequestView<'_>, reply: &mut Reply<'_>) {
            match route { $( $(#[cfg($cfg)])? Route::$name => $name::handle(app, req, reply).await, )* }
        }
    };
}

routes! {
    Health "/health" Always { GET HEAD => now health::health }
    Livez "/livez" Always { GET HEAD => now health::livez }
    Readyz "/readyz" Always { GET HEAD => now health::readyz }
    Metrics "/metrics" Always { GET HEAD => wait metrics::metrics }
    /// `/openapi.json`: the API's description.
    OpenApi "/openapi.json" Always { GET HEAD => now health::openapi }
    Users "/api/v1/users" Always { GET HEAD => store users::list, POST => store users::create }
    User "/api/v1/users/{id}" Always {
        GET HEAD => store users::get,
        PATCH => store users::update,
        DELETE => store users::delete,
    }
    UserOrders "/api/v1/users/{id}/orders" Always { GET HEAD => store orders::list, POST => store orders::create }
    UserPreferences "/api/v1/users/{id}/preferences" Always {
        GET HEAD => store preferences::get,
        PUT => store preferences::put,
    }
    UserSummary "/api/v1/users/{id}/summary" Always { GET HEAD => store users::summary }
    /// The guide's example resource (docs/adding-a-resource.md).
    #[cfg(feature = "example-resource")]
    Products "/api/v1/products" Always { GET HEAD => store products::list, POST => store products::create }
    #[cfg(feature = "example-resource")]
    Product "/api/v1/products/{id}" Always { GET HEAD => store products::get }
    Plaintext "/plaintext" Bench { GET HEAD => now bench::plaintext }
    Json "/json" Bench { GET HEAD => now bench::json }
    Db "/db" Bench { GET HEAD => store bench::db }
    Queries "/queries" Bench { GET HEAD => store bench::queries }
    Fortunes "/fortunes" Bench { GET HEAD => store bench::fortunes }
    Updates "/updates" Bench { GET HEAD => store bench::updates }
    #[cfg(feature = "test-routes")]
    TestPanic "/__test/panic" Always { GET HEAD => now testing::panic }
    #[cfg(feature = "test-routes")]
    TestSleep "/__test/sleep" Always { GET HEAD => wait testing::sleep }
    #[cfg(feature = "test-routes")]
    TestEcho "/__test/echo" Always { POST PUT => now testing::echo }
    #[cfg(feature = "test-routes")]
    TestBig "/__test/big" Always { GET HEAD => now testing::big }
}

/// The routes mounted in this process, indexed for matching.
pub(crate) type Router = Matcher<Route>;

/// The router for this process: every route, the TechEmpower ones only with
/// `bench_routes`.
pub fn router(bench_routes: bool) -> Router {
    Matcher::new(Route::ALL.iter().filter(|r| bench_routes || r.mount() != Mount::Bench).map(|&route| Pattern {
        route,
        pattern: route.pattern(),
        methods: route.methods(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::route::Resolved;

    fn all() -> Router {
        router(true)
    }

    #[test]
    fn static_routes() {
        let all = all();
        assert_eq!(all.resolve(Method::Get, b"/health"), Resolved::Found { route: Route::Health, id: None });
        assert_eq!(all.resolve(Method::Head, b"/livez"), Resolved::Found { route: Route::Livez, id: None });
        assert_eq!(all.resolve(Method::Get, b"/plaintext"), Resolved::Found { route: Route::Plaintext, id: None });
        assert_eq!(all.resolve(Method::Get, b"/%68ealth"), Resolved::Found { route: Route::Health, id: None });
    }

    #[test]
    fn unknown_paths_and_methods() {
        let all = all();
        assert_eq!(all.resolve(Method::Get, b"/nope"), Resolved::NotFound);
        assert_eq!(all.resolve(Method::Get, b"/health/"), Resolved::NotFound);
        assert_eq!(all.resolve(Method::Get, b"/"), Resolved::NotFound);
        assert_eq!(
            all.resolve(Method::Post, b"/health"),
            Resolved::MethodNotAllowed { route: Route::Health, allow: "GET, HEAD" }
        );
        // A method token percore does not know is refused like any other the route does not
        // serve (405 with Allow), as Go's ServeMux and actix-web answer; 501 is for codings.
        assert_eq!(
            all.resolve(Method::Other, b"/health"),
            Resolved::MethodNotAllowed { route: Route::Health, allow: "GET, HEAD" }
        );
        assert_eq!(all.resolve(Method::Other, b"/nope"), Resolved::NotFound);
        let refused = all.resolve(Method::Post, b"/health").refusal().unwrap();
        assert_eq!((refused.status, refused.allow), (405, Some("GET, HEAD")));
        assert_eq!(all.resolve(Method::Get, b"/health").refusal(), None);
        assert_eq!(all.resolve(Method::Get, b"/he%zzalth"), Resolved::BadPath);
        assert_eq!(all.resolve(Method::Get, b"/health%2F"), Resolved::BadPath);
    }

    #[test]
    fn bench_routes_only_when_mounted() {
        let plain = router(false);
        assert_eq!(plain.resolve(Method::Get, b"/plaintext"), Resolved::NotFound);
        assert_eq!(plain.resolve(Method::Get, b"/json"), Resolved::NotFound);
    }

    #[test]
    fn api_routes_and_their_ids() {
        let all = all();
        let found = |route, id| Resolved::Found { route, id: Some(id) };
        assert_eq!(all.resolve(Method::Get, b"/api/v1/users"), Resolved::Found { route: Route::Users, id: None });
        assert_eq!(all.resolve(Method::Post, b"/api/v1/users"), Resolved::Found { route: Route::Users, id: None });
        assert_eq!(all.resolve(Method::Patch, b"/api/v1/users/42"), found(Route::User, 42));
        assert_eq!(all.resolve(Method::Delete, b"/api/v1/users/42"), found(Route::User, 42));
        assert_eq!(all.resolve(Method::Post, b"/api/v1/users/7/orders"), found(Route::UserOrders, 7));
        assert_eq!(all.resolve(Method::Put, b"/api/v1/users/7/preferences"), found(Route::UserPreferences, 7));
        assert_eq!(all.resolve(Method::Get, b"/api/v1/users/7/summary"), found(Route::UserSummary, 7));
        assert_eq!(all.resolve(Method::Get, b"/api/v1/users/abc"), Resolved::BadId { route: Route::User });
        assert_eq!(all.resolve(Method::Get, b"/api/v1/users/0/orders"), Resolved::BadId { route: Route::UserOrders });
        assert_eq!(all.resolve(Method::Get, b"/api/v1/users/-1"), Resolved::BadId { route: Route::User });
        assert_eq!(
            all.resolve(Method::Get, b"/api/v1/users/99999999999999999999"),
            Resolved::BadId { route: Route::User }
        );
        assert_eq!(
            all.resolve(Method::Post, b"/api/v1/users/abc"),
            Resolved::MethodNotAllowed { route: Route::User, allow: "GET, HEAD, PATCH, DELETE" }
        );
        assert_eq!(
            all.resolve(Method::Delete, b"/api/v1/users"),
            Resolved::MethodNotAllowed { route: Route::Users, allow: "GET, HEAD, POST" }
        );
        assert_eq!(all.resolve(Method::Get, b"/api/v1/users/1/nope"), Resolved::NotFound);
        assert_eq!(all.resolve(Method::Get, b"/api/v1/users/1/orders/"), Resolved::NotFound);
        assert_eq!(all.resolve(Method::Get, b"/api/v1/users/"), Resolved::BadId { route: Route::User });
    }

    #[test]
    fn the_table_is_consistent() {
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
            assert_eq!(Route::PATTERNS[i], r.pattern());
            let methods = r.methods();
            assert_eq!(methods.allow.split(", ").count(), methods.allowed.len(), "{r:?}");
            assert_eq!(methods.allowed.contains(&Method::Get), methods.allowed.contains(&Method::Head), "{r:?}");
        }
    }

    #[test]
    fn every_route_has_a_pattern_that_routes_back_to_it() {
        let all = all();
        for &route in Route::ALL {
            let path = route.pattern().replace("{id}", "5");
            let id = route.pattern().contains("{id}").then_some(5);
            let method = route.methods().allowed[0];
            assert_eq!(all.resolve(method, path.as_bytes()), Resolved::Found { route, id }, "{route:?}");
        }
    }
}
