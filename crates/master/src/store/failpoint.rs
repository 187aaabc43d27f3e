//! A fault that a test injects from inside its own process: a leader whose
//! log write fails right after it sent that append to its followers early
//! (`network::early`), as if it died between the two. Armed for the data
//! dirs under one path, so that tests running side by side in one process
//! do not trip each other. Nothing outside Rust code linked with this
//! crate can arm it: no flag, no environment variable, no request.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// Whether any path is armed: the check a leader's append pays.
static ANY: AtomicBool = AtomicBool::new(false);
static ARMED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Makes the next log append that a leader whose data dir is under `root`
/// sends early fail before it is written (once).
#[doc(hidden)]
pub fn fail_next_early_sent_append(root: &Path) {
    ARMED.lock().push(root.to_owned());
    ANY.store(true, Ordering::SeqCst);
}

/// Whether the append of the log in `dir`, just sent early, is to fail
/// (disarming it).
pub(super) fn fires(dir: &Path) -> bool {
    if !ANY.load(Ordering::Relaxed) {
        return false;
    }
    let mut armed = ARMED.lock();
    let Some(at) = armed.iter().position(|root| dir.starts_with(root)) else { return false };
    armed.swap_remove(at);
    ANY.store(!armed.is_empty(), Ordering::SeqCst);
    true
}
