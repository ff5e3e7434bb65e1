//! The route table: every route of the API, registered in one place with
//! its leader rule ([`Leader`]): whether a follower hub serves it from the
//! store, relays it to the leader, hands a submission off, or redirects a
//! session. The forwarding middleware is attached per route from that
//! declaration, so a route cannot be added without one; [`table`] lists
//! them for tests and documentation.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::routing::{MethodFilter, MethodRouter, on};
use torch_store::Store;

use super::{
    help, lifecycle, locks, messages, misc, observe, openapi, tasks, teams, tokens, ui, usage,
};
use crate::audit::api as audit;
use crate::hub::Shared;
use crate::leader::{Leader, forward};

/// One registered route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// Its HTTP method.
    pub(crate) method: Verb,
    /// Its path pattern (`{id}` for parameters).
    pub(crate) path: &'static str,
    /// What a follower hub does with it.
    pub(crate) leader: Leader,
}

/// The HTTP methods the API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Verb {
    Get,
    Post,
    Put,
}

impl Verb {
    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
        }
    }

    /// The method.
    #[cfg(test)]
    pub(crate) fn method(self) -> axum::http::Method {
        use axum::http::Method;
        match self {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
            Verb::Put => Method::PUT,
        }
    }
}

/// Builds the router and the table together.
struct Routes<S> {
    shared: Arc<Shared<S>>,
    router: Router<Arc<Shared<S>>>,
    table: Vec<Route>,
}

