//! `lingjing`: the one binary. `lingjing up` runs the whole platform on one machine;
//! `lingjing control` runs the control plane alone; the other subcommands are operator
//! commands that call the REST API.

mod args;
mod commands;
mod context;
mod logging;
mod output;
mod pki;
mod seed;

use clap::Parser;

/// mimalloc instead of glibc malloc: the data planes allocate per request on every worker
/// thread, where glibc's arena locks and free-list work showed in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // `lingjing ... | head` closes the pipe early: end quietly, as a shell tool should.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let broken_pipe = info
            .payload()
            .downcast_ref::<String>()
            .is_some_and(|m| m.contains("Broken pipe"));
        if broken_pipe {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    let cli = args::Cli::parse();
    logging::init(cli.global.log_format, cli.command.is_server());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
