//! Process signals: SIGTERM / SIGINT start a graceful shutdown.

/// Resolves on the first SIGTERM or SIGINT. If the handlers cannot be installed, it never
/// resolves and the failure is logged (the process can still be killed).
pub(crate) async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (term, int) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received, draining"),
                _ = int.recv() => tracing::info!("SIGINT received, draining"),
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            std::future::pending::<()>().await;
        }
    }
}
