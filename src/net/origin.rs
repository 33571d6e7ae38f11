//! The browser origin check of WebSocket upgrades (cross-site WebSocket hijacking guard).
//!
//! A browser sends `Origin` with every WebSocket upgrade and attaches the site's cookies
//! whatever page opened it, so a page on `http://evil.example` could otherwise act as a
//! logged-in user. Rule: an upgrade without `Origin` (SDKs outside browsers, servers) is
//! allowed; one whose `Origin` names the request's own `Host` (same origin, default ports
//! ignored) is allowed; one matching an entry of `server.allowed_origins` (exact, one `*`
//! wildcard, or `*` for all) is allowed; anything else is refused with HTTP 403 and
//! counted in `wiresocket_limit_refused_total{reason="origin"}` (by `net::conn`).
//!
//! Built once per core from the config; pure. Comparisons ignore ASCII case.

/// The allowed origins of one node.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    any: bool,
    /// Lower-cased patterns, split at their `*` (`(prefix, Some(suffix))`) or exact.
    patterns: Vec<(String, Option<String>)>,
}

impl OriginPolicy {
    /// From `server.allowed_origins` (validated by `config::check_origin_pattern`).
    pub fn new(allowed: &[String]) -> Self {
        let mut p = OriginPolicy::default();
        for a in allowed {
            if a == "*" {
                p.any = true;
                continue;
            }
            let a = a.to_ascii_lowercase();
            let a = a.trim_end_matches('/');
            p.patterns.push(match a.split_once('*') {
                Some((pre, suf)) => (pre.to_owned(), Some(suf.to_owned())),
                None => (a.to_owned(), None),
            });
        }
        p
    }

    /// Whether an upgrade with this `Origin` and `Host` may proceed.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true; // not a browser
        };
        if self.any {
            return true;
        }
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        if host.is_some_and(|h| same_origin(&origin, h)) {
            return true;
        }
        self.patterns.iter().any(|(pre, suf)| match suf {
            None => origin == *pre,
            Some(suf) => {
                origin.len() > pre.len() + suf.len()
                    && origin.starts_with(pre.as_str())
                    && origin.ends_with(suf.as_str())
                    && !origin[pre.len()..origin.len() - suf.len()].contains(['/', ':', '@'])
            }
        })
    }
}

/// `origin` (`scheme://host[:port]`, lower case) names `host` (the `Host` header).
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // "null" and other opaque origins
    };
    let default = match scheme {
        "http" | "ws" => ":80",
        "https" | "wss" => ":443",
        _ => "",
    };
    let host = host.trim().to_ascii_lowercase();
    let strip = |a: &str| -> String {
        match a.strip_suffix(default) {
            Some(s) if !default.is_empty() => s.to_owned(),
            _ => a.to_owned(),
        }
    };
    strip(authority) == strip(&host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(v: &[&str]) -> OriginPolicy {
        OriginPolicy::new(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn same_origin_by_default() {
        let p = policy(&[]);
        let host = Some("chat.example.com");
        assert!(p.allows(None, host), "no Origin: not a browser");
        assert!(p.allows(Some("https://chat.example.com"), host));
        assert!(p.allows(Some("https://Chat.Example.com:443"), host));
        assert!(p.allows(Some("http://127.0.0.1:8000"), Some("127.0.0.1:8000")));
        assert!(!p.allows(Some("http://evil.example"), host));
        assert!(!p.allows(Some("null"), host));
        assert!(!p.allows(Some("http://chat.example.com:8080"), host));
        assert!(!p.allows(Some("http://127.0.0.1:9"), Some("127.0.0.1:8000")));
        assert!(!p.allows(Some("https://chat.example.com"), None));
    }

    #[test]
    fn listed_and_wildcard_origins() {
        let p = policy(&["https://app.example.org", "https://*.example.com"]);
        assert!(p.allows(Some("https://app.example.org"), Some("ws.example.net")));
        assert!(p.allows(Some("https://a.example.com"), Some("ws.example.net")));
        assert!(p.allows(Some("https://a.b.example.com"), Some("ws.example.net")));
        assert!(!p.allows(Some("https://example.com"), Some("ws.example.net")));
        assert!(!p.allows(Some("http://a.example.com"), Some("ws.example.net")));
        assert!(!p.allows(Some("https://evil.com/.example.com"), Some("x")));
        assert!(!p.allows(Some("https://a.example.com.evil"), Some("x")));
        assert!(!p.allows(Some("https://app.example.org.evil"), Some("x")));
        assert!(policy(&["*"]).allows(Some("http://evil.example"), Some("x")));
    }
}
