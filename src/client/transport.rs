//! What a failed exchange's transport error means: a fault of this machine's
//! network setup that no retry heals (a certificate it does not trust, a proxy
//! that refuses, a name that does not exist), or anything else, which the
//! retry rules treat as transient (a timeout, a reset, a server that refused
//! while it restarts).
//!
//! reqwest exposes none of this as a kind, so the error's source chain is
//! read, as it looks with reqwest 0.13, hyper-util 0.1 and rustls 0.23:
//! `reqwest::Error` → hyper-util's client error → either an `io::Error`
//! carrying an `io::Error` carrying the `rustls::Error`, or hyper-util's
//! connect error (`tcp connect error`, `dns error`) over the `io::Error`, or
//! its tunnel error (`tunnel error: …`) when a proxy is in the way.

use std::error::Error;
use std::ffi::OsString;

use hyper_util::client::proxy::matcher::Matcher;
use rustls::CertificateError;

use crate::stop::NetworkFault;

/// Where requests to the API go: its host, and the proxy in the way, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Route {
    pub host: String,
    pub proxy: Option<ProxyRoute>,
    /// The variables that replace the system's CA store, as set (`SSL_CERT_FILE=…`).
    pub roots: Option<String>,
}

/// A proxy, as the message names it: `addr` (host:port, never credentials),
/// its `host`, and the variable it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProxyRoute {
    pub addr: String,
    pub host: String,
    pub var: &'static str,
}

impl Route {
    /// The route to `base`, read from the environment as reqwest reads it when
    /// the client is built: the same proxy matcher (`HTTPS_PROXY`, `HTTP_PROXY`,
    /// `ALL_PROXY`, `NO_PROXY` and their lowercase forms), and `SSL_CERT_FILE`
    /// and `SSL_CERT_DIR`, which the platform verifier loads instead of the
    /// system store.
    pub fn from_env(base: &url::Url) -> Route {
        Route::new(base, &Matcher::from_env(), |name| std::env::var_os(name))
    }

    /// The route to `base` through `matcher`, with `env` for the variables.
    fn new(base: &url::Url, matcher: &Matcher, env: impl Fn(&str) -> Option<OsString>) -> Route {
        let host = base.host_str().unwrap_or_default().to_owned();
        let proxy = base
            .as_str()
            .parse::<hyper::Uri>()
            .ok()
            .and_then(|uri| matcher.intercept(&uri))
            .and_then(|intercept| {
                // The authority without credentials: the matcher keeps them apart.
                let uri = intercept.uri();
                Some(ProxyRoute {
                    addr: uri.authority()?.as_str().to_owned(),
                    host: uri.host()?.to_owned(),
                    var: proxy_var(base.scheme(), |name| env(name).is_some()),
                })
            });
        let roots: Vec<String> = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
            .into_iter()
            .filter_map(|name| Some(format!("{name}=`{}`", env(name)?.to_string_lossy())))
            .collect();
        Route {
            host,
            proxy,
            roots: (!roots.is_empty()).then(|| roots.join(" and ")),
        }
    }
}

/// The variable a proxy for `scheme` came from, in the order the matcher
/// reads them: the scheme's own (upper case first), then `ALL_PROXY`.
fn proxy_var(scheme: &str, is_set: impl Fn(&str) -> bool) -> &'static str {
    let own: [&'static str; 2] = if scheme == "http" {
        ["HTTP_PROXY", "http_proxy"]
    } else {
        ["HTTPS_PROXY", "https_proxy"]
    };
    own.into_iter()
        .chain(["ALL_PROXY", "all_proxy"])
        .find(|name| is_set(name))
        .unwrap_or(own[0])
}

