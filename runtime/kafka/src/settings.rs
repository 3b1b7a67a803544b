//! `runtime.kafka`: where the cluster is, how to authenticate to it, and the group the
//! workers of one deployment share. Checked without I/O; turned into librdkafka settings.

use std::path::PathBuf;

use rdkafka::ClientConfig;

/// The cluster a deployment runs on, as `runtime.kafka` declares it.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `bootstrap_servers`: `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// `security`: absent means PLAINTEXT.
    pub security: Option<Security>,
    /// `group`: the workers of one deployment share it; it also names the deployment's
    /// topics on the cluster (`<group>-offsets`, `<group>-configs`, `<group>-tasks.<connector>`).
    pub group: String,
}

/// `runtime.kafka.security`.
#[derive(Clone, PartialEq, Eq)]
pub struct Security {
    pub protocol: Protocol,
    pub sasl_mechanism: Option<SaslMechanism>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `ca_file`: the PEM file of the authorities the brokers' certificates chain to.
    pub ca_file: Option<PathBuf>,
}

// The password never reaches a log line or an error.
impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("security", &self.security)
            .field("group", &self.group)
            .finish()
    }
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("protocol", &self.protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Kafka's `security.protocol` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    pub const NAMES: [&'static str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

    pub fn parse(s: &str) -> Option<Protocol> {
        Some(match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Protocol::Plaintext,
            "SSL" => Protocol::Ssl,
            "SASL_PLAINTEXT" => Protocol::SaslPlaintext,
            "SASL_SSL" => Protocol::SaslSsl,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        Protocol::NAMES[self as usize]
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }

    fn uses_tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }
}

/// The SASL mechanisms librdkafka implements without Kerberos.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub const NAMES: [&'static str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

    pub fn parse(s: &str) -> Option<SaslMechanism> {
        Some(match s.to_ascii_uppercase().as_str() {
            "PLAIN" => SaslMechanism::Plain,
            "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
            "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        SaslMechanism::NAMES[self as usize]
    }
}

impl KafkaSettings {
    /// What is wrong with the settings, each as a sentence naming the setting; empty when
    /// they can be used. No I/O: whether the cluster answers is found out at start.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.bootstrap_servers.trim().is_empty() {
            problems.push("`bootstrap_servers` is empty: list at least one `host:port`".into());
        }
        for server in self.bootstrap_servers.split(',').map(str::trim) {
            if server.is_empty() {
                continue;
            }
            let port = server.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
            if !matches!(port, Some(Ok(p)) if p > 0) {
                problems.push(format!(
                    "`bootstrap_servers`: `{server}` is not `host:port` (e.g. `kafka-1:9092`)"
                ));
            }
        }
        if !valid_group(&self.group) {
            problems.push(format!(
                "`group`: `{}` must be 1 to 200 letters, digits, `.`, `_` or `-` (it names the deployment's topics)",
                self.group
            ));
        }
        if let Some(s) = &self.security {
            match (s.protocol.uses_sasl(), s.sasl_mechanism) {
                (true, None) => problems.push(format!(
                    "`security.protocol: {}` needs `sasl_mechanism` (one of {})",
                    s.protocol.name(),
                    SaslMechanism::NAMES.join(", ")
                )),
                (false, Some(m)) => problems.push(format!(
                    "`security.sasl_mechanism: {}` needs `protocol: SASL_SSL` or `SASL_PLAINTEXT` (it is {})",
                    m.name(),
                    s.protocol.name()
                )),
                _ => {}
            }
            if s.protocol.uses_sasl() && (s.username.is_none() || s.password.is_none()) {
                problems.push(format!(
                    "`security.protocol: {}` needs `username` and `password`",
                    s.protocol.name()
                ));
            }
            if !s.protocol.uses_sasl() && (s.username.is_some() || s.password.is_some()) {
                problems.push(format!(
                    "`security.username` and `password` are used only with SASL; `protocol` is {}",
                    s.protocol.name()
                ));
            }
            if s.ca_file.is_some() && !s.protocol.uses_tls() {
                problems.push(format!(
                    "`security.ca_file` is used only with TLS (`protocol: SSL` or `SASL_SSL`); `protocol` is {}",
                    s.protocol.name()
                ));
            }
        }
        problems
    }

    /// The librdkafka settings every client of the deployment starts from.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        // librdkafka's own log lines go through its default logger at warning level.
        c.set("log_level", "4");
        // Asking about a topic must not create it (with the broker's defaults): topics are
        // created as the pipeline file declares them.
        c.set("allow.auto.create.topics", "false");
        if let Some(s) = &self.security {
            c.set("security.protocol", s.protocol.name());
            if let Some(m) = s.sasl_mechanism {
                c.set("sasl.mechanism", m.name());
            }
            if let Some(u) = &s.username {
                c.set("sasl.username", u);
            }
            if let Some(p) = &s.password {
                c.set("sasl.password", p);
            }
            if let Some(ca) = &s.ca_file {
                c.set("ssl.ca.location", ca.to_string_lossy());
            }
        }
        c
    }

    /// The compacted topic holding source positions.
    pub fn offsets_topic(&self) -> String {
        format!("{}-offsets", self.group)
    }

    /// The compacted topic holding connectors created over the REST API and the states
    /// asked of every connector (Kafka Connect's `config.storage.topic`).
    pub fn configs_topic(&self) -> String {
        format!("{}-configs", self.group)
    }
}

