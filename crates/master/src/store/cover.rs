//! How far the table is durable, so that the log never purges past it.
//!
//! openraft 0.9 purges a follower's log up to a snapshot from its leader as
//! soon as it hands the install to the state machine task, without waiting
//! for it (its following handler's `install_full_snapshot`). A crash in
//! between left a log that starts after the table ends, and no snapshot
//! file to bridge them: the node refused to start and had to be replaced.
//! Now the state machine says here how far its table or snapshot file is
//! durable, and [`LogStore::purge`](super::LogStore) waits until that
//! covers what it is asked to purge. Purges after a snapshot this node
//! built never wait: the build makes the table durable first.

use std::sync::Arc;

use tokio::sync::watch;

/// The state machine's durable extent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cover {
    /// The last log index the table or the snapshot file holds durably.
    through: Option<u64>,
    /// A snapshot install failed: what it was to cover never will be.
    failed: bool,
}

/// Set by the state machine. Cheap to clone.
#[derive(Clone)]
pub struct CoverSender(Arc<watch::Sender<Cover>>);

impl CoverSender {
    /// Starts at `through`: what the table held when it was opened.
    pub fn new(through: Option<u64>) -> CoverSender {
        CoverSender(Arc::new(watch::channel(Cover { through, failed: false }).0))
    }

    /// The table or the snapshot file is durable through `index`.
    pub fn reach(&self, index: Option<u64>) {
        self.0.send_if_modified(|c| {
            let more = index > c.through;
            if more {
                c.through = index;
            }
            more
        });
    }

    /// A snapshot install failed (the node stops on it).
    pub fn fail(&self) {
        self.0.send_modify(|c| c.failed = true);
    }

    /// Fails the cover when dropped armed: an error, a panic or a
    /// cancellation in the state machine's task. That task runs the
    /// installs a waiting purge needs; after it stops, none ever comes,
    /// and Raft, waiting in the purge, would hear of the error never.
    pub fn guard(&self) -> CoverGuard {
        CoverGuard(Some(self.clone()))
    }

    /// What the log waits on.
    pub fn subscribe(&self) -> CoverWatch {
        CoverWatch(self.0.subscribe())
    }
}

/// See [`CoverSender::guard`].
pub struct CoverGuard(Option<CoverSender>);

impl CoverGuard {
    /// The work it guarded succeeded.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CoverGuard {
    fn drop(&mut self) {
        if let Some(cover) = self.0.take() {
            cover.fail();
        }
    }
}

/// Read by the log.
#[derive(Clone)]
pub struct CoverWatch(watch::Receiver<Cover>);

impl CoverWatch {
    /// Resolves once the table or the snapshot file holds `index` durably;
    /// an error when it never will (the state machine failed).
    pub async fn reached(&mut self, index: u64) -> Result<(), &'static str> {
        let got = self
            .0
            .wait_for(|c| c.failed || c.through.is_some_and(|t| t >= index))
            .await
            .map_err(|_| "the state machine stopped")?;
        match got.failed {
            true => Err(
                "the state machine failed before the snapshot this purge waits for was installed",
            ),
            false => Ok(()),
        }
    }

    /// Whether `index` is covered now.
    pub fn covers(&self, index: u64) -> bool {
        self.0.borrow().through.is_some_and(|t| t >= index)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::CoverSender;

    #[tokio::test]
    async fn a_wait_ends_when_the_index_is_reached_or_the_install_fails() {
        let cover = CoverSender::new(Some(3));
        let mut watch = cover.subscribe();
        assert!(watch.covers(3) && !watch.covers(4));
        watch.reached(2).await.unwrap();

        let waiting = tokio::spawn({
            let mut watch = watch.clone();
            async move { watch.reached(10).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "index 10 is not covered yet");
        cover.reach(Some(9));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "nor at 9");
        cover.reach(Some(12));
        assert_eq!(waiting.await.unwrap(), Ok(()));

        cover.reach(Some(5));
        assert!(watch.covers(12), "the extent never goes back");

        cover.guard().disarm();
        assert!(watch.reached(12).await.is_ok(), "a disarmed guard fails nothing");
        let failing = tokio::spawn(async move { watch.reached(20).await });
        drop(cover.guard());
        assert!(failing.await.unwrap().is_err(), "an armed guard fails the cover");
    }
}
