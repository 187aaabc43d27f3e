//! The connection handshake: every connection to a taskraft port proves the
//! cluster token before any request is read.
//!
//! The connecting side sends `TRFT1`, a big-endian u16 length, the token
//! (empty when the cluster has none) and a big-endian u64: the sender's node
//! id on the peer port, 0 from clients. The peer port refuses ids that are
//! not members. The accepting side answers one byte,
//! `1` to go on, or `0` followed by a u16 length and a reason, then closes.
//! Tokens are compared in constant time. Anything that is not a taskraft
//! handshake (an HTTP request, garbage) is refused the same way.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::tls::Tls;

const MAGIC: &[u8; 5] = b"TRFT1";

/// Which node ids a peer port accepts (the nodes of the config and of the
/// live membership, which can change while the node runs).
pub type PeerFilter = Arc<dyn Fn(u64) -> bool + Send + Sync>;
/// Longest token accepted.
pub const MAX_TOKEN_BYTES: usize = 1024;

/// What a process proves and checks on every connection: the cluster's
/// shared secret (or none: then any handshake is accepted) and, optionally,
/// TLS.
#[derive(Clone, Default)]
pub struct Credentials {
    secret: Option<Arc<[u8]>>,
    tls: Option<Tls>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = if self.secret.is_some() { "token" } else { "no token" };
        let tls = if self.tls.is_some() { "tls" } else { "no tls" };
        write!(f, "Credentials({secret}, {tls})")
    }
}

impl Credentials {
    /// A token; an empty string means none.
    pub fn new(secret: &str) -> Credentials {
        Credentials {
            secret: (!secret.is_empty()).then(|| Arc::from(secret.as_bytes())),
            tls: None,
        }
    }

    /// The same, over TLS.
    pub fn with_tls(mut self, tls: Tls) -> Credentials {
        self.tls = Some(tls);
        self
    }

    /// The TLS part, if any.
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// The bytes a client sends first.
    pub fn hello(&self) -> Vec<u8> {
        self.hello_as(0)
    }

    /// The bytes node `node` sends first to a peer port.
    pub fn hello_as(&self, node: u64) -> Vec<u8> {
        let secret = self.secret.as_deref().unwrap_or_default();
        let mut hello = MAGIC.to_vec();
        hello.extend((secret.len() as u16).to_be_bytes());
        hello.extend(secret);
        hello.extend(node.to_be_bytes());
        hello
    }

    /// Whether the cluster has a token (connections must prove it).
    pub fn has_token(&self) -> bool {
        self.secret.is_some()
    }

    /// Whether `offered` is the cluster token (always, when there is none).
    pub fn matches(&self, offered: &[u8]) -> bool {
        let Some(expected) = self.secret.as_deref() else { return true };
        // Constant time in the content; the length is not a secret worth hiding.
        expected.len() == offered.len()
            && expected.iter().zip(offered).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// Client side: sends the token (and `node`, 0 for a client) and waits for the verdict.
pub async fn offer<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    token: &Credentials,
    node: u64,
) -> std::io::Result<()> {
    stream.write_all(&token.hello_as(node)).await?;
    let verdict = stream.read_u8().await?;
    if verdict == 1 {
        return Ok(());
    }
    let len = stream.read_u16().await.unwrap_or(0) as usize;
    let mut reason = vec![0; len.min(1024)];
    let _ = stream.read_exact(&mut reason).await;
    Err(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        String::from_utf8_lossy(&reason).into_owned(),
    ))
}

/// Server side: reads and checks the handshake (and, when `members` is
/// given, that it accepts the sender); on refusal tells the peer why and returns
/// the reason (for the node's log).
pub async fn check<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    token: &Credentials,
    members: Option<&PeerFilter>,
) -> Result<(), String> {
    let verdict = read_hello(stream, token, members).await;
    match &verdict {
        Ok(()) => stream.write_all(&[1]).await.map_err(|e| e.to_string())?,
        Err(reason) => {
            let mut answer = vec![0];
            answer.extend((reason.len() as u16).to_be_bytes());
            answer.extend(reason.as_bytes());
            let _ = stream.write_all(&answer).await;
            let _ = stream.shutdown().await;
        }
    }
    verdict
}

async fn read_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
    token: &Credentials,
    members: Option<&PeerFilter>,
) -> Result<(), String> {
    let mut magic = [0u8; 5];
    stream.read_exact(&mut magic).await.map_err(|e| format!("no handshake: {e}"))?;
    if &magic != MAGIC {
        return Err("not a taskraft handshake".into());
    }
    let len = stream.read_u16().await.map_err(|e| format!("truncated handshake: {e}"))? as usize;
    if len > MAX_TOKEN_BYTES {
        return Err(format!("token of {len} bytes; at most {MAX_TOKEN_BYTES}"));
    }
    let mut offered = vec![0; len];
    stream.read_exact(&mut offered).await.map_err(|e| format!("truncated handshake: {e}"))?;
    let node = stream.read_u64().await.map_err(|e| format!("truncated handshake: {e}"))?;
    if !token.matches(&offered) {
        return Err("wrong or missing cluster token".into());
    }
    match members {
        Some(accepts) if !accepts(node) => {
            Err(format!("node {node} is not a member of this cluster"))
        }
        _ => Ok(()),
    }
}
