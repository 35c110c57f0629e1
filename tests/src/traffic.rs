//! An application's traffic during an operation that must interrupt nothing (a signing-key
//! rotation): numbered records produced all along, then read back in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kafka_e2ee_client::config::EncryptionClient;
use kafka_e2ee_client::producer::OutgoingRecord;
use rdkafka::consumer::Consumer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;

use crate::unique;

/// Records `r0`, `r1`, ... produced to a one-partition topic until stopped.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    producing: JoinHandle<u32>,
}

impl Traffic {
    /// Starts producing through `client`, one record every `pause`; every send must succeed.
    #[expect(
        clippy::unwrap_used,
        reason = "test support: a failed send fails the test"
    )]
    pub fn start(client: Arc<EncryptionClient>, topic: &str, pause: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let producing = tokio::spawn({
            let (topic, stop) = (topic.to_owned(), Arc::clone(&stop));
            async move {
                let producer = client.producer().unwrap();
                let mut sent = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    producer
                        .send_and_wait(OutgoingRecord::new(&topic, format!("r{sent}").as_bytes()))
                        .await
                        .unwrap();
                    sent += 1;
                    tokio::time::sleep(pause).await;
                }
                sent
            }
        });
        Self { stop, producing }
    }

    /// Stops producing; returns how many records were sent.
    #[expect(
        clippy::unwrap_used,
        reason = "test support: a failed producer fails the test"
    )]
    pub async fn stop(self) -> u32 {
        self.stop.store(true, Ordering::Relaxed);
        self.producing.await.unwrap()
    }
}

/// Reads `sent` records of partition 0 of `topic` from the beginning through a new consumer of
/// `client`, and asserts they are `r0` .. in order, without a single error.
#[expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a failed read fails the test"
)]
pub async fn assert_read_in_order(client: &EncryptionClient, topic: &str, sent: u32) {
    let consumer = client.consumer(&unique("in-order")).unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.inner().assign(&tpl).unwrap();
    for i in 0..sent {
        let r = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
            .await
            .expect("a record within 10 s");
        assert_eq!(r.unwrap().value.unwrap(), format!("r{i}").into_bytes());
    }
}
