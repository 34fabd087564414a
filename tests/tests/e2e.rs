//! Every end-to-end test in one binary, so a build links it once instead of once per file.
//! Each file is a module named after it, so `scripts/test worker_crash` still picks a file's
//! tests.

mod cli_docs_support;
mod fault_support;
mod migrate_support;
mod ops_support;
mod read_support;
mod store_support;
mod worker_support;

mod bench_smoke;
mod chroma_client;
mod cli_docs_commands;
mod cli_docs_import;
mod cli_errors;
mod embed_budget;
mod embed_local;
mod embed_openai;
mod fault_auth;
mod fault_crash;
mod fault_http;
mod fault_shutdown;
mod fault_store;
mod fault_stream;
mod fault_worker;
mod foundation_chroma;
mod foundation_mongo;
mod index_build_follow;
mod index_versions;
mod migrate_crash;
mod migrate_inventory;
mod migrate_run;
mod ops_backfill;
mod ops_dlq;
mod ops_status;
mod ops_verify;
mod read_http;
mod read_search;
mod read_serve_binary;
mod store_contract_python;
mod store_put_paths;
mod store_validation;
mod store_visible;
mod store_writes;
mod ts_writer;
mod worker_basic;
mod worker_chunking;
mod worker_claim_window;
mod worker_config_example;
mod worker_contention;
mod worker_crash;
mod worker_failures;
mod worker_local_search;
mod worker_outage;
mod worker_run;

/// With `autotests = false` a file of tests/ that is not a module here would never run.
#[test]
fn every_test_file_is_a_module_here() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let listed = include_str!("e2e.rs");
    for f in std::fs::read_dir(dir).expect("tests/ is readable") {
        let name = f.expect("a directory entry").file_name();
        let name = name.to_string_lossy();
        let Some(stem) = name.strip_suffix(".rs") else {
            continue;
        };
        if stem != "e2e" {
            assert!(
                listed.contains(&format!("\nmod {stem};\n")),
                "tests/tests/{name} is not listed in tests/tests/e2e.rs"
            );
        }
    }
}
