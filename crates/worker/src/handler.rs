//! Handlers: how a worker turns a task's data into a result.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use taskraft_core::TaskId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Processes one task: `Ok(result)` or `Err(message)` (reported as a failure).
pub type Handler =
    Arc<dyn Fn(TaskId, Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> + Send + Sync>;

/// Returns the data unchanged.
pub fn echo() -> Handler {
    Arc::new(|_, data| Box::pin(async move { Ok(data) }))
}

/// Returns the data upper-cased (the origin's push example).
pub fn upper() -> Handler {
    Arc::new(|_, data| Box::pin(async move { Ok(data.to_ascii_uppercase()) }))
}

/// Sleeps, then returns `processed task ID` (the origin's pull example).
pub fn sleep(duration: Duration) -> Handler {
    Arc::new(move |id, _| {
        Box::pin(async move {
            tokio::time::sleep(duration).await;
            Ok(format!("processed task {id}").into_bytes())
        })
    })
}

/// How long a stopped `--exec` command has between SIGTERM and SIGKILL.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);

/// Runs `sh -c CMD` with the data on stdin; stdout is the result. A non-zero
/// exit is a failure whose message is stderr. The task id is in `TASKRAFT_TASK_ID`.
pub fn exec(command: String) -> Handler {
    exec_with_grace(command, DEFAULT_KILL_GRACE)
}

/// [`exec`], where a command stopped early (its task was cancelled, or the
/// worker drops the handler) gets SIGTERM, and SIGKILL `grace` later. The
/// signals go to the command's own process group, so whatever it started
/// stops with it.
pub fn exec_with_grace(command: String, grace: Duration) -> Handler {
    Arc::new(move |id, data| {
        let command = command.clone();
        Box::pin(async move { run(&command, id, &data, grace).await })
    })
}

/// A running command. Dropped before the command ended (its task was
/// cancelled, or the worker dropped the handler), it stops the command's
/// process group: SIGTERM now, SIGKILL after the grace period. The child is
/// reaped only after that, so its process group id cannot be reused by an
/// unrelated process meanwhile.
struct Running {
    child: Option<tokio::process::Child>,
    grace: Duration,
    /// The stdin feeder and the output readers.
    io: Vec<tokio::task::AbortHandle>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.io.iter().for_each(tokio::task::AbortHandle::abort);
        let Some(mut child) = self.child.take() else { return };
        let Some(group) = child.id().map(|pid| pid as i32) else { return };
        // SAFETY: kill(2) with a negative pid signals a process group; it
        // touches no memory of ours.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        let grace = self.grace;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let ended = tokio::time::timeout(grace, child.wait()).await.is_ok();
                // What is left of the group (everything, if SIGTERM was ignored).
                // SAFETY: as above.
                unsafe { libc::kill(-group, libc::SIGKILL) };
                if !ended {
                    let _ = child.wait().await;
                }
            });
        }
    }
}

async fn run(command: &str, id: TaskId, data: &[u8], grace: Duration) -> Result<Vec<u8>, String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("TASKRAFT_TASK_ID", id.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // Should the runtime stop before the grace period ends, the
        // command still does not outlive the worker.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    let (mut stdin, mut stdout, mut stderr) = (
        child.stdin.take().expect("stdin is piped"),
        child.stdout.take().expect("stdout is piped"),
        child.stderr.take().expect("stderr is piped"),
    );
    let input = data.to_vec();
    // Feed stdin and drain the outputs concurrently: a command that writes
    // a lot before reading would otherwise deadlock against us.
    let feeder = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
    });
    let out = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf).await;
        buf
    });
    let err = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        buf
    });
    let io = vec![feeder.abort_handle(), out.abort_handle(), err.abort_handle()];
    let mut running = Running { child: Some(child), grace, io };
    let waited = running.child.as_mut().expect("the child runs").wait().await;
    running.child = None; // it ended by itself: nothing to stop
    let status = waited.map_err(|e| format!("{command:?}: {e}"))?;
    let stdout = out.await.unwrap_or_default();
    let stderr = err.await.unwrap_or_default();
    let _ = feeder.await;
    if status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&stderr).trim().to_string();
        Err(format!("{command:?} exited with {status}: {stderr}"))
    }
}

/// Parses `echo`, `upper` or `sleep:MS`.
pub fn builtin(name: &str) -> Result<Handler, String> {
    match name {
        "echo" => Ok(echo()),
        "upper" => Ok(upper()),
        _ => match name.strip_prefix("sleep:").map(str::parse::<u64>) {
            Some(Ok(ms)) => Ok(sleep(Duration::from_millis(ms))),
            _ => Err(format!("unknown handler {name:?}; use echo, upper or sleep:MS")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exec_returns_stdout_and_reports_failure_with_stderr() {
        let ok = exec("tr a-z A-Z".into());
        assert_eq!(ok(TaskId(1), b"abc".to_vec()).await.unwrap(), b"ABC");
        let bad = exec("echo broken >&2; exit 3".into());
        let err = bad(TaskId(1), vec![]).await.unwrap_err();
        assert!(err.contains("broken") && err.contains('3'), "{err}");
    }

    #[test]
    fn builtin_names_parse() {
        assert!(builtin("sleep:10").is_ok());
        assert!(builtin("sleep:x").err().unwrap().contains("unknown handler"));
    }
}
