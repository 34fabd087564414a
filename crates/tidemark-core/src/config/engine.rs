//! The local provider's engines (`embedder.engine`) and the model id each one's vectors carry.

use serde::{Deserialize, Serialize};

/// How the local provider runs all-MiniLM-L6-v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalEngine {
    /// ONNX Runtime on the folder's model.onnx (fp32): the same vectors as candle, faster.
    Onnx,
    /// ONNX Runtime on model_int8.onnx (dynamic int8 quantisation): faster still, vectors
    /// close to fp32 but not equal, so it is a model of its own (`all-MiniLM-L6-v2-int8`).
    OnnxInt8,
    /// candle's BERT on model.safetensors, in pure Rust.
    Candle,
}

impl LocalEngine {
    /// The configuration's spelling of this engine.
    pub fn name(self) -> &'static str {
        match self {
            LocalEngine::Onnx => "onnx",
            LocalEngine::OnnxInt8 => "onnx-int8",
            LocalEngine::Candle => "candle",
        }
    }
}

/// The local model's id for `engine`: int8 vectors are not fp32's, so they never share an
/// index (or a Chroma collection) with them.
pub fn local_model_id(engine: LocalEngine) -> &'static str {
    match engine {
        LocalEngine::OnnxInt8 => "all-MiniLM-L6-v2-int8",
        LocalEngine::Onnx | LocalEngine::Candle => "all-MiniLM-L6-v2",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_spells_each_engine_as_its_name() {
        #[derive(Deserialize)]
        struct T {
            engine: LocalEngine,
        }
        for e in [
            LocalEngine::Onnx,
            LocalEngine::OnnxInt8,
            LocalEngine::Candle,
        ] {
            let t: T = toml::from_str(&format!("engine = \"{}\"", e.name())).unwrap();
            assert_eq!(t.engine, e);
        }
        let bad = toml::from_str::<T>("engine = \"onnx_int8\"");
        assert!(bad.is_err(), "only the documented spellings parse");
    }
}
