//! The sled store against openraft's own storage test suite.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use taskraft_proto::{NodeId, TypeConfig};
use tempfile::TempDir;

use super::{LogStore, StateMachine};

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for SledBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, sm) = super::open(dir.path(), "suite").expect("open store");
        Ok((dir, log, sm))
    }
}

#[test]
fn sled_store_passes_openraft_storage_suite() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(SledBuilder)
}

#[test]
fn data_dir_of_another_cluster_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(super::open(dir.path(), "alpha").unwrap());
    let err = super::open(dir.path(), "beta").err().expect("refused");
    assert!(err.to_string().contains("belongs to cluster \"alpha\""), "{err}");
}
