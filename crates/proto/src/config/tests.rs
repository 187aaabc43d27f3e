//! Config parsing and validation: every refusal names its field.

use super::*;

const GOOD: &str = r#"
    [cluster]
    name = "demo"
    [[node]]
    id = 1
    peer_addr = "127.0.0.1:7101"
    client_addr = "127.0.0.1:7001"
    data_dir = "data/node1"
    [[node]]
    id = 2
    peer_addr = "127.0.0.1:7102"
    client_addr = "127.0.0.1:7002"
    data_dir = "data/node2"
    [[node]]
    id = 3
    peer_addr = "127.0.0.1:7103"
    client_addr = "127.0.0.1:7003"
    data_dir = "data/node3"
"#;

/// GOOD with `line` added to its `[cluster]` table.
fn cluster_with(line: &str) -> String {
    GOOD.replace("name = \"demo\"", &format!("name = \"demo\"\n{line}"))
}

fn error_of(text: &str) -> String {
    ClusterConfig::parse(text).unwrap_err().to_string()
}

#[test]
fn defaults_fill_what_is_left_out() {
    let c = ClusterConfig::parse(GOOD).unwrap();
    assert_eq!(c.cluster.lease_timeout_ms, 3000);
    assert_eq!(c.cluster.election_timeout_ms, [300, 600]);
    assert_eq!(c.cluster.retention_ms, 86_400_000);
    assert_eq!(c.cluster.snapshot_every, 5000);
    assert_eq!(c.cluster.group_commit_wait_us, 300);
    assert_eq!(c.seeds(), vec!["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]);
}

#[test]
fn duplicate_id_is_named() {
    let text = GOOD.replace("id = 2", "id = 1");
    assert!(
        error_of(&text).contains("node[1].id: id 1 is used by two nodes"),
        "{}",
        error_of(&text)
    );
}

#[test]
fn bad_address_is_named() {
    let text = GOOD.replace("127.0.0.1:7002", "localhost-7002");
    assert!(error_of(&text).contains("node[1].client_addr"), "{}", error_of(&text));
}

#[test]
fn even_node_count_is_refused() {
    let two = &GOOD[..GOOD.find("[[node]]\n    id = 3").unwrap()];
    assert!(error_of(two).contains("2 nodes listed"), "{}", error_of(two));
    let none = &GOOD[..GOOD.find("[[node]]").unwrap()];
    assert!(error_of(none).contains("no [[node]] tables"), "{}", error_of(none));
}

#[test]
fn unknown_field_is_refused() {
    let text = cluster_with("lease_timeout = 5");
    assert!(error_of(&text).contains("unknown field"), "{}", error_of(&text));
}

#[test]
fn election_timeout_must_exceed_heartbeat() {
    let text = cluster_with("heartbeat_interval_ms = 400");
    assert!(error_of(&text).contains("cluster.heartbeat_interval_ms"), "{}", error_of(&text));
}

#[test]
fn unknown_id_lists_the_known_ones() {
    let c = ClusterConfig::parse(GOOD).unwrap();
    assert!(c.node(7).unwrap_err().to_string().contains("the ids are 1, 2, 3"));
}

#[test]
fn a_retention_too_short_to_read_a_result_is_refused() {
    let text = cluster_with("retention_ms = 10");
    assert!(error_of(&text).contains("cluster.retention_ms: 10 ms is too short"));
    let keep = cluster_with("retention_ms = 0");
    assert_eq!(ClusterConfig::parse(&keep).unwrap().cluster.retention_ms, 0);
}

#[test]
fn snapshots_too_often_are_refused() {
    let text = cluster_with("snapshot_every = 10");
    assert!(error_of(&text).contains("cluster.snapshot_every: 10 entries"), "{}", error_of(&text));
    let ok = cluster_with("snapshot_every = 100");
    assert_eq!(ClusterConfig::parse(&ok).unwrap().cluster.snapshot_every, 100);
    let huge = cluster_with("snapshot_every = 2000000000");
    assert!(
        error_of(&huge).contains("cluster.snapshot_every: must be at most"),
        "{}",
        error_of(&huge)
    );
}

#[test]
fn initial_members_default_to_every_node_and_may_name_a_subset() {
    let c = ClusterConfig::parse(GOOD).unwrap();
    assert_eq!(c.initial_ids(), BTreeSet::from([1, 2, 3]));
    let one = cluster_with("initial_members = [2]");
    let c = ClusterConfig::parse(&one).unwrap();
    assert_eq!(c.initial_ids(), BTreeSet::from([2]));
    assert_eq!(c.initial_membership().keys().copied().collect::<Vec<_>>(), vec![2]);
}

#[test]
fn initial_members_must_be_listed_odd_and_unique() {
    let with = |ids: &str| cluster_with(&format!("initial_members = {ids}"));
    let e = error_of(&with("[1, 4, 2]"));
    assert!(e.contains("cluster.initial_members") && e.contains("4 is not the id"), "{e}");
    let e = error_of(&with("[1, 2]"));
    assert!(e.contains("cluster.initial_members") && e.contains("2 initial members"), "{e}");
    let e = error_of(&with("[1, 1, 2]"));
    assert!(e.contains("1 is listed twice"), "{e}");
    let e = error_of(&with("[]"));
    assert!(e.contains("0 initial members"), "{e}");
}

#[test]
fn four_listed_nodes_are_fine_when_three_form_the_cluster() {
    let four = format!(
        "{GOOD}\n[[node]]\nid = 4\npeer_addr = \"127.0.0.1:7104\"\nclient_addr = \"127.0.0.1:7004\"\ndata_dir = \"data/node4\"\n"
    );
    assert!(error_of(&four).contains("4 nodes listed"), "{}", error_of(&four));
    let text = four.replace("name = \"demo\"", "name = \"demo\"\ninitial_members = [1, 2, 3]");
    assert_eq!(ClusterConfig::parse(&text).unwrap().initial_ids(), BTreeSet::from([1, 2, 3]));
}

#[test]
fn a_group_commit_wait_is_bounded() {
    let long = cluster_with("group_commit_wait_us = 10001");
    assert!(error_of(&long).contains("cluster.group_commit_wait_us"), "{}", error_of(&long));
    let off = cluster_with("group_commit_wait_us = 0");
    assert_eq!(ClusterConfig::parse(&off).unwrap().cluster.group_commit_wait_us, 0);
    let most = cluster_with("group_commit_wait_us = 10000");
    assert_eq!(ClusterConfig::parse(&most).unwrap().cluster.group_commit_wait_us, 10_000);
}
