//! The `herald` binary: parse the command line, load the configuration, set
//! up logging, and hand over to the library. Errors end here as one line.

use std::process::ExitCode;

use clap::Parser;
use herald::{cli::Cli, config::Config, telemetry};

// Every delivery allocates and frees small buffers across threads; glibc's
// malloc spent about 15 % of herald's CPU on them under load (perf, issue 16).
// jemalloc costs less for the same resident memory (mimalloc took 70 % more).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS provider for reqwest and lapin; without it reqwest's builder panics.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("herald: config: {err}");
            return ExitCode::from(2);
        }
    };
    if let Err(err) = telemetry::init(&config.log) {
        eprintln!("herald: {err:#}");
        return ExitCode::from(2);
    }
    match cli.run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Config problems found late (api.token for the API role) are still exit 2.
            let code = if err.downcast_ref::<herald::config::ConfigError>().is_some() {
                2
            } else {
                1
            };
            eprintln!("herald: {err:#}");
            ExitCode::from(code)
        }
    }
}