fn valid_group(group: &str) -> bool {
    (1..=200).contains(&group.len())
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> KafkaSettings {
        KafkaSettings {
            bootstrap_servers: "kafka-1:9092,kafka-2:9092".into(),
            security: None,
            group: "sluice-shop".into(),
        }
    }

    #[test]
    fn plain_settings_are_fine_and_become_librdkafkas() {
        let s = plain();
        assert!(s.problems().is_empty());
        let c = s.client_config();
        assert_eq!(
            c.get("bootstrap.servers"),
            Some("kafka-1:9092,kafka-2:9092")
        );
        assert_eq!(c.get("security.protocol"), None);
        assert_eq!(s.offsets_topic(), "sluice-shop-offsets");
    }

    #[test]
    fn sasl_over_tls_takes_every_setting_and_hides_the_password() {
        let mut s = plain();
        s.security = Some(Security {
            protocol: Protocol::SaslSsl,
            sasl_mechanism: Some(SaslMechanism::ScramSha512),
            username: Some("sluice".into()),
            password: Some("s3cret".into()),
            ca_file: Some("/etc/ssl/kafka-ca.pem".into()),
        });
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        let c = s.client_config();
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.password"), Some("s3cret"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/ssl/kafka-ca.pem"));
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn each_inconsistency_is_named() {
        let mut s = plain();
        s.bootstrap_servers = "kafka-1, :x".into();
        s.group = "has space".into();
        s.security = Some(Security {
            protocol: Protocol::SaslPlaintext,
            sasl_mechanism: None,
            username: None,
            password: None,
            ca_file: Some("/ca.pem".into()),
        });
        let p = s.problems().join("\n");
        assert!(p.contains("`kafka-1` is not `host:port`"), "{p}");
        assert!(p.contains("`:x` is not"), "{p}");
        assert!(p.contains("`group`: `has space`"), "{p}");
        assert!(p.contains("needs `sasl_mechanism`"), "{p}");
        assert!(p.contains("needs `username` and `password`"), "{p}");
        assert!(
            p.contains("`security.ca_file` is used only with TLS"),
            "{p}"
        );
        assert_eq!(Protocol::parse("sasl_ssl"), Some(Protocol::SaslSsl));
        assert_eq!(SaslMechanism::parse("GSSAPI"), None);
    }
}
