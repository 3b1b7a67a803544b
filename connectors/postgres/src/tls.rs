//! TLS to Postgres, as libpq's `sslmode` asks for it: `disable`, `allow` and `prefer` (TLS
//! when the server offers it, unverified), `require` (TLS or nothing; unverified unless
//! `sslrootcert` is given, then as `verify-ca`, as libpq does), `verify-ca` (the server's
//! chain checked against `sslrootcert`, or the system's roots) and `verify-full` (the chain
//! and the host name). `sslcert`/`sslkey` give a client certificate. Through rustls (ring),
//! for the plain SQL connections (tokio-postgres, [`MakeRustlsConnect`]) and the replication
//! connection alike ([`PgTls::connector`]).
//!
//! tokio-postgres knows only `disable`, `prefer` and `require` and no `ssl*` file: the
//! connection string is read here first ([`PgConnection::parse`]), its TLS settings taken
//! out, and the rest handed to tokio-postgres.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    Allow,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                "sslmode `{other}`: one of disable, allow, prefer, require, verify-ca, verify-full"
            ))
            }
        })
    }
}

/// The TLS part of a connection string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgTls {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// A connection string: tokio-postgres' settings and the TLS ones.
#[derive(Debug, Clone)]
pub struct PgConnection {
    pub config: tokio_postgres::Config,
    pub tls: PgTls,
}

impl std::ops::Deref for PgConnection {
    type Target = tokio_postgres::Config;
    fn deref(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

/// What stops a TLS connection before it starts (a file, a setting).
#[derive(Debug, thiserror::Error)]
#[error("TLS to Postgres: {0}")]
pub struct TlsError(pub String);

const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

impl PgConnection {
    /// Reads libpq key/value (`host=… sslmode=verify-full sslrootcert=/etc/ca.pem`) or a
    /// `postgres://` URL; no I/O.
    pub fn parse(text: &str) -> Result<PgConnection, String> {
        let (rest, pairs) = if text.starts_with("postgres://") || text.starts_with("postgresql://")
        {
            split_url(text)?
        } else {
            split_key_values(text)?
        };
        let mut tls = PgTls::default();
        for (k, v) in pairs {
            match k.as_str() {
                "sslmode" => tls.mode = SslMode::parse(&v)?,
                "sslrootcert" => tls.root_cert = Some(PathBuf::from(v)),
                "sslcert" => tls.cert = Some(PathBuf::from(v)),
                "sslkey" => tls.key = Some(PathBuf::from(v)),
                _ => unreachable!("only TLS keys are taken out"),
            }
        }
        if tls.cert.is_some() != tls.key.is_some() {
            return Err(
                "`sslcert` and `sslkey` go together (a client certificate and its key)".into(),
            );
        }
        let mut config = tokio_postgres::Config::from_str(&rest).map_err(|e| e.to_string())?;
        config.ssl_mode(match tls.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        Ok(PgConnection { config, tls })
    }
}

/// Key/value text without its TLS keys, and those keys' values.
#[allow(clippy::type_complexity)]
fn split_key_values(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut rest = String::new();
    let mut tls = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!("`{key}` has no `=value`"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.push(chars.next().ok_or("a value ends in `\\`")?),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("the value of `{key}` has no closing quote")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    value.push(chars.next().ok_or("a value ends in `\\`")?);
                } else {
                    value.push(c);
                }
            }
        }
        if TLS_KEYS.contains(&key.as_str()) {
            tls.push((key, value));
        } else {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            rest.push_str(&format!("{key}='{quoted}' "));
        }
    }
    Ok((rest, tls))
}

