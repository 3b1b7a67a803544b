//! https:// against a real TLS server on 127.0.0.1 (tokio-rustls) that trusts only a client
//! certificate of our test CA: `tls.ca_file`, `tls.cert_file` and `tls.key_file` at work,
//! and what each missing piece says.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

use super::*;

struct Pki {
    dir: tempfile::TempDir,
    server: rustls::ServerConfig,
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all from the CA.
fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    server
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    let server = server.signed_by(&server_key, &ca, &ca_key).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["sluice-client".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca, &ca_key)
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("client.pem"), client.pem()).unwrap();
    std::fs::write(dir.path().join("client.key"), client_key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("junk.pem"), "not a certificate").unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        )
        .unwrap();
    Pki { dir, server }
}

/// Answers every request on a TLS connection with 200 `ok`.
async fn tls_server(config: rustls::ServerConfig) -> String {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return; // a client we do not trust: the handshake failed
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    format!("https://127.0.0.1:{}/", addr.port())
}

fn transport(tls: TlsFiles) -> Result<HttpTransport, TransportError> {
    HttpTransport::new(&TransportConfig {
        method: reqwest::Method::GET,
        headers: Vec::new(),
        content_type: String::new(),
        compression: Compression::None,
        auth: Auth::None,
        timeout: Duration::from_secs(10),
        tls,
    })
}

#[tokio::test]
async fn a_private_ca_and_a_client_certificate_reach_a_server_that_demands_both() {
    let pki = pki();
    let url = tls_server(pki.server.clone()).await;
    let file = |name: &str| Some(pki.dir.path().join(name));
    let full = TlsFiles {
        ca_file: file("ca.pem"),
        cert_file: file("client.pem"),
        key_file: file("client.key"),
    };
    let answer = transport(full.clone())
        .unwrap()
        .get(&url, 1024)
        .await
        .unwrap();
    assert_eq!((answer.status, answer.body.as_slice()), (200, &b"ok"[..]));

    // Without our CA the server's certificate is not trusted.
    let untrusted = TlsFiles {
        ca_file: None,
        ..full.clone()
    };
    let NoAnswer::Lost(why) = transport(untrusted)
        .unwrap()
        .get(&url, 1024)
        .await
        .unwrap_err()
    else {
        panic!("a retriable failure")
    };
    assert!(why.to_lowercase().contains("certificate"), "{why}");
    // Without a client certificate the server refuses the handshake.
    let anonymous = TlsFiles {
        cert_file: None,
        key_file: None,
        ..full.clone()
    };
    assert!(transport(anonymous).unwrap().get(&url, 1024).await.is_err());

    // Files that are missing or not PEM are named.
    let missing = TlsFiles {
        ca_file: file("nope.pem"),
        ..Default::default()
    };
    let e = transport(missing).unwrap_err().to_string();
    assert!(
        e.starts_with("tls.ca_file ") && e.contains("nope.pem: cannot read it"),
        "{e}"
    );
    let junk = TlsFiles {
        ca_file: file("junk.pem"),
        ..Default::default()
    };
    let e = transport(junk).unwrap_err().to_string();
    assert!(e.contains("holds no PEM certificate"), "{e}");
    let bad_key = TlsFiles {
        cert_file: file("client.pem"),
        key_file: file("junk.pem"),
        ..Default::default()
    };
    let e = transport(bad_key).unwrap_err().to_string();
    assert!(
        e.starts_with("tls.cert_file ") && e.contains("with key_file"),
        "{e}"
    );
}
