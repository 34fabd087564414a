//! MongoDB `failCommand` fail points (`configureFailPoint`, as mongod and the MongoDB drivers'
//! specification tests use them), for servers started with `--enable-test-commands`.
//!
//! A fail point is always scoped to one process by `appName`: give the process under test a
//! `MONGODB_URI` with `appName=<name>` (see [`crate::servers::MongoServer::uri_with_app`]) and
//! arm the fail point with the same name, so the test's own checks are never hit. There is one
//! `failCommand` per server, so a test arming it needs a server of its own.
//!
//! ```ignore
//! FailCommand::new(&["commitTransaction"], "writer")
//!     .error_code(codes::HOST_UNREACHABLE)
//!     .labels(&[labels::UNKNOWN_COMMIT])
//!     .times(2)
//!     .arm(&admin_client)
//!     .await;
//! ```

use bson::{doc, Bson, Document};

/// Server error codes used by the fault tests.
pub mod codes {
    pub const WRITE_CONFLICT: i32 = 112;
    pub const NOT_WRITABLE_PRIMARY: i32 = 10107;
    pub const HOST_UNREACHABLE: i32 = 6;
    pub const INTERRUPTED_DUE_TO_REPL_STATE_CHANGE: i32 = 11602;
    /// Resumable for change streams (network-ish).
    pub const HOST_NOT_FOUND: i32 = 7;
    /// Not resumable for a change stream: the server says the request is invalid.
    pub const FAILED_TO_PARSE: i32 = 9;
    pub const CHANGE_STREAM_HISTORY_LOST: i32 = 286;
    pub const UNAUTHORIZED: i32 = 13;
}

/// Error labels.
pub mod labels {
    pub const TRANSIENT: &str = "TransientTransactionError";
    pub const UNKNOWN_COMMIT: &str = "UnknownTransactionCommitResult";
    pub const RETRYABLE_WRITE: &str = "RetryableWriteError";
    pub const RESUMABLE_CHANGE_STREAM: &str = "ResumableChangeStreamError";
}

/// How often an armed fail point fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The next `n` matching commands.
    Times(u32),
    /// Every matching command until turned off.
    AlwaysOn,
}

/// A `failCommand` configuration.
#[derive(Debug, Clone)]
pub struct FailCommand {
    commands: Vec<String>,
    app_name: String,
    mode: Mode,
    error_code: Option<i32>,
    labels: Option<Vec<String>>,
    close_connection: bool,
    block_ms: Option<u64>,
}

impl FailCommand {
    /// Fails `commands` (e.g. `insert`, `commitTransaction`) of clients named `app_name`, once.
    pub fn new(commands: &[&str], app_name: &str) -> FailCommand {
        assert!(!app_name.is_empty(), "scope every fail point by appName");
        FailCommand {
            commands: commands.iter().map(|c| c.to_string()).collect(),
            app_name: app_name.to_string(),
            mode: Mode::Times(1),
            error_code: None,
            labels: None,
            close_connection: false,
            block_ms: None,
        }
    }

    pub fn error_code(mut self, code: i32) -> Self {
        self.error_code = Some(code);
        self
    }

    /// The error labels of the reply (replacing the ones the server would add itself).
    pub fn labels(mut self, labels: &[&str]) -> Self {
        self.labels = Some(labels.iter().map(|l| l.to_string()).collect());
        self
    }

    /// Close the connection instead of answering (a network error for the driver).
    pub fn close_connection(mut self) -> Self {
        self.close_connection = true;
        self
    }

    /// Hold the command for `ms` milliseconds before running (or failing) it.
    pub fn block_ms(mut self, ms: u64) -> Self {
        self.block_ms = Some(ms);
        self
    }

    pub fn times(mut self, n: u32) -> Self {
        self.mode = Mode::Times(n);
        self
    }

    pub fn always_on(mut self) -> Self {
        self.mode = Mode::AlwaysOn;
        self
    }

    /// The `configureFailPoint` command.
    pub fn command(&self) -> Document {
        let mode = match self.mode {
            Mode::Times(n) => Bson::Document(doc! {"times": n as i32}),
            Mode::AlwaysOn => Bson::String("alwaysOn".into()),
        };
        let mut data = doc! {"failCommands": self.commands.clone(), "appName": &self.app_name};
        if let Some(c) = self.error_code {
            data.insert("errorCode", c);
        }
        if let Some(l) = &self.labels {
            data.insert("errorLabels", l.clone());
        }
        if self.close_connection {
            data.insert("closeConnection", true);
        }
        if let Some(ms) = self.block_ms {
            data.insert("blockConnection", true);
            data.insert("blockTimeMS", ms as i64);
        }
        doc! {"configureFailPoint": "failCommand", "mode": mode, "data": data}
    }

    /// Arms the fail point on the server `admin` is connected to.
    pub async fn arm(&self, admin: &mongodb::Client) {
        admin
            .database("admin")
            .run_command(self.command())
            .await
            .unwrap_or_else(|e| {
                panic!("configureFailPoint failed (server without --enable-test-commands?): {e}")
            });
    }
}

/// Turns `failCommand` off.
pub async fn off(admin: &mongodb::Client) {
    admin
        .database("admin")
        .run_command(doc! {"configureFailPoint": "failCommand", "mode": "off"})
        .await
        .expect("configureFailPoint off");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_documented_command() {
        let c = FailCommand::new(&["insert", "update"], "app1")
            .error_code(codes::WRITE_CONFLICT)
            .labels(&[labels::TRANSIENT])
            .block_ms(200)
            .times(3)
            .command();
        assert_eq!(c.get_str("configureFailPoint").unwrap(), "failCommand");
        assert_eq!(c.get_document("mode").unwrap(), &doc! {"times": 3});
        let d = c.get_document("data").unwrap();
        assert_eq!(d.get_str("appName").unwrap(), "app1");
        assert_eq!(d.get_i32("errorCode").unwrap(), 112);
        assert!(d.get_bool("blockConnection").unwrap());
        assert_eq!(d.get_i64("blockTimeMS").unwrap(), 200);
        assert_eq!(d.get_array("failCommands").unwrap().len(), 2);
        assert!(d.get("closeConnection").is_none());
        let a = FailCommand::new(&["find"], "x")
            .close_connection()
            .always_on();
        let a = a.command();
        assert_eq!(a.get_str("mode").unwrap(), "alwaysOn");
        assert!(a
            .get_document("data")
            .unwrap()
            .get_bool("closeConnection")
            .unwrap());
    }

    #[test]
    #[should_panic(expected = "appName")]
    fn unscoped_fail_point_is_refused() {
        let _ = FailCommand::new(&["find"], "");
    }
}
