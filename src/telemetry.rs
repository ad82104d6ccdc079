//! Logs: `log.format` json | text, `log.level` as a tracing filter.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber; a bad `log.level` names the key.
pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.level)
        .map_err(|e| anyhow::anyhow!("config: log.level: invalid filter {:?}: {e}", config.level))?
        // lapin logs a returned message whole, payload bytes included; herald
        // logs the return itself, naming the queue, without the payload.
        .add_directive("lapin::returned_messages=off".parse()?);
    // Colour only for a person at a terminal, never into a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match config.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.with_target(false).init(),
    }
    Ok(())
}
