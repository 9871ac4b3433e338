//! File formats: safetensors, GGUF, tokenizers and chat templates.

pub mod gguf;
pub mod safetensors;
pub mod tokenizer;
