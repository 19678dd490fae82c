//! Local subscriptions to the feed over a root-only Unix socket.
//!
//! Protocol: connect and read JSON lines; the agent sends nothing else and
//! expects nothing. A client that writes more than a few bytes is
//! misbehaving and is disconnected. A client that falls behind receives a
//! `gap` record with the count it missed; one whose socket stays unwritable
//! for `STALL_LIMIT` is cut off. Neither affects the agent or other clients.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::atomic::Ordering,
    time::Duration,
};

use anyhow::{Context, Result};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::broadcast,
};

use super::{events::View, record::Gap, Hub};

pub const DEFAULT_SOCKET: &str = "/run/guard/events.sock";
/// How long one write to a subscriber may block before it is cut off.
pub const STALL_LIMIT: Duration = Duration::from_secs(2);
/// What a client may send (it should send nothing) before it is dropped.
const CLIENT_INPUT_LIMIT: usize = 64;

/// Binds the socket: the directory is 0700 and the socket 0600, owned by
/// the agent (root), so only root can subscribe.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing stale {}", path.display())),
    }
    let listener = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, hub: Hub) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let rx = hub.tx.subscribe();
        let hub = hub.clone();
        hub.stats.subscribers.fetch_add(1, Ordering::Relaxed);
        hub.stats.subscribers_total.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            subscriber(stream, rx, &hub).await;
            hub.stats.subscribers.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn subscriber(stream: UnixStream, mut rx: broadcast::Receiver<std::sync::Arc<super::Item>>, hub: &Hub) {
    let (mut read, mut write) = stream.into_split();
    let mut input = [0u8; CLIENT_INPUT_LIMIT];
    let mut seen = 0usize;
    loop {
        tokio::select! {
            // A client only ever closes; anything it sends counts against it.
            n = read.read(&mut input) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    seen += n;
                    if seen >= CLIENT_INPUT_LIMIT {
                        return;
                    }
                }
            },
            msg = rx.recv() => {
                let line = match msg {
                    Ok(item) => item.json.clone(),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        hub.stats.subscriber_missed.fetch_add(n, Ordering::Relaxed);
                        let mut gap = serde_json::to_vec(&Gap::new(n, "subscriber lagged")).unwrap_or_default();
                        gap.push(b'\n');
                        gap.into()
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                match tokio::time::timeout(STALL_LIMIT, write.write_all(&line)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => {
                        hub.stats.subscribers_cut_off.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
    }
}

/// `guard events --follow`: shows the feed on stdout, as `view` decides,
/// until the agent goes.
pub async fn follow(path: PathBuf, mut view: View) -> Result<()> {
    let stream = UnixStream::connect(&path).await.with_context(|| {
        format!("connecting to {} (is `guard run` running? subscribing needs root)", path.display())
    })?;
    let mut feed = BufReader::new(stream);
    let mut stdout = tokio::io::stdout();
    let mut line = Vec::new();
    loop {
        line.clear();
        if feed.read_until(b'\n', &mut line).await.context("reading the feed")? == 0 {
            return Ok(());
        }
        let shown = view.line(&line);
        if let Some(warning) = shown.warning {
            eprintln!("{warning}");
        }
        if let Some(out) = shown.out {
            stdout.write_all(&out).await?;
        }
        // Flush once the agent has nothing more queued for us.
        if feed.buffer().is_empty() {
            stdout.flush().await?;
        }
    }
}
