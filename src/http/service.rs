//! The one seam between the connection loop and the application it serves, in neutral
//! ground: it names only this layer's types, so the loop ([`crate::net::conn`]) and the
//! application ([`crate::app`]) both see it and neither sees the other.
//!
//! The connection loop knows sockets, framing, deadlines and batching; everything about
//! routes and handlers is behind this trait. The worker hands the loop a concrete service, so
//! every call below is resolved at compile time and inlined as if the loop named the
//! application itself (as hyper's connection knows only a `Service`): no dynamic dispatch
//! on the request path.

use std::future::Future;

use super::request::{Head, Method};
use super::response::Reply;
use super::route::{RequestView, Resolved, Shed};

/// An application, one instance per worker.
pub(crate) trait Service: 'static {
    /// A route of the application's table.
    type Route: Copy;

    /// (method, path) → route, or why not (404, 405, 400).
    fn resolve(&self, head: &Head, head_bytes: &[u8]) -> Resolved<Self::Route>;

    /// Whether this route's handler for `method` awaits. Those run as futures, under
    /// HANDLER_TIMEOUT and raced against the client leaving; the others run in place.
    fn waits(route: Self::Route, method: Method) -> bool;

    /// Why a request for this route is refused now, if it is: a route that works on the
    /// store, while the store's queue stands or (`loop_late`) while the worker's own loop
    /// runs late. It is then answered 503 at once. Other routes are never refused here.
    fn sheds(&self, route: Self::Route, method: Method, loop_late: bool) -> Option<Shed>;

    /// The route's pattern: the label of metrics, logs and the access log.
    fn pattern(route: Self::Route) -> &'static str;

    /// The route's slot in the metrics (its position in the table).
    fn slot(route: Self::Route) -> usize;

    /// Answers a request whose handler does not wait.
    fn handle_now(&self, route: Self::Route, request: RequestView<'_>, reply: &mut Reply<'_>);

    /// Answers a request whose handler waits.
    fn handle<'a>(
        &'a self,
        route: Self::Route,
        request: RequestView<'a>,
        reply: &'a mut Reply<'_>,
    ) -> impl Future<Output = ()> + 'a;
}
