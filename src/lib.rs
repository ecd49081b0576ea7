//! hookrouter: a webhook gateway. It terminates TLS, matches a route, checks the client IP,
//! and forwards the request to an internal target (sync mode), relaying the answer.
//!
//! # Layout (in pipeline order)
//! - [`config`]: YAML → validated model, every error at once with line and path.
//! - `snapshot`: everything the request path reads, built from a config, swapped whole on reload.
//! - `listener`: accept loop, TLS (`listener::tls`), connection cap and timeouts, draining.
//! - `ingress`: the per-request handler: head checks → body → dispatch.
//! - `pipeline`: the ordered pure checks and the one `Rejection` → status/label mapping.
//! - [`path`], `route`, `client_ip`: canonical paths, route lookup, client address and allowlist.
//! - `forward`: sync mode, forwarding to a target and relaying its answer.
//! - `admin`: `/healthz`, `/readyz` on their own listener.
//! - `reload`: SIGHUP and file changes → validate → swap.
//! - `app`: wires it all together; `shutdown`: signals and draining.

pub mod app;
pub mod cli;
pub mod config;
pub mod event;
pub mod path;
pub mod verify;

mod admin;
mod alerts;
mod client_ip;
mod delivery;
mod forward;
mod glob;
mod ingress;
mod listener;
mod metrics;
mod pipeline;
mod queue;
mod reload;
mod route;
mod shutdown;
mod snapshot;