/// The fault in `error` that retrying cannot heal, if it is one. `timed_out`:
/// reqwest's own verdict; a timeout may always heal.
pub(super) fn unhealable(
    error: &(dyn Error + 'static),
    timed_out: bool,
    route: &Route,
) -> Option<NetworkFault> {
    if timed_out {
        return None;
    }
    let causes = causes(error);
    if let Some(fault) = causes.iter().find_map(|e| certificate_fault(*e, route)) {
        return Some(fault);
    }
    let unknown_name = causes.iter().any(|e| is_unknown_name(*e));
    match &route.proxy {
        // Behind a proxy, this process connects to the proxy alone and looks up
        // only its name: the API's host is the proxy's business.
        Some(proxy) => {
            if unknown_name {
                return Some(NetworkFault::UnknownHost {
                    host: proxy.host.clone(),
                    proxy_var: Some(proxy.var.to_owned()),
                });
            }
            proxy_fault(&causes, proxy, &route.host)
        }
        None => unknown_name.then(|| NetworkFault::UnknownHost {
            host: route.host.clone(),
            proxy_var: None,
        }),
    }
}

/// Every error in the chain, outermost first. An `io::Error` that carries an
/// error reports that error's *source* as its own, skipping the error itself
/// (where rustls's verdict sits), so the carried error is walked instead.
fn causes<'a>(error: &'a (dyn Error + 'static)) -> Vec<&'a (dyn Error + 'static)> {
    let mut chain = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        chain.push(error);
        next = match error
            .downcast_ref::<std::io::Error>()
            .and_then(|e| e.get_ref())
        {
            Some(inner) => Some(inner as &(dyn Error + 'static)),
            None => error.source(),
        };
    }
    chain
}

/// A certificate rustls refused; any such refusal repeats on every try.
fn certificate_fault(error: &(dyn Error + 'static), route: &Route) -> Option<NetworkFault> {
    let rustls::Error::InvalidCertificate(refusal) = error.downcast_ref::<rustls::Error>()? else {
        return None;
    };
    let host = route.host.clone();
    let problem = match refusal {
        CertificateError::NotValidForName => {
            return Some(NetworkFault::NameMismatch {
                host,
                names: Vec::new(),
            });
        }
        CertificateError::NotValidForNameContext { presented, .. } => {
            return Some(NetworkFault::NameMismatch {
                host,
                names: presented.iter().filter_map(|n| presented_name(n)).collect(),
            });
        }
        CertificateError::UnknownIssuer => {
            "it is signed by a certificate authority (CA) this machine does not trust"
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "it has expired (or this machine's clock is wrong)"
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "it is not valid yet (or this machine's clock is wrong)"
        }
        CertificateError::Revoked => "it has been revoked",
        CertificateError::BadSignature => "its signature does not verify",
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "it is not meant for a TLS server"
        }
        _ => "it cannot be verified",
    };
    Some(NetworkFault::UntrustedCertificate {
        host,
        problem: problem.to_owned(),
        roots: route.roots.clone(),
    })
}

/// A name the certificate presents, from webpki's `Debug` form of it
/// (`DnsName("api.example")`, `IpAddress(10.0.0.1)`); other kinds of name
/// cannot match a host and are left out.
fn presented_name(debug: &str) -> Option<String> {
    let name = debug
        .strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
        .or_else(|| debug.strip_prefix("IpAddress(")?.strip_suffix(')'))?;
    Some(name.to_owned())
}

/// A lookup the resolver answered with "no such name": glibc's and musl's
/// words for `EAI_NONAME`, and glibc's for `EAI_NODATA` (the name has no
/// address). std reports a failed `getaddrinfo` only as text, untranslated
/// since Rust programs do not set a locale. "Temporary failure in name
/// resolution" (`EAI_AGAIN`: no DNS server answered) is not among them: it heals.
fn is_unknown_name(error: &(dyn Error + 'static)) -> bool {
    const NO_SUCH_NAME: [&str; 3] = [
        "Name or service not known",
        "No address associated with hostname",
        "Name does not resolve",
    ];
    let Some(io) = error.downcast_ref::<std::io::Error>() else {
        return false;
    };
    let text = io.to_string();
    text.strip_prefix("failed to lookup address information: ")
        .is_some_and(|reason| NO_SUCH_NAME.contains(&reason))
}

/// What a proxy in the way did. hyper-util's tunnel error is not public, so
/// its text is matched: "unsuccessful" is a CONNECT answered with anything but
/// 2xx (a proxy's rules), "proxy authorization required" a 407. A proxy that
/// closes the connection mid-CONNECT stays transient, as a reset does.
fn proxy_fault(
    causes: &[&(dyn Error + 'static)],
    proxy: &ProxyRoute,
    host: &str,
) -> Option<NetworkFault> {
    let refused = causes.iter().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    if refused {
        return Some(NetworkFault::ProxyRefused {
            proxy: proxy.addr.clone(),
            var: proxy.var.to_owned(),
            host: host.to_owned(),
        });
    }
    let problem = causes.iter().find_map(|e| match e.to_string().as_str() {
        "tunnel error: unsuccessful" => Some("it refused the tunnel (CONNECT)"),
        "tunnel error: proxy authorization required" => {
            Some("it asks for credentials (407 Proxy Authentication Required)")
        }
        _ => None,
    })?;
    Some(NetworkFault::ProxyFailed {
        proxy: proxy.addr.clone(),
        var: proxy.var.to_owned(),
        host: host.to_owned(),
        problem: problem.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use std::io;

    use rustls::pki_types::ServerName;

    use super::*;

    /// An error that names a layer and carries the one below, as hyper-util's do.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<dyn Error + Send + Sync>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    fn client_error(inner: impl Error + Send + Sync + 'static) -> Layer {
        Layer("client error (Connect)", Some(Box::new(inner)))
    }

    /// A refused certificate as the TLS connector reports it: an `io::Error`
    /// carrying an `io::Error` carrying rustls's verdict.
    fn certificate(refusal: CertificateError) -> Layer {
        let tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(refusal),
        );
        client_error(io::Error::other(tls))
    }

    fn connect(cause: &'static str, io: io::Error) -> Layer {
        client_error(Layer(cause, Some(Box::new(io))))
    }

    fn lookup(reason: &str) -> Layer {
        let io = io::Error::other(format!("failed to lookup address information: {reason}"));
        connect("dns error", io)
    }

    fn refused() -> Layer {
        connect("tcp connect error", io::ErrorKind::ConnectionRefused.into())
    }

    fn tunnel(text: &'static str) -> Layer {
        client_error(Layer(text, None))
    }

    fn direct() -> Route {
        Route {
            host: "openrouter.ai".into(),
            proxy: None,
            roots: None,
        }
    }

    fn proxied() -> Route {
        Route {
            proxy: Some(ProxyRoute {
                addr: "proxy.corp:3128".into(),
                host: "proxy.corp".into(),
                var: "HTTPS_PROXY",
            }),
            ..direct()
        }
    }

    #[test]
    fn faults_of_the_setup_are_unhealable_and_the_rest_transient() {
        let untrusted = |problem: &str| NetworkFault::UntrustedCertificate {
            host: "openrouter.ai".into(),
            problem: problem.into(),
            roots: None,
        };
        let proxy_failed = |problem: &str| NetworkFault::ProxyFailed {
            proxy: "proxy.corp:3128".into(),
            var: "HTTPS_PROXY".into(),
            host: "openrouter.ai".into(),
            problem: problem.into(),
        };
        let presented = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("openrouter.ai").unwrap(),
            presented: vec![
                "DnsName(\"other.test\")".into(),
                "IpAddress(10.0.0.1)".into(),
                "DirectoryName".into(),
            ],
        };
        let cases: Vec<(&str, Layer, Route, Option<NetworkFault>)> = vec![
            (
                "unknown issuer",
                certificate(CertificateError::UnknownIssuer),
                direct(),
                Some(untrusted(
                    "it is signed by a certificate authority (CA) this machine does not trust",
                )),
            ),
            (
                "expired",
                certificate(CertificateError::Expired),
                direct(),
                Some(untrusted(
                    "it has expired (or this machine's clock is wrong)",
                )),
            ),
            (
                "name mismatch",
                certificate(presented),
                direct(),
                Some(NetworkFault::NameMismatch {
                    host: "openrouter.ai".into(),
                    names: vec!["other.test".into(), "10.0.0.1".into()],
                }),
            ),
            (
                "no such name",
                lookup("Name or service not known"),
                direct(),
                Some(NetworkFault::UnknownHost {
                    host: "openrouter.ai".into(),
                    proxy_var: None,
                }),
            ),
            (
                "no such name, musl",
                lookup("Name does not resolve"),
                direct(),
                Some(NetworkFault::UnknownHost {
                    host: "openrouter.ai".into(),
                    proxy_var: None,
                }),
            ),
            (
                "no DNS server answered",
                lookup("Temporary failure in name resolution"),
                direct(),
                None,
            ),
            ("the API host refused", refused(), direct(), None),
            (
                "the proxy refused",
                refused(),
                proxied(),
                Some(NetworkFault::ProxyRefused {
                    proxy: "proxy.corp:3128".into(),
                    var: "HTTPS_PROXY".into(),
                    host: "openrouter.ai".into(),
                }),
            ),
            (
                "the proxy refused the tunnel",
                tunnel("tunnel error: unsuccessful"),
                proxied(),
                Some(proxy_failed("it refused the tunnel (CONNECT)")),
            ),
            (
                "the proxy asks for credentials",
                tunnel("tunnel error: proxy authorization required"),
                proxied(),
                Some(proxy_failed(
                    "it asks for credentials (407 Proxy Authentication Required)",
                )),
            ),
            (
                "the proxy closed mid-CONNECT",
                tunnel("tunnel error: unexpected end of file"),
                proxied(),
                None,
            ),
            (
                "the proxy's name does not exist",
                lookup("Name or service not known"),
                proxied(),
                Some(NetworkFault::UnknownHost {
                    host: "proxy.corp".into(),
                    proxy_var: Some("HTTPS_PROXY".into()),
                }),
            ),
            (
                "a reset",
                connect("connection error", io::ErrorKind::ConnectionReset.into()),
                proxied(),
                None,
            ),
        ];
        for (case, error, route, expected) in cases {
            assert_eq!(unhealable(&error, false, &route), expected, "{case}");
        }
        let error = certificate(CertificateError::UnknownIssuer);
        assert_eq!(unhealable(&error, true, &direct()), None, "a timeout heals");
    }

    #[test]
    fn the_route_follows_the_proxy_variables_as_reqwest_does() {
        let base = url::Url::parse("https://openrouter.ai/api/v1").unwrap();
        let env = |set: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                set.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let matcher = Matcher::builder()
            .https("http://user:secret@proxy.corp:3128")
            .build();
        let vars = &[("https_proxy", "set"), ("SSL_CERT_FILE", "/etc/ca.pem")];
        let route = Route::new(&base, &matcher, env(vars));
        let proxy = route.proxy.expect("the proxy applies");
        assert_eq!(proxy.addr, "proxy.corp:3128", "no credentials");
        assert_eq!(
            (proxy.host.as_str(), proxy.var),
            ("proxy.corp", "https_proxy")
        );
        assert_eq!(route.roots.as_deref(), Some("SSL_CERT_FILE=`/etc/ca.pem`"));

        let bypass = Matcher::builder()
            .all("http://proxy.corp:3128")
            .no("localhost, .openrouter.ai")
            .build();
        let route = Route::new(&base, &bypass, env(&[]));
        assert_eq!(route.proxy, None, "NO_PROXY names the host");
        assert_eq!(route.roots, None);

        assert_eq!(proxy_var("https", |n| n == "ALL_PROXY"), "ALL_PROXY");
        assert_eq!(proxy_var("http", |n| n == "http_proxy"), "http_proxy");
        assert_eq!(proxy_var("https", |n| n == "HTTP_PROXY"), "HTTPS_PROXY");
    }
}
