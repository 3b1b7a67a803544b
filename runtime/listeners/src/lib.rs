//! One policy for every network listener Sluice opens: the Kafka listener, the schema
//! registry and (with the control plane) the REST API, whether `sluice broker`,
//! `sluice registry` or `sluice run` opens them.
//!
//! - A loopback address (`127.0.0.0/8`, `::1`) is always allowed: only this machine reaches it.
//! - Any other address needs authentication. HTTP listeners (the registry, the REST API)
//!   have it and must have it configured; the Kafka listener has no TLS or SASL yet, so it
//!   opens on such an address only with an explicit opt-in (`unauthenticated: true` in a
//!   pipeline file, `--allow-unauthenticated` on the command line), and with a warning.
//! - The Kafka listener tells clients where to connect: the address it was given, or the
//!   one named with `advertised_listener`; a wildcard (`0.0.0.0`, `::`) cannot be connected
//!   to, so it needs `advertised_listener`.
//!
//! - [`auth`]: the HTTP listeners' credentials and the layer that checks them.
//!
//! This crate decides; it opens nothing and prints nothing (the caller says where the error
//! or the warning goes).
//!
//! ```
//! use sluice_listeners::{check, Listener, Service};
//! let open = Listener { service: Service::Registry, addr: "0.0.0.0:8081".parse().unwrap(),
//!                       authenticated: false, allow_unauthenticated: false };
//! assert!(check(&open).unwrap_err().to_string().contains("without authentication"));
//! let local = Listener { addr: "127.0.0.1:8081".parse().unwrap(), ..open };
//! assert_eq!(check(&local).unwrap(), None);
//! ```

pub mod auth;

use std::fmt;
use std::net::SocketAddr;

/// Which listener is asked about: the remedies differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The Kafka protocol listener (no authentication of its own yet).
    Kafka,
    /// The schema registry's HTTP API (basic and bearer authentication).
    Registry,
    /// The control plane's REST API (basic and bearer authentication).
    Rest,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Kafka => "Kafka listener",
            Service::Registry => "schema registry",
            Service::Rest => "REST API",
        })
    }
}

/// A listener about to be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub service: Service,
    pub addr: SocketAddr,
    /// Whether callers must authenticate (credentials are configured).
    pub authenticated: bool,
    /// The operator's explicit opt-in to an unauthenticated non-loopback Kafka listener.
    pub allow_unauthenticated: bool,
}

/// Why a listener may not open as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListenerError {
    #[error("refusing to open the {service} on {addr} without authentication: anyone who can reach that address could use it; {remedy}")]
    Unauthenticated {
        service: Service,
        addr: SocketAddr,
        remedy: &'static str,
    },
    #[error("the {service} would listen on the wildcard address {addr}, which clients cannot connect to: name the address they should use with {how}")]
    WildcardAdvertised {
        service: Service,
        addr: SocketAddr,
        how: &'static str,
    },
    #[error("advertised listener `{given}` must be HOST:PORT ({reason})")]
    BadAdvertised { given: String, reason: &'static str },
}

/// A listener that may open, but that operators should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning(pub String);

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `listener` may open: `Ok(None)` quietly, `Ok(Some(warning))` with a warning to
/// print (an opted-in unauthenticated Kafka listener beyond loopback), or the refusal.
pub fn check(listener: &Listener) -> Result<Option<Warning>, ListenerError> {
    if listener.addr.ip().is_loopback() || listener.authenticated {
        return Ok(None);
    }
    match listener.service {
        Service::Kafka if listener.allow_unauthenticated => Ok(Some(Warning(format!(
            "the Kafka listener on {} has no authentication and no encryption: anyone who can reach it can read, write and delete every topic",
            listener.addr
        )))),
        Service::Kafka => Err(ListenerError::Unauthenticated {
            service: listener.service,
            addr: listener.addr,
            remedy: "the Kafka listener has no TLS or SASL yet, so listen on a loopback address, or opt in with `unauthenticated: true` (pipeline file) or `--allow-unauthenticated` (sluice broker)",
        }),
        Service::Registry | Service::Rest => Err(ListenerError::Unauthenticated {
            service: listener.service,
            addr: listener.addr,
            remedy: "configure `auth` (basic users or bearer tokens), or listen on a loopback address",
        }),
    }
}

