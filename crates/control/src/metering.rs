//! Metering upkeep: once at start and then every hour, the samples past the retention
//! are removed (and road inspection's frames, and monitoring's raw readings and rollups,
//! past theirs) and (PostgreSQL) the coming months' partitions made
//! (`store::meter::maintain`). Intake is in the heartbeat handler (`api::agents`), reads
//! in `api::usage`.

use std::time::Duration;

use crate::api::AppState;

/// Runs [`pass`] every `every` (the first at start, by `server`).
pub async fn maintain_loop(state: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = pass(&state).await {
            tracing::warn!(error = %e, "metering: upkeep failed; retried next hour");
        }
    }
}

/// One upkeep pass.
pub async fn pass(state: &AppState) -> Result<(), crate::error::StoreError> {
    let now = crate::time::now_ms();
    let cutoff = now - i64::from(state.views.meter_retention_days) * 86_400_000;
    let mut w = state.store.write(false).await?;
    let backend = state.store.backend();
    let (deleted, dropped) = crate::store::meter::maintain(&mut w.tx, backend, now, cutoff).await?;
    let frames = crate::store::inspect::prune_frames(
        &mut w.tx,
        now - crate::inspection::FRAME_RETENTION_DAYS * 86_400_000,
    )
    .await?;
    let readings = crate::store::monitor::prune(
        &mut w.tx,
        now - crate::store::monitor::RAW_RETENTION_DAYS * 86_400_000,
        now - crate::store::monitor::ROLLUP_RETENTION_DAYS * 86_400_000,
    )
    .await?;
    w.commit().await?;
    if readings > 0 {
        tracing::info!(
            rows = readings,
            "monitoring: readings and rollups past their retention removed"
        );
    }
    if frames > 0 {
        tracing::info!(frames, "road inspection: frames past the retention removed");
    }
    if deleted > 0 || dropped > 0 {
        tracing::info!(
            deleted,
            partitions_dropped = dropped,
            "metering: samples past the retention removed"
        );
    }
    Ok(())
}
