//! # webpeft core
//!
//! Loads Hugging Face models (safetensors or GGUF) and runs them with
//! transformers' numerics on burn, natively (CPU or wgpu) and in the browser
//! (WebGPU or wasm CPU). This crate holds no file-system or thread code: the
//! CLI (`src/bin/webpeft.rs`) and the web bindings feed it bytes.
//!
//! Layout: [`formats`] (safetensors, GGUF, tokenizers), [`models`] (one file
//! per family), [`generate`] (sampling), [`device`] (backends), [`plan`] (memory
//! planned from file headers before loading).

pub mod api;
pub mod bench;
pub mod device;
pub mod error;
pub mod formats;
pub mod generate;
pub mod models;
pub mod peft;
pub mod plan;
pub mod train;
#[cfg(all(feature = "bindings", target_family = "wasm"))]
pub mod web;

pub use error::{Error, ErrorKind, Result};
pub use models::{Model, ModelFiles, ModelInfo};
