//! The ONNX Runtime engine of the local model: a session on the model folder's `model.onnx`
//! (or `model_int8.onnx`), run through the `ort` crate on the ONNX Runtime library that ships in
//! the `onnxruntime` wheel (loaded at start-up from `embedder.onnx_runtime`; nothing is
//! downloaded). The graph gives BERT's last hidden state; pooling is the caller's
//! (`local`, the same for both engines).

use crate::EmbedError;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// ONNX Runtime allows one environment per process; it is made from the first library asked
/// for, and a later request for another library is refused (naming both).
static ENVIRONMENT: OnceLock<(PathBuf, Result<ort::environment::Environment, String>)> =
    OnceLock::new();

fn environment(lib: &Path) -> Result<ort::environment::Environment, EmbedError> {
    let (first, env) = ENVIRONMENT.get_or_init(|| {
        let env = ort::init_from(lib)
            .map_err(|e| e.to_string())
            .and_then(|b| b.with_name("tidemark").build().map_err(|e| e.to_string()));
        (lib.to_path_buf(), env)
    });
    if first != lib {
        return Err(EmbedError::Config(format!(
            "embedder.onnx_runtime: this process already loaded {}; it cannot also load {}",
            first.display(),
            lib.display()
        )));
    }
    env.clone().map_err(|e| {
        EmbedError::Config(format!(
            "embedder.onnx_runtime: cannot load ONNX Runtime from {}: {e} (run `scripts/services up` to install it, or set embedder.engine = \"candle\")",
            lib.display()
        ))
    })
}

/// One ONNX Runtime session of the model. Runs are serialised (a run already uses every core).
pub struct OnnxModel {
    session: Mutex<Session>,
    dimension: usize,
}

impl OnnxModel {
    /// Loads `model` with the runtime library `lib`; `dimension` is the hidden size the graph
    /// must produce. Errors name the file and what to do.
    pub fn load(lib: &Path, model: &Path, dimension: usize) -> Result<Self, EmbedError> {
        if !lib.is_file() {
            return Err(EmbedError::Config(format!(
                "embedder.onnx_runtime: no ONNX Runtime library at {} (run `scripts/services up` to install it, or set embedder.engine = \"candle\")",
                lib.display()
            )));
        }
        if !model.is_file() {
            return Err(EmbedError::Config(format!(
                "model folder has no {} (run `scripts/services up` to export it, or set embedder.engine = \"candle\")",
                model.display()
            )));
        }
        let env = environment(lib)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let err = |e: &dyn std::fmt::Display| {
            EmbedError::Config(format!("{}: ONNX Runtime: {e}", model.display()))
        };
        let session = Session::builder(&env)
            .map_err(|e| err(&e))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| err(&e))?
            .with_intra_threads(threads)
            .map_err(|e| err(&e))?
            .commit_from_file(model)
            .map_err(|e| err(&e))?;
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for want in ["input_ids", "attention_mask", "token_type_ids"] {
            if !names.contains(&want) {
                return Err(EmbedError::Config(format!(
                    "{}: the graph has no input {want} (inputs: {names:?})",
                    model.display()
                )));
            }
        }
        Ok(OnnxModel {
            session: Mutex::new(session),
            dimension,
        })
    }

    /// One forward pass over `n` texts of `len` tokens each (`ids` and `mask` row-major, padded
    /// with mask 0): the last hidden state, (n, len, dimension) row-major.
    pub fn forward(
        &self,
        ids: Vec<i64>,
        mask: Vec<i64>,
        n: usize,
        len: usize,
    ) -> Result<Vec<f32>, EmbedError> {
        let model_err = |e: ort::Error| EmbedError::Permanent(format!("model: {e}"));
        let shape = [n, len];
        let type_ids = Tensor::from_array((shape, vec![0i64; n * len])).map_err(model_err)?;
        let ids_t = Tensor::from_array((shape, ids)).map_err(model_err)?;
        let mask_t = Tensor::from_array((shape, mask)).map_err(model_err)?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| EmbedError::Permanent("model: an earlier run panicked".into()))?;
        let outputs = session
            .run(ort::inputs![
                "input_ids" => ids_t,
                "attention_mask" => mask_t,
                "token_type_ids" => type_ids,
            ])
            .map_err(model_err)?;
        let (out_shape, hidden) = outputs[0].try_extract_tensor::<f32>().map_err(model_err)?;
        let want = [n as i64, len as i64, self.dimension as i64];
        if out_shape[..] != want[..] {
            return Err(EmbedError::Permanent(format!(
                "model: output shape {:?}, expected {want:?}",
                &out_shape[..]
            )));
        }
        Ok(hidden.to_vec())
    }
}
