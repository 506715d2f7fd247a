//! How the crate's axum listeners (a storage node's block API, a gateway's admin) are
//! served: bound with an error naming what failed to listen, `TCP_NODELAY` on every
//! accepted socket (answers must not wait for the peer's delayed ACK), and a graceful
//! shutdown when the returned sender says so.

use std::net::SocketAddr;

use axum::Router;
use axum::serve::ListenerExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Serves `app` on `listen` until `true` is sent on the returned sender; `what` names the
/// listener in errors and logs.
pub(crate) async fn serve(
    listen: SocketAddr,
    app: Router,
    what: &'static str,
) -> std::io::Result<(SocketAddr, watch::Sender<bool>, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on {listen} ({what}): {e}"))
    })?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "{what} server failed");
        }
    });
    Ok((addr, stop, task))
}
