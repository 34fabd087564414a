//! Every MongoDB error-code and label check of tidemark in one place: which server codes mean
//! what, and how a driver error is classified (duplicate key, lost change stream history,
//! transient transaction error, unknown commit result, connection-level failure).

use mongodb::error::{
    Error as MongoError, ErrorKind, WriteFailure, TRANSIENT_TRANSACTION_ERROR,
    UNKNOWN_TRANSACTION_COMMIT_RESULT,
};

/// A unique index violation.
pub const DUPLICATE_KEY: i32 = 11000;
/// A write conflict between transactions.
pub const WRITE_CONFLICT: i32 = 112;
/// A collection created concurrently by another process.
pub const NAMESPACE_EXISTS: i32 = 48;
/// The change stream's resume point is gone from the oplog.
pub const CHANGE_STREAM_HISTORY_LOST: i32 = 286;
/// The oplog position a cursor was reading was overwritten (older servers' history lost).
pub const CAPPED_POSITION_LOST: i32 = 280;

/// The server error code of a command or of the first write error, if any.
pub fn code(e: &MongoError) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        ErrorKind::BulkWrite(b) => b
            .write_errors
            .iter()
            .min_by_key(|(index, _)| **index)
            .map(|(_, w)| w.code)
            .or_else(|| b.write_concern_errors.first().map(|w| w.code)),
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .and_then(|errs| errs.first())
            .map(|w| w.code),
        _ => None,
    }
}

/// A unique index violation (of a single write or the first write of a batch).
pub fn is_duplicate_key(e: &MongoError) -> bool {
    code(e) == Some(DUPLICATE_KEY)
}

/// The indexes (in the batch) of the statements of an unordered `insert_many` that failed only
/// because the key exists; `None` when anything else failed.
pub fn duplicate_indexes(e: &MongoError) -> Option<Vec<usize>> {
    let ErrorKind::InsertMany(ime) = e.kind.as_ref() else {
        return None;
    };
    if ime.write_concern_error.is_some() {
        return None;
    }
    let mut out = Vec::new();
    for we in ime.write_errors.iter().flatten() {
        if we.code != DUPLICATE_KEY {
            return None;
        }
        out.push(we.index);
    }
    Some(out)
}

/// The change stream cannot resume: its position is no longer in the server's history.
pub fn is_history_lost(e: &MongoError) -> bool {
    matches!(
        code(e),
        Some(CHANGE_STREAM_HISTORY_LOST | CAPPED_POSITION_LOST)
    )
}

/// The server answered and refused the command (as opposed to a network or selection failure).
pub fn is_command_refusal(e: &MongoError) -> bool {
    matches!(e.kind.as_ref(), ErrorKind::Command(_))
}

/// Retry the whole transaction: the `TransientTransactionError` label, or a write conflict
/// (which servers always label so).
pub fn is_transient_transaction(e: &MongoError) -> bool {
    e.contains_label(TRANSIENT_TRANSACTION_ERROR) || code(e) == Some(WRITE_CONFLICT)
}

/// Retry only the commit: the outcome of the commit is unknown.
pub fn is_unknown_commit(e: &MongoError) -> bool {
    e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
        && !e.contains_label(TRANSIENT_TRANSACTION_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_io_error_has_no_code_and_is_not_a_refusal() {
        let e: MongoError = std::io::Error::other("reset").into();
        assert_eq!(code(&e), None);
        assert!(!is_command_refusal(&e));
        assert!(!is_duplicate_key(&e));
        assert!(!is_history_lost(&e));
        assert!(duplicate_indexes(&e).is_none());
    }
}
