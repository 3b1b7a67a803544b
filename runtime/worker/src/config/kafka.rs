//! `runtime.kafka`: the Apache Kafka cluster the pipelines run on instead of the embedded
//! log (`bootstrap_servers`, `security`, `group`), checked as `sluice_kafka` defines it.

use super::*;
use sluice_kafka::{KafkaSettings, Protocol, SaslMechanism, Security};

impl Checker<'_> {
    pub(super) fn kafka_settings(&mut self, node: &Node) -> Option<KafkaSettings> {
        let what = "`runtime.kafka`";
        let (mut servers, mut group, mut security) = (None, None, None);
        // Where each setting is, so that a problem points at its line.
        let mut at: Vec<(&str, Pos)> = Vec::new();
        let allowed = ["bootstrap_servers", "security", "group"];
        for (k, v, _) in self.mapping(node, what, Some(&allowed)) {
            match k {
                "bootstrap_servers" => {
                    servers = self.string(v, "`runtime.kafka.bootstrap_servers`")
                }
                "group" => group = self.string(v, "`runtime.kafka.group`"),
                "security" => security = self.kafka_security(v),
                _ => {}
            }
            at.push((k, v.pos));
        }
        node.as_map()?;
        let (Some(bootstrap_servers), Some(group)) = (servers, group) else {
            self.err(
                node.pos,
                format!("{what} needs `bootstrap_servers` (`host:port,…`) and `group` (the id the workers of one deployment share)"),
            );
            return None;
        };
        let settings = KafkaSettings {
            bootstrap_servers,
            security,
            group,
        };
        let problems = settings.problems();
        for p in &problems {
            let pos = at
                .iter()
                .find(|(k, _)| p.starts_with(&format!("`{k}")))
                .map_or(node.pos, |(_, pos)| *pos);
            self.err(pos, format!("{what}: {p}"));
        }
        problems.is_empty().then_some(settings)
    }

    fn kafka_security(&mut self, node: &Node) -> Option<Security> {
        let what = "`runtime.kafka.security`";
        let allowed = [
            "protocol",
            "sasl_mechanism",
            "username",
            "password",
            "ca_file",
        ];
        let mut s = Security {
            protocol: Protocol::Plaintext,
            sasl_mechanism: None,
            username: None,
            password: None,
            ca_file: None,
        };
        let mut protocol_given = false;
        for (k, v, _) in self.mapping(node, what, Some(&allowed)) {
            match k {
                "protocol" => {
                    protocol_given = true;
                    let text = self.string(v, "`security.protocol`")?;
                    match Protocol::parse(&text) {
                        Some(p) => s.protocol = p,
                        None => {
                            self.err(
                                v.pos,
                                format!(
                                    "`security.protocol`: `{text}` is not one of {}",
                                    Protocol::NAMES.join(", ")
                                ),
                            );
                            return None;
                        }
                    }
                }
                "sasl_mechanism" => {
                    let text = self.string(v, "`security.sasl_mechanism`")?;
                    match SaslMechanism::parse(&text) {
                        Some(m) => s.sasl_mechanism = Some(m),
                        None => {
                            self.err(
                                v.pos,
                                format!(
                                    "`security.sasl_mechanism`: `{text}` is not one of {}",
                                    SaslMechanism::NAMES.join(", ")
                                ),
                            );
                            return None;
                        }
                    }
                }
                "username" => s.username = self.string(v, "`security.username`"),
                "password" => s.password = self.string(v, "`security.password`"),
                "ca_file" => s.ca_file = self.string(v, "`security.ca_file`").map(PathBuf::from),
                _ => {}
            }
        }
        if node.as_map().is_some() && !protocol_given {
            self.err(
                node.pos,
                format!(
                    "{what} needs `protocol` (one of {})",
                    Protocol::NAMES.join(", ")
                ),
            );
            return None;
        }
        Some(s)
    }
}