impl<S: Store> Routes<S> {
    fn add<H, T>(&mut self, method: Verb, path: &'static str, leader: Leader, handler: H)
    where
        H: Handler<T, Arc<Shared<S>>>,
        T: 'static,
    {
        let mut route: MethodRouter<Arc<Shared<S>>> = on(method.filter(), handler);
        if leader.forwards() {
            route = route.layer(axum::middleware::from_fn_with_state(
                (self.shared.clone(), leader),
                forward::<S>,
            ));
        }
        let router = std::mem::take(&mut self.router);
        self.router = router.route(path, route);
        self.table.push(Route {
            method,
            path,
            leader,
        });
    }
}

/// Registers every route on `r` (see the module docs).
fn register<S: Store>(r: &mut Routes<S>) {
    use Leader::{Any, Forward, Redirect, Submit};
    use Verb::{Get, Post, Put};
    r.add(Get, "/api/v1/health", Any, misc::health::<S>);
    r.add(Get, "/api/v1/stats", Forward, misc::stats::<S>);
    r.add(Post, "/api/v1/stats/reset", Forward, misc::reset_stats::<S>);
    // Each hub exports its own metrics; alerts and capacity are the leader's.
    r.add(Get, "/metrics", Any, observe::metrics::<S>);
    r.add(Get, "/api/v1/alerts", Forward, observe::alerts::<S>);
    r.add(Get, "/api/v1/capacity", Forward, observe::capacity::<S>);
    r.add(Post, "/api/v1/tasks", Submit, tasks::submit::<S>);
    r.add(Get, "/api/v1/tasks", Any, tasks::list::<S>);
    r.add(Get, "/api/v1/tasks/{id}", Any, tasks::get::<S>);
    r.add(
        Post,
        "/api/v1/tasks/{id}/cancel",
        Forward,
        tasks::cancel::<S>,
    );
    r.add(Post, "/api/v1/tasks/{id}/retry", Forward, tasks::retry::<S>);
    r.add(Get, "/api/v1/tasks/{id}/logs", Any, tasks::logs::<S>);
    r.add(
        Post,
        "/api/v1/tasks/{id}/progress",
        Forward,
        tasks::progress::<S>,
    );
    r.add(
        Post,
        "/api/v1/tasks/{id}/usage",
        Forward,
        usage::report::<S>,
    );
    r.add(Get, "/api/v1/usage", Forward, usage::summary::<S>);
    r.add(Post, "/api/v1/analyze", Forward, tasks::analyze_specs::<S>);
    r.add(Get, "/api/v1/agents", Forward, misc::agents::<S>);
    r.add(Get, "/api/v1/events", Any, misc::events::<S>);
    r.add(Get, "/api/v1/events/stream", Any, ui::event_stream::<S>);
    r.add(Get, "/", Any, ui::index::<S>);
    r.add(Get, "/ui/{file}", Any, ui::asset::<S>);
    r.add(Post, "/api/v1/tokens", Forward, tokens::create::<S>);
    r.add(Get, "/api/v1/tokens", Any, tokens::list::<S>);
    r.add(
        Post,
        "/api/v1/tokens/{id}/revoke",
        Forward,
        tokens::revoke::<S>,
    );
    r.add(Get, "/api/v1/agent/ws", Redirect, misc::agent_ws::<S>);
    r.add(Post, "/api/v1/agents/spawn", Forward, lifecycle::spawn::<S>);
    r.add(
        Get,
        "/api/v1/agents/scaling",
        Forward,
        lifecycle::scaling::<S>,
    );
    r.add(
        Post,
        "/api/v1/agents/{id}/drain",
        Forward,
        lifecycle::drain::<S>,
    );
    r.add(Get, "/api/v1/nodes", Forward, lifecycle::nodes::<S>);
    r.add(Get, "/api/v1/node/ws", Redirect, lifecycle::node_ws::<S>);
    r.add(Get, "/api/v1/peers", Forward, messages::peers::<S>);
    r.add(Get, "/api/v1/teams", Any, teams::list::<S>);
    r.add(Get, "/api/v1/teams/{id}", Any, teams::get::<S>);
    r.add(Post, "/api/v1/messages", Forward, messages::send::<S>);
    r.add(Get, "/api/v1/messages", Any, messages::list::<S>);
    r.add(
        Post,
        "/api/v1/messages/relay",
        Forward,
        messages::relay::<S>,
    );
    r.add(Get, "/api/v1/memory", Forward, lifecycle::memory_list::<S>);
    r.add(
        Get,
        "/api/v1/memory/{key}",
        Forward,
        lifecycle::memory_get::<S>,
    );
    r.add(
        Put,
        "/api/v1/memory/{key}",
        Forward,
        lifecycle::memory_put::<S>,
    );
    // Locks, waits and help: the coordination service runs on the leader.
    r.add(Post, "/api/v1/locks", Forward, locks::acquire::<S>);
    r.add(Get, "/api/v1/locks", Forward, locks::list::<S>);
    r.add(Post, "/api/v1/locks/renew", Forward, locks::renew::<S>);
    r.add(Post, "/api/v1/locks/release", Forward, locks::release::<S>);
    r.add(Post, "/api/v1/waits", Forward, locks::wait_tasks::<S>);
    r.add(Post, "/api/v1/help", Forward, help::ask::<S>);
    r.add(Get, "/api/v1/help", Any, help::list::<S>);
    r.add(Get, "/api/v1/help/{id}", Any, help::get::<S>);
    r.add(Post, "/api/v1/help/{id}/accept", Forward, help::accept::<S>);
    r.add(Get, "/api/v1/audit", Any, audit::list::<S>);
    r.add(Post, "/api/v1/audit/verify", Forward, audit::verify::<S>);
    r.add(Get, "/api/v1/audit/checkpoint", Any, audit::checkpoint::<S>);
}

/// Builds the router and the route table.
pub(crate) fn build<S: Store>(shared: Arc<Shared<S>>) -> (Router, Vec<Route>) {
    let limit = shared.cfg.max_body_bytes;
    let mut routes = Routes {
        shared: shared.clone(),
        router: Router::new(),
        table: Vec::new(),
    };
    register(&mut routes);
    // The OpenAPI document describes every route, itself included.
    let mut described = routes.table.clone();
    described.push(Route {
        method: Verb::Get,
        path: openapi::PATH,
        leader: Leader::Any,
    });
    let doc = openapi::document(&described);
    routes.add(Verb::Get, openapi::PATH, Leader::Any, openapi::serve(&doc));
    let router = routes
        .router
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            audit::record::<S>,
        ))
        .fallback(misc::not_found)
        .method_not_allowed_fallback(misc::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(super::error::json_errors))
        .with_state(shared);
    (router, routes.table)
}

/// The route table (without building a server), for tests and docs.
#[cfg(test)]
pub(crate) fn table<S: Store>(shared: Arc<Shared<S>>) -> Vec<Route> {
    build(shared).1
}
