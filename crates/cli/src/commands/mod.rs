//! Dispatch of subcommands: servers (`up`, `control`) and operator commands on resources.

mod aiot;
mod billing;
mod colocation;
mod control;
mod defence;
mod dns;
mod edge;
mod inspect;
mod models;
mod monitor;
mod node_access;
mod purge;
mod resources;
mod rollouts;
mod storage;
mod storage_layout;
mod up;
mod up_aiot;
mod up_storage;

use crate::args::{Cli, Command};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    match cli.command {
        Command::Up(args) => up::run(&global, args).await,
        Command::Control(args) => control::run(args).await,
        Command::Edge(args) => edge::run(&global, args).await,
        Command::Dns(args) => dns::run(&global, args).await,
        Command::Storage(args) => storage::run(&global, args).await,
        Command::S3(args) => storage::gateway(&global, args).await,
        Command::Aiot(args) => aiot::run(&global, args).await,
        Command::Region(cmd) => resources::resource(&global, "regions", cmd).await,
        Command::Line(cmd) => resources::line(&global, cmd).await,
        Command::Site(cmd) => resources::resource(&global, "sites", cmd).await,
        Command::Node(cmd) => resources::node(&global, cmd).await,
        Command::Pool(cmd) => resources::pool(&global, cmd).await,
        Command::Tenant(cmd) => resources::tenant(&global, cmd).await,
        Command::Service(cmd) => resources::service(&global, cmd).await,
        Command::Record(cmd) => resources::resource(&global, "dns-records", cmd).await,
        Command::Purge(cmd) => purge::run(&global, cmd).await,
        Command::Sla(cmd) => resources::sla(&global, cmd).await,
        Command::Defence(cmd) => defence::run(&global, cmd).await,
        Command::Usage(args) => billing::usage(&global, args).await,
        Command::Plan(cmd) => billing::plan(&global, cmd).await,
        Command::Bill(cmd) => billing::bill(&global, cmd).await,
        Command::Invoice(cmd) => billing::invoice(&global, cmd).await,
        Command::Cabinet(cmd) => colocation::cabinet(&global, cmd).await,
        Command::Cost(cmd) => colocation::cost(&global, cmd).await,
        Command::Sensor(cmd) => monitor::sensor(&global, cmd).await,
        Command::Receiver(cmd) => resources::resource(&global, "receivers", cmd).await,
        Command::Silence(cmd) => resources::resource(&global, "silences", cmd).await,
        Command::Alert(cmd) => monitor::alert(&global, cmd).await,
        Command::Incident(cmd) => colocation::incident(&global, cmd).await,
        Command::Report(cmd) => colocation::report(&global, cmd).await,
        Command::Model(cmd) => models::run(&global, cmd).await,
        Command::Rollout(cmd) => rollouts::run(&global, cmd).await,
        Command::Inspect(cmd) => inspect::run(&global, cmd).await,
    }
}

/// The web console, served by the control plane beside its API.
pub fn console() -> lingjing_control::server::Mount {
    lingjing_control::server::Mount(std::sync::Arc::new(lingjing_console::beside))
}

/// Resolves when the process is asked to stop (Ctrl-C / SIGINT, or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