/// What the Kafka listener on `listen` tells clients: `advertised` (`HOST:PORT`, parsed) when
/// given; otherwise `None`, meaning the bound address itself, which a wildcard is not.
pub fn advertised(
    listen: SocketAddr,
    advertised: Option<&str>,
) -> Result<Option<(String, u16)>, ListenerError> {
    let Some(given) = advertised else {
        if listen.ip().is_unspecified() {
            return Err(ListenerError::WildcardAdvertised {
                service: Service::Kafka,
                addr: listen,
                how: "`advertised_listener: HOST:PORT` (pipeline file) or `--advertised-listener HOST:PORT` (sluice broker)",
            });
        }
        return Ok(None);
    };
    let bad = |reason| ListenerError::BadAdvertised {
        given: given.to_string(),
        reason,
    };
    let (host, port) = given.rsplit_once(':').ok_or(bad("no `:PORT`"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if port == 0 {
        return Err(bad("port 0 cannot be connected to"));
    }
    Ok(Some((host.to_string(), port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(service: Service, addr: &str) -> Listener {
        Listener {
            service,
            addr: addr.parse().unwrap(),
            authenticated: false,
            allow_unauthenticated: false,
        }
    }

    #[test]
    fn loopback_is_always_allowed() {
        for service in [Service::Kafka, Service::Registry, Service::Rest] {
            for addr in ["127.0.0.1:1", "127.1.2.3:9092", "[::1]:8081"] {
                assert_eq!(
                    check(&listener(service, addr)),
                    Ok(None),
                    "{service} {addr}"
                );
            }
        }
    }

    #[test]
    fn beyond_loopback_http_needs_auth_and_kafka_needs_an_opt_in() {
        for addr in ["0.0.0.0:8081", "10.1.2.3:8081", "[::]:8081"] {
            let open = listener(Service::Registry, addr);
            let err = check(&open).unwrap_err().to_string();
            assert!(
                err.contains("without authentication") && err.contains("`auth`"),
                "{err}"
            );
            // An opt-in does not open an HTTP listener: it has authentication to configure.
            let opted = Listener {
                allow_unauthenticated: true,
                ..open
            };
            assert!(check(&opted).is_err());
            let authed = Listener {
                authenticated: true,
                ..open
            };
            assert_eq!(check(&authed), Ok(None));

            let kafka = listener(Service::Kafka, addr);
            let err = check(&kafka).unwrap_err().to_string();
            assert!(
                err.contains("--allow-unauthenticated") && err.contains("unauthenticated: true"),
                "{err}"
            );
            let opted = Listener {
                allow_unauthenticated: true,
                ..kafka
            };
            let warning = check(&opted).unwrap().expect("a warning");
            assert!(warning.0.contains("no authentication"), "{warning}");
        }
    }

    #[test]
    fn advertised_address_rules() {
        let specific: SocketAddr = "192.168.1.5:9092".parse().unwrap();
        let wildcard: SocketAddr = "0.0.0.0:9092".parse().unwrap();
        assert_eq!(advertised(specific, None), Ok(None));
        let err = advertised(wildcard, None).unwrap_err().to_string();
        assert!(
            err.contains("wildcard") && err.contains("advertised_listener"),
            "{err}"
        );
        assert!(advertised("[::]:9092".parse().unwrap(), None).is_err());
        assert_eq!(
            advertised(wildcard, Some("kafka-1.example:19092")),
            Ok(Some(("kafka-1.example".into(), 19092)))
        );
        assert_eq!(
            advertised(wildcard, Some("[fe80::1]:9092")),
            Ok(Some(("fe80::1".into(), 9092)))
        );
        for bad in ["nohost", ":9092", "h:x", "h:0", "h:70000"] {
            assert!(advertised(wildcard, Some(bad)).is_err(), "{bad}");
        }
    }
}
