//! The run-wide stop signal: set by a refused key (401/402), a network fault
//! that retrying cannot heal, or an interrupt, seen by every worker, which then
//! stops sending and lets in-flight answers land.

use std::fmt;
use std::sync::Mutex;

use tokio::sync::watch;

/// Why the run stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The API refused the key (401) or the credits (402).
    Refused { status: u16, message: String },
    /// The API cannot be reached until this machine's setup changes.
    Unreachable(NetworkFault),
    /// SIGINT or SIGTERM.
    Interrupted,
    /// Reading input or writing output failed; the run ends with an error.
    OutputFailed,
}

/// What keeps every request from reaching the API, however often it is
/// retried: the fault of a certificate, a proxy or a name, not of the server.
/// Its `Display` names the cause and the fix, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkFault {
    /// The server's certificate does not verify; `problem` says why in words.
    /// `roots`: the variables that replaced the system's CA store, if any.
    UntrustedCertificate {
        host: String,
        problem: String,
        roots: Option<String>,
    },
    /// The certificate verifies but names other hosts (`names`, when known).
    NameMismatch { host: String, names: Vec<String> },
    /// The proxy `proxy` (host:port, from the variable `var`) refused the
    /// connection.
    ProxyRefused {
        proxy: String,
        var: String,
        host: String,
    },
    /// The proxy took the connection but would not open a tunnel to `host`.
    ProxyFailed {
        proxy: String,
        var: String,
        host: String,
        problem: String,
    },
    /// DNS says the name `host` does not exist; `proxy_var` names the proxy
    /// variable when `host` is the proxy's.
    UnknownHost {
        host: String,
        proxy_var: Option<String>,
    },
}

impl NetworkFault {
    /// The cause in a few words, for a failures-file row.
    pub fn kind(&self) -> &'static str {
        match self {
            NetworkFault::UntrustedCertificate { .. } => "TLS certificate not trusted",
            NetworkFault::NameMismatch { .. } => "TLS certificate for another host name",
            NetworkFault::ProxyRefused { .. } => "proxy refused the connection",
            NetworkFault::ProxyFailed { .. } => "proxy would not connect",
            NetworkFault::UnknownHost { .. } => "host name does not exist",
        }
    }
}

impl fmt::Display for NetworkFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkFault::UntrustedCertificate {
                host,
                problem,
                roots,
            } => untrusted(f, host, problem, roots.as_deref()),
            NetworkFault::NameMismatch { host, names } => {
                write!(
                    f,
                    "the TLS certificate of `{host}` is for another host name"
                )?;
                if !names.is_empty() {
                    write!(f, " ({})", names.join(", "))?;
                }
                write!(
                    f,
                    "; set `api.base_url` (--base-url) to a host the certificate names"
                )
            }
            NetworkFault::ProxyRefused { proxy, var, host } => write!(
                f,
                "the proxy `{proxy}` (from {var}) refused the connection; start the proxy or correct \
                 {var}, or add `{host}` to NO_PROXY to connect directly"
            ),
            NetworkFault::ProxyFailed {
                proxy,
                var,
                host,
                problem,
            } => write!(
                f,
                "the proxy `{proxy}` (from {var}) would not connect to `{host}`: {problem}; check the \
                 proxy's rules and credentials (user:password@ in {var}), or add `{host}` to NO_PROXY \
                 to connect directly"
            ),
            NetworkFault::UnknownHost {
                host,
                proxy_var: None,
            } => write!(
                f,
                "the host name `{host}` does not exist (DNS); correct the host in `api.base_url` (--base-url)"
            ),
            NetworkFault::UnknownHost {
                host,
                proxy_var: Some(var),
            } => write!(
                f,
                "the proxy's host name `{host}` (from {var}) does not exist (DNS); correct {var}"
            ),
        }
    }
}

/// An untrusted certificate and the ways to trust its CA; `roots`: the
/// variables that already replace the system store, if set.
fn untrusted(
    f: &mut fmt::Formatter<'_>,
    host: &str,
    problem: &str,
    roots: Option<&str>,
) -> fmt::Result {
    write!(
        f,
        "the TLS certificate of `{host}` is not trusted: {problem}; "
    )?;
    if let Some(roots) = roots {
        write!(
            f,
            "only the CAs of {roots} are trusted (they replace the system store); "
        )?;
    }
    write!(
        f,
        "if a private CA or a TLS-inspecting proxy signs it, point SSL_CERT_FILE at a PEM bundle \
         holding that CA, or SSL_CERT_DIR at directories of PEM files; either replaces the \
         system store, so include the public CAs too"
    )
}

/// Shared by the dispatcher and every fetch worker.
pub struct Stop {
    reason: Mutex<Option<StopReason>>,
    flag: watch::Sender<bool>,
}

impl Default for Stop {
    fn default() -> Self {
        Stop {
            reason: Mutex::new(None),
            flag: watch::Sender::new(false),
        }
    }
}

impl Stop {
    /// Stops the run; the first reason given is the one reported.
    pub fn trigger(&self, reason: StopReason) {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.flag.send_replace(true);
    }

    pub fn is_stopped(&self) -> bool {
        *self.flag.borrow()
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Resolves once the run is stopped.
    pub async fn stopped(&self) {
        let mut rx = self.flag.subscribe();
        // The sender lives in `self`, so `wait_for` cannot see it dropped.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_faults_name_the_fix() {
        let unknown = |proxy_var: Option<&str>| NetworkFault::UnknownHost {
            host: "openrouter.invalid".into(),
            proxy_var: proxy_var.map(str::to_owned),
        };
        assert_eq!(
            unknown(None).to_string(),
            "the host name `openrouter.invalid` does not exist (DNS); correct the host in `api.base_url` (--base-url)"
        );
        assert_eq!(
            unknown(Some("ALL_PROXY")).to_string(),
            "the proxy's host name `openrouter.invalid` (from ALL_PROXY) does not exist (DNS); correct ALL_PROXY"
        );
        let untrusted = NetworkFault::UntrustedCertificate {
            host: "openrouter.ai".into(),
            problem: "it has expired".into(),
            roots: Some("SSL_CERT_FILE=`/etc/corp.pem`".into()),
        }
        .to_string();
        assert!(
            untrusted.starts_with(
                "the TLS certificate of `openrouter.ai` is not trusted: it has expired; \
                 only the CAs of SSL_CERT_FILE=`/etc/corp.pem` are trusted (they replace the system store); "
            ),
            "{untrusted}"
        );
        let mismatch = NetworkFault::NameMismatch {
            host: "openrouter.ai".into(),
            names: Vec::new(),
        };
        assert_eq!(
            mismatch.to_string(),
            "the TLS certificate of `openrouter.ai` is for another host name; \
             set `api.base_url` (--base-url) to a host the certificate names"
        );
    }
}
