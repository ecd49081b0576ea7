//! Route lookup by exact path, then host, then method. Pure; tests at the bottom.
//!
//! A route with a `host` wins over one without for requests to that host. A path that exists
//! with another method gives 405 (with `Allow`), a path that does not exist gives 404.

use std::collections::HashMap;

use http::Method;

/// Result of a lookup: index of the route, or why none matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Index into the snapshot's route list.
    Found(usize),
    /// The path (and host) exist with other methods; the index names one such route.
    MethodNotAllowed(usize),
    /// Nothing is served at this path.
    NoRoute,
}

/// One routable entry: what is matched, and where it points.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) host: Option<String>,
    pub(crate) methods: Vec<Method>,
    pub(crate) index: usize,
}

/// Routes by exact path.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    by_path: HashMap<String, Vec<Entry>>,
}

impl RouteTable {
    /// Builds the table; `entries` are `(path, entry)` in config order.
    pub(crate) fn new(entries: impl IntoIterator<Item = (String, Entry)>) -> Self {
        let mut by_path: HashMap<String, Vec<Entry>> = HashMap::new();
        for (path, e) in entries {
            by_path.entry(path).or_default().push(e);
        }
        RouteTable { by_path }
    }

    /// Finds the route for a request. `host` is the request's host, lowercase, without port.
    pub(crate) fn find(&self, host: Option<&str>, path: &str, method: &Method) -> Lookup {
        let Some(entries) = self.by_path.get(path) else {
            return Lookup::NoRoute;
        };
        let host_specific = entries
            .iter()
            .any(|e| e.host.is_some() && e.host.as_deref() == host);
        let mut candidates = entries.iter().filter(|e| match &e.host {
            Some(h) => host_specific && Some(h.as_str()) == host,
            None => !host_specific,
        });
        let mut other_method = None;
        for e in &mut candidates {
            if e.methods.contains(method) {
                return Lookup::Found(e.index);
            }
            other_method.get_or_insert(e.index);
        }
        // When a host-specific route exists but lacks the method, a host-less one may have it.
        if host_specific
            && let Some(e) = entries
                .iter()
                .find(|e| e.host.is_none() && e.methods.contains(method))
        {
            return Lookup::Found(e.index);
        }
        match other_method {
            Some(i) => Lookup::MethodNotAllowed(i),
            None => Lookup::NoRoute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let e = |host: Option<&str>, methods: &[Method], index| Entry {
            host: host.map(str::to_string),
            methods: methods.to_vec(),
            index,
        };
        RouteTable::new([
            ("/a".to_string(), e(None, &[Method::POST], 0)),
            ("/a".to_string(), e(Some("x.example"), &[Method::PUT], 1)),
            ("/b".to_string(), e(Some("y.example"), &[Method::POST], 2)),
        ])
    }

    #[test]
    fn lookups() {
        let t = table();
        let cases: &[(Option<&str>, &str, Method, Lookup)] = &[
            (None, "/a", Method::POST, Lookup::Found(0)),
            (Some("other"), "/a", Method::POST, Lookup::Found(0)),
            (Some("x.example"), "/a", Method::PUT, Lookup::Found(1)),
            (Some("x.example"), "/a", Method::POST, Lookup::Found(0)),
            (
                Some("x.example"),
                "/a",
                Method::GET,
                Lookup::MethodNotAllowed(1),
            ),
            (None, "/a", Method::GET, Lookup::MethodNotAllowed(0)),
            (None, "/b", Method::POST, Lookup::NoRoute),
            (Some("y.example"), "/b", Method::POST, Lookup::Found(2)),
            (None, "/A", Method::POST, Lookup::NoRoute),
            (None, "/a/", Method::POST, Lookup::NoRoute),
        ];
        for (host, path, method, want) in cases {
            assert_eq!(
                t.find(*host, path, method),
                *want,
                "{host:?} {method} {path}"
            );
        }
    }
}
