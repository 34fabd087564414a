//! Pieces every subcommand shares: global flags, configuration loading, logging, the runtime.

use anyhow::Context;
use std::path::PathBuf;
use tidemark_core::Config;

#[derive(clap::Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Configuration file (TOML). Without it, defaults plus environment overrides
    /// (MONGODB_URI, CHROMA_URL, TIDEMARK_<SECTION>_<KEY>).
    #[arg(long, short = 'c', global = true, env = "TIDEMARK_CONFIG")]
    pub config: Option<PathBuf>,
    /// On failure, also print the error's full chain of causes (credentials still hidden).
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
}

impl GlobalArgs {
    /// Loads and validates the configuration; errors name the key.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let cfg = Config::load(self.config.as_deref())?;
        Ok(cfg)
    }
}

/// Installs the tracing subscriber: text or JSON to stderr, filtered by `RUST_LOG` or the
/// configured level. ONNX Runtime's own messages (memory arenas, graph passes: `ort` at info)
/// are kept to warnings unless `RUST_LOG` asks for them.
pub fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},ort=warn", cfg.log.level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if cfg.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Set while a command's runtime shuts down: see [`quiet_teardown_panics`].
static TEARING_DOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A command's tokio runtime. Dropping it marks the teardown, during which a background task
/// of a library (the MongoDB driver's connection pool, when a command ends while a connection
/// is still being made) may panic on a closed channel; that is not the command's outcome.
pub struct Runtime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for Runtime {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("runtime present until dropped")
    }
}

impl Runtime {
    /// Shuts down, waiting at most `timeout` for blocking tasks.
    pub fn shutdown_timeout(mut self, timeout: std::time::Duration) {
        TEARING_DOWN.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(rt) = self.0.take() {
            rt.shutdown_timeout(timeout);
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        TEARING_DOWN.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(self.0.take());
    }
}

/// A multi-threaded tokio runtime for one command.
pub fn runtime() -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map(|rt| Runtime(Some(rt)))
        .context("cannot start the async runtime")
}

/// Installs a panic hook that keeps panics of runtime threads during a command's runtime
/// teardown out of the output (logged at debug level), so a failed command still prints its
/// one `error:` line only. Every other panic is reported as before.
pub fn quiet_teardown_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let on_runtime_thread = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("tokio-runtime-worker") || n.starts_with("tokio-rt"));
        if on_runtime_thread && TEARING_DOWN.load(std::sync::atomic::Ordering::SeqCst) {
            tracing::debug!(panic = %info, "a background task panicked while the runtime shut down");
            return;
        }
        default(info);
    }));
}

/// A progress bar on a terminal, hidden otherwise (logs stay quiet).
pub fn progress_bar(len: Option<u64>, what: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    use std::io::IsTerminal;
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let template = if len.is_some() {
        "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})"
    } else {
        "{msg:>10} [{elapsed_precise}] {spinner} {pos} ({per_sec})"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}

/// Listens for SIGTERM and SIGINT from this moment on and returns a future that completes on
/// the first of them. Called before the slow parts of start-up (model load, connections), so a
/// stop signal that arrives while a daemon starts makes it stop gracefully instead of killing it
/// with the default action. The listeners are registered with `rt`.
pub fn stop_signal(
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let _entered = rt.enter();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("stop signal received");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("stop signal received");
        })
    }
}

/// A reader that searches the active index: its definition's embedder and collection (so
/// `tidemark index activate` switches search in one step), or the configuration's when no
/// definition exists yet (before the first worker start).
pub async fn searching_reader(
    cfg: &Config,
    store: tidemark_store::Store,
) -> anyhow::Result<tidemark_read::Reader> {
    let active = tidemark_store::indexes::Indexes::new(store.database())
        .active()
        .await
        .context("cannot read the index definitions")?;
    let (ecfg, collection) = match &active {
        Some(def) => (
            def.embedder_config(&cfg.embedder),
            Some(def.collection.clone()),
        ),
        None => (cfg.embedder.clone(), None),
    };
    let embedder = tokio::task::spawn_blocking(move || tidemark_embed::from_config(&ecfg))
        .await
        .context("loading the embedder panicked")?
        .context("cannot load the embedder")?;
    let reader = tidemark_read::Reader::new(cfg, store);
    Ok(match collection {
        Some(c) => reader.with_index(embedder, &c)?,
        None => reader.with_embedder(embedder)?,
    })
}

/// Connects to MongoDB and makes sure the collections and indexes exist (idempotent, cheap).
pub async fn ready_store(cfg: &Config) -> anyhow::Result<tidemark_store::Store> {
    let store = tidemark_store::Store::connect(cfg).await.with_context(|| {
        format!(
            "cannot connect to MongoDB at {}",
            tidemark_core::redact_uri(&cfg.mongodb.uri)
        )
    })?;
    store
        .ensure_schema()
        .await
        .context("cannot create the collections and indexes")?;
    Ok(store)
}
