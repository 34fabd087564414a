//! One module per subcommand.

pub mod bench;
pub mod config;
pub mod docs;
pub mod embed;
pub mod import;
pub mod search;
pub mod worker;
