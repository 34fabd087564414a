//! One module per subcommand.

pub mod config;
pub mod docs;
pub mod import;
