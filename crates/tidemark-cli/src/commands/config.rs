//! `tidemark config check`: validate a configuration file at start-up time, without starting anything.

use crate::common::GlobalArgs;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use tidemark_core::{redact_uri, Config};

#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    action: ConfigAction,
}

#[derive(clap::Subcommand, Debug)]
enum ConfigAction {
    /// Validate FILE (with environment overrides applied) and print the effective configuration.
    Check {
        /// The TOML file to check; defaults to --config.
        file: Option<PathBuf>,
    },
}

pub fn run(global: &GlobalArgs, args: ConfigArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        ConfigAction::Check { file } => {
            let path = file.or_else(|| global.config.clone());
            let mut cfg = Config::load(path.as_deref()).with_context(|| match &path {
                Some(p) => format!("{} is not a valid configuration", p.display()),
                None => "the default configuration is not valid".to_string(),
            })?;
            cfg.mongodb.uri = redact_uri(&cfg.mongodb.uri);
            cfg.chroma.url = redact_uri(&cfg.chroma.url);
            println!("{}", toml::to_string_pretty(&cfg)?);
            eprintln!("configuration OK");
            Ok(ExitCode::SUCCESS)
        }
    }
}
