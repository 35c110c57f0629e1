//! Port per broker (as Kroxylicious): the bootstrap port, and for broker `n` the port
//! `broker_port_base + n` on 127.0.0.1. Every address a broker hands out (Metadata,
//! FindCoordinator, DescribeCluster) is rewritten to its local port before the client sees it,
//! so the client never connects around the proxy (and never sends plaintext to a broker). A
//! node whose port cannot be formed fails the response instead of leaking the real address.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use kafka_protocol::messages::describe_cluster_response::DescribeClusterResponse;
use kafka_protocol::messages::find_coordinator_response::FindCoordinatorResponse;
use kafka_protocol::messages::metadata_response::MetadataResponse;
use kafka_protocol::protocol::StrBytes;

pub const LOCAL_HOST: &str = "127.0.0.1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error(
        "broker node id {node} has no local port (base {base} + node id is over 65535, or the id is negative); set --broker-port-base lower"
    )]
    NoPort { node: i32, base: u16 },
}

/// The brokers seen so far: node id -> upstream `host:port`.
#[derive(Debug)]
pub struct Routes {
    base: u16,
    upstream: Mutex<BTreeMap<i32, String>>,
}

impl Routes {
    pub fn new(broker_port_base: u16) -> Self {
        Self {
            base: broker_port_base,
            upstream: Mutex::new(BTreeMap::new()),
        }
    }

    /// The local port of broker `node`.
    pub fn local_port(&self, node: i32) -> Result<u16, RouteError> {
        u16::try_from(node)
            .ok()
            .and_then(|n| self.base.checked_add(n))
            .ok_or(RouteError::NoPort {
                node,
                base: self.base,
            })
    }

    /// Where broker `node` really is, as last announced.
    pub fn upstream(&self, node: i32) -> Option<String> {
        self.lock().get(&node).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, String>> {
        self.upstream.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `node` at `host:port` and returns its local port; the node ids newly seen.
    fn learn(
        &self,
        node: i32,
        host: &str,
        port: i32,
        new: &mut Vec<i32>,
    ) -> Result<u16, RouteError> {
        let local = self.local_port(node)?;
        let address = format!("{host}:{port}");
        let mut map = self.lock();
        if map.get(&node) != Some(&address) {
            if !map.contains_key(&node) {
                new.push(node);
            }
            map.insert(node, address);
        }
        Ok(local)
    }

    /// Rewrites every broker of a Metadata response; returns the node ids seen for the first
    /// time (their listeners must exist before the client gets the response).
    pub fn metadata(&self, r: &mut MetadataResponse) -> Result<Vec<i32>, RouteError> {
        let mut new = Vec::new();
        for b in &mut r.brokers {
            let local = self.learn(b.node_id.0, &b.host, b.port, &mut new)?;
            b.host = StrBytes::from_static_str(LOCAL_HOST);
            b.port = i32::from(local);
        }
        Ok(new)
    }

    pub fn find_coordinator(
        &self,
        r: &mut FindCoordinatorResponse,
    ) -> Result<Vec<i32>, RouteError> {
        let mut new = Vec::new();
        // v0-3: one coordinator in the body (node -1 with an error).
        if r.node_id.0 >= 0 && !r.host.is_empty() {
            let local = self.learn(r.node_id.0, &r.host, r.port, &mut new)?;
            r.host = StrBytes::from_static_str(LOCAL_HOST);
            r.port = i32::from(local);
        }
        for c in &mut r.coordinators {
            if c.node_id.0 >= 0 && !c.host.is_empty() {
                let local = self.learn(c.node_id.0, &c.host, c.port, &mut new)?;
                c.host = StrBytes::from_static_str(LOCAL_HOST);
                c.port = i32::from(local);
            }
        }
        Ok(new)
    }

    pub fn describe_cluster(
        &self,
        r: &mut DescribeClusterResponse,
    ) -> Result<Vec<i32>, RouteError> {
        let mut new = Vec::new();
        for b in &mut r.brokers {
            let local = self.learn(b.broker_id.0, &b.host, b.port, &mut new)?;
            b.host = StrBytes::from_static_str(LOCAL_HOST);
            b.port = i32::from(local);
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::metadata_response::MetadataResponseBroker;

    use super::*;

    #[test]
    fn every_broker_address_becomes_a_local_port_and_is_remembered() {
        let routes = Routes::new(19100);
        let mut m = MetadataResponse::default().with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("kafka-1.internal"))
                .with_port(9092),
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(7))
                .with_host(StrBytes::from_static_str("kafka-7.internal"))
                .with_port(9093),
        ]);
        assert_eq!(routes.metadata(&mut m).unwrap(), [1, 7]);
        assert!(m.brokers.iter().all(|b| &*b.host == LOCAL_HOST));
        assert_eq!(m.brokers[1].port, 19107);
        assert_eq!(routes.upstream(7).as_deref(), Some("kafka-7.internal:9093"));
        // Seen again: not new; moved: remembered at its new address.
        let mut c = FindCoordinatorResponse::default().with_coordinators(vec![
            Coordinator::default()
                .with_node_id(BrokerId(7))
                .with_host(StrBytes::from_static_str("kafka-7b.internal"))
                .with_port(9093),
        ]);
        assert!(routes.find_coordinator(&mut c).unwrap().is_empty());
        assert_eq!(c.coordinators[0].port, 19107);
        assert_eq!(
            routes.upstream(7).as_deref(),
            Some("kafka-7b.internal:9093")
        );
    }

    #[test]
    fn a_node_without_a_port_fails_instead_of_leaking_its_address() {
        let routes = Routes::new(65000);
        let mut m = MetadataResponse::default().with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(1000))
                .with_host(StrBytes::from_static_str("kafka.internal"))
                .with_port(9092),
        ]);
        assert_eq!(
            routes.metadata(&mut m),
            Err(RouteError::NoPort {
                node: 1000,
                base: 65000
            })
        );
    }
}
