//! One module per subcommand.

pub mod backfill;
pub mod bench;
pub mod config;
pub mod dlq;
pub mod docs;
pub mod embed;
pub mod history;
pub mod import;
pub mod index;
pub mod migrate;
pub mod search;
pub mod serve;
pub mod status;
pub mod verify;
pub mod worker;