/// A URL without its TLS query parameters, and those parameters' values.
#[allow(clippy::type_complexity)]
fn split_url(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let Some((base, query)) = text.split_once('?') else {
        return Ok((text.to_string(), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut tls = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if TLS_KEYS.contains(&k) {
            tls.push((k.to_string(), percent_decode(v)?));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, tls))
}

fn percent_decode(v: &str) -> Result<String, String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = v
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("`{v}`: a `%` without two hex digits"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{v}` is not UTF-8"))
}

impl PgTls {
    /// Whether a connection tries TLS at all.
    pub fn wanted(&self) -> bool {
        self.mode != SslMode::Disable
    }

    /// Whether a server that does not offer TLS is refused.
    pub fn required(&self) -> bool {
        matches!(
            self.mode,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }

    /// The rustls settings for this mode (reads the certificate files).
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?;
        let check_chain = matches!(self.mode, SslMode::VerifyCa | SslMode::VerifyFull)
            || (self.mode == SslMode::Require && self.root_cert.is_some());
        let verifier: Arc<dyn ServerCertVerifier> = if check_chain {
            let roots = Arc::new(self.roots()?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| TlsError(e.to_string()))?;
            if self.mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        } else {
            Arc::new(Unverified(provider))
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let certs = CertificateDer::pem_file_iter(cert)
                    .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| TlsError(format!("sslcert {}: {e}", cert.display())))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| TlsError(format!("sslkey {}: {e}", key.display())))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| TlsError(format!("sslcert/sslkey: {e}")))
            }
            _ => Ok(builder.with_no_client_auth()),
        }
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| TlsError(format!("sslrootcert {}: {e}", path.display())))?;
                if certs.is_empty() {
                    return Err(TlsError(format!(
                        "sslrootcert {}: no certificate in the file",
                        path.display()
                    )));
                }
                for c in certs {
                    roots
                        .add(c)
                        .map_err(|e| TlsError(format!("sslrootcert {}: {e}", path.display())))?;
                }
            }
            None => {
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
            }
        }
        Ok(roots)
    }

    /// A TLS connector for the replication connection.
    pub fn connector(&self) -> Result<tokio_rustls::TlsConnector, TlsError> {
        Ok(tokio_rustls::TlsConnector::from(Arc::new(
            self.client_config()?,
        )))
    }
}

/// The server name to check (and send) for `host`.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string())
        .map_err(|e| TlsError(format!("`{host}` is not a host name TLS can check: {e}")))
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer`/`require` without a root certificate: encrypted, the server not checked (as
/// libpq); the handshake's signatures still are.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_keys_are_taken_out_of_key_values() {
        let c = PgConnection::parse(
            r"host=db.example port = 5433 dbname=shop user=sluice password='it\'s' sslmode=verify-full sslrootcert='/etc/my ca.pem'",
        )
        .unwrap();
        assert_eq!(c.tls.mode, SslMode::VerifyFull);
        assert_eq!(c.tls.root_cert, Some(PathBuf::from("/etc/my ca.pem")));
        assert_eq!(c.get_password(), Some(&b"it's"[..]));
        assert_eq!(c.get_ports(), &[5433]);
        assert_eq!(c.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
    }

    #[test]
    fn tls_keys_are_taken_out_of_urls() {
        let c = PgConnection::parse(
            "postgres://u:pw@127.0.0.1:5432/db?sslmode=verify-ca&sslrootcert=%2Ftmp%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(c.tls.mode, SslMode::VerifyCa);
        assert_eq!(c.tls.root_cert, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(c.get_application_name(), Some("x"));
        let plain = PgConnection::parse("postgres://u@h/db").unwrap();
        assert_eq!(plain.tls.mode, SslMode::Prefer);
    }

    #[test]
    fn bad_tls_settings_say_what_is_wrong() {
        let e = PgConnection::parse("host=h dbname=d sslmode=sometimes").unwrap_err();
        assert!(e.contains("verify-full"), "{e}");
        let e = PgConnection::parse("host=h dbname=d sslcert=/c.pem").unwrap_err();
        assert!(e.contains("sslkey"), "{e}");
        let e = PgConnection::parse("host=h dbname='d").unwrap_err();
        assert!(e.contains("closing quote"), "{e}");
        let missing = PgTls {
            mode: SslMode::VerifyFull,
            root_cert: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..PgTls::default()
        };
        let e = missing.client_config().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
