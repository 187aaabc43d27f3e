//! Hostile input: malformed and truncated frames sent to a live node's
//! client and peer ports, and random bytes fed to every decoder that reads
//! from the network or the disk. Nothing may crash a node or change its table.

use std::time::Duration;

use proptest::prelude::*;
use taskraft_core::{NewTask, Status};
use taskraft_master::store::{decode_image, parse_snapshot};
use taskraft_proto::auth::Credentials;
use taskraft_proto::client::{ClientServiceRequest, ClientServiceResponse};
use taskraft_proto::peer::PeerServiceRequest;
use taskraft_tests::TestCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Frames a peer could send: garbage, a length over the frame limit, a
/// length with a truncated body, and a well-framed body that is not bincode.
fn bad_frames() -> Vec<Vec<u8>> {
    let mut framed_garbage = 64u32.to_be_bytes().to_vec();
    framed_garbage.extend([0xff; 64]);
    vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        u32::MAX.to_be_bytes().to_vec(),
        [1000u32.to_be_bytes().to_vec(), vec![7; 10]].concat(),
        framed_garbage,
        vec![0; 3],
    ]
}

/// Sends `bytes` raw, and again after a valid handshake, so that both the
/// handshake and the frame decoder see them.
async fn send_and_close(addr: &str, bytes: &[u8]) {
    send_raw(addr, bytes).await;
    send_raw(addr, &[Credentials::default().hello(), bytes.to_vec()].concat()).await;
}

async fn send_raw(addr: &str, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut sink)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_change_nothing_and_the_node_keeps_serving() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let client = cluster.client();
    let task = NewTask {
        data: b"before".to_vec(),
        key: None,
        priority: 0,
        max_attempts: 0,
        ..Default::default()
    };
    client.submit(vec![task]).await.unwrap();
    let before = cluster.converged().await;
    for id in cluster.running() {
        let node = cluster.config.node(id).unwrap();
        for frame in bad_frames() {
            send_and_close(&node.client_addr, &frame).await;
            send_and_close(&node.peer_addr, &frame).await;
        }
    }
    assert_eq!(cluster.converged().await, before, "garbage changed a table");
    assert_eq!(cluster.leader().await, leader, "garbage cost the leader its leadership");
    let task = NewTask {
        data: b"after".to_vec(),
        key: None,
        priority: 0,
        max_attempts: 0,
        ..Default::default()
    };
    client.submit(vec![task]).await.unwrap();
    assert_eq!(client.all_tasks(Some(Status::Idle)).await.unwrap().len(), 2);
    cluster.shutdown().await;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn wire_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = bincode::deserialize::<tarpc::ClientMessage<ClientServiceRequest>>(&bytes);
        let _ = bincode::deserialize::<tarpc::Response<ClientServiceResponse>>(&bytes);
        let _ = bincode::deserialize::<tarpc::ClientMessage<PeerServiceRequest>>(&bytes);
    }

    #[test]
    fn snapshot_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok((_, rows)) = parse_snapshot(&bytes) {
            let _ = decode_image(rows);
        }
        let _ = decode_image(&bytes);
    }
}
