//! Snapshots of the state machine: encoding one for openraft's builder,
//! writing its file, and installing one from the leader durably.

use super::*;

impl StateMachine {
    /// [`RaftStateMachine::get_snapshot_builder`].
    pub(super) async fn snapshot_builder(&mut self) -> SnapshotBuilder {
        // openraft builds the snapshot in another task while later entries
        // apply, so take a consistent view now: the rows of this moment,
        // shared with the table (`Table::rows_now`), which the builder
        // encodes while applies go on. Taking them copies the index of rows,
        // ~0.1 s for a million tasks, on a blocking thread so that Raft's own
        // tasks (heartbeats) keep running.
        let started = Instant::now();
        let (applied, dirty, writer) =
            (self.applied.clone(), self.dirty.clone(), self.writer.clone());
        let taken = tokio::task::spawn_blocking(move || {
            let a = applied.read();
            let locked = Instant::now();
            // The tree catches up with the image; the builder flushes it.
            let mut dirty = dirty.lock();
            let written = writer.write_blocking(dirty.batch(&a));
            drop(dirty);
            let rows = a.table.rows_now();
            (a.last_applied, a.membership.clone(), rows, written, locked.elapsed())
        })
        .await
        .expect("taking the rows does not panic");
        let (last_applied, membership, rows, written, held_up) = taken;
        SnapshotBuilder {
            last_applied,
            membership,
            rows: Some(rows),
            held_up,
            unwritten: written.err(),
            file: self.snapshot_file.clone(),
            writer: self.writer.clone(),
            metrics: self.metrics.clone(),
            cover: self.cover.clone(),
            started,
        }
    }

    /// [`RaftStateMachine::install_snapshot`].
    pub(super) async fn install(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        data: Vec<u8>,
    ) -> Result<(), StorageError<NodeId>> {
        let size = data.len();
        let membership = meta.last_membership.clone();
        let index = meta.last_log_id.map_or(0, |l| l.index);
        tracing::info!(index, bytes = size, "installing a snapshot from the leader");
        let table = self.install_durably(meta, data).await?;
        tracing::info!(index, "snapshot installed");
        // From now on a restart finds this snapshot: the log may purge up to it.
        self.cover.reach(meta.last_log_id.map(|l| l.index));
        self.metrics.snapshot_bytes.set(size as i64);
        let mut a = write_lock(&self.applied).await;
        let old = std::mem::replace(
            &mut *a,
            Applied { table, last_applied: meta.last_log_id, membership },
        );
        // Changes from before the snapshot are in its rows, or gone with them.
        *self.dirty.lock() = Dirty::default();
        drop(a);
        // Freeing a large table takes a while too.
        tokio::task::spawn_blocking(move || drop(old));
        self.registry.send_modify(|v| *v += 1);
        self.applied_index.send_replace(index);
        Ok(())
    }

    /// Decodes a snapshot from the leader, writes its file and the table's
    /// rows, and flushes them: once this returns, a restart finds it.
    async fn install_durably(
        &self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        data: Vec<u8>,
    ) -> Result<Table, StorageError<NodeId>> {
        // Decoding the image and rewriting the tree take seconds for a large
        // table: a blocking thread does them, so that a single-threaded
        // master keeps answering its leader meanwhile.
        // The tree holds every batch queued before, and this one replaces it.
        self.writer.flush().await.map_err(table_err)?;
        let (file, m) = (self.snapshot_file.clone(), meta.clone());
        let (tree, writer) = (self.tree.clone(), self.writer.clone());
        let table = tokio::task::spawn_blocking(move || -> Result<Table, StorageError<NodeId>> {
            let table = decode_image(&data)
                .map_err(|e| {
                    StorageIOError::read_snapshot(Some(m.signature()), &std::io::Error::other(e))
                })?
                .into_table();
            let batch = replacing_batch(&tree, &table, m.last_log_id, &m.last_membership)
                .map_err(|e| StorageIOError::write_state_machine(&e))?;
            // The file first: a crash before the batch leaves the old table
            // and a newer snapshot, from which `open` rebuilds the table.
            file.write_newest(&m, &data)
                .map_err(|e| StorageIOError::write_snapshot(Some(m.signature()), &e))?;
            writer.write_blocking(batch).map_err(table_err)?;
            Ok(table)
        })
        .await
        .map_err(|e| StorageIOError::write_state_machine(&std::io::Error::other(e)))??;
        self.writer.flush().await.map_err(table_err)?;
        Ok(table)
    }
}

/// Encodes the rows taken by `get_snapshot_builder` and writes them to the
/// snapshot file.
pub struct SnapshotBuilder {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, NodeInfo>,
    rows: Option<RowsNow>,
    /// How long applies waited while the rows were taken.
    held_up: std::time::Duration,
    /// Why the table tree could not catch up with the image, if it could not.
    unwritten: Option<String>,
    file: SnapshotFile,
    writer: Arc<TableWriter>,
    metrics: Arc<Metrics>,
    cover: CoverSender,
    /// When the builder was made (taking the rows starts the build).
    started: Instant,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let index = self.last_applied.map_or(0, |l| l.index);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: format!("{index}-{nanos}"),
        };
        // apply() does not fsync: make the table durable up to this snapshot
        // before openraft may purge the log entries it covers.
        let flushed = match self.unwritten.take() {
            Some(e) => Err(e),
            None => self.writer.flush().await,
        };
        flushed.map_err(|e| {
            StorageIOError::write_snapshot(Some(meta.signature()), &std::io::Error::other(e))
        })?;
        let (file, m, rows) = (self.file.clone(), meta.clone(), self.rows.take());
        let (data, encoded) = tokio::task::spawn_blocking(move || {
            let encoding = Instant::now();
            let data = rows.as_ref().map(encode_image).unwrap_or_default();
            let encoded = encoding.elapsed();
            // The rows the table changed meanwhile are freed here, not there.
            drop(rows);
            file.write_newest(&m, &data).map(|()| (data, encoded))
        })
        .await
        .expect("snapshot write does not panic")
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        tracing::info!(
            index,
            bytes = data.len(),
            applies_held_ms = self.held_up.as_millis() as u64,
            encoded_ms = encoded.as_millis() as u64,
            built_ms = self.started.elapsed().as_millis() as u64,
            "snapshot built"
        );
        self.cover.reach(self.last_applied.map(|l| l.index));
        self.metrics.snapshot_bytes.set(data.len() as i64);
        self.metrics.snapshot_build.observe(since(self.started));
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}
