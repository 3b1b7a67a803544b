//! `runtime.rest`: where Kafka Connect's REST API listens, and who may call it.

use super::*;

impl Checker<'_> {
    /// `{ listen, auth, enabled }`; `None` when `enabled: false`.
    pub(super) fn rest_listener(&mut self, node: &Node) -> Option<RestListener> {
        let what = "`runtime.rest`";
        let mut rest = RestListener::default();
        let mut listen_pos = node.pos;
        let mut enabled = true;
        for (k, v, _) in self.mapping(node, what, Some(&["listen", "auth", "enabled"])) {
            match k {
                "listen" => {
                    listen_pos = v.pos;
                    if let Some(a) = self.listen_addr(v, what) {
                        rest.listen = a;
                    }
                }
                "auth" => rest.auth = self.http_auth(v, "`runtime.rest.auth`"),
                "enabled" => enabled = self.boolean(v, "`enabled`").unwrap_or(true),
                _ => {}
            }
        }
        if !enabled {
            return None;
        }
        self.listener_policy(
            listen_pos,
            sluice_listeners::check(&sluice_listeners::Listener {
                service: sluice_listeners::Service::Rest,
                addr: rest.listen,
                authenticated: rest.auth.is_enabled(),
                allow_unauthenticated: false,
            }),
        );
        Some(rest)
    }
}
