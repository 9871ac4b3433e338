//! File formats: safetensors, GGUF, tokenizers and chat templates.

pub mod blocks;
pub mod gguf;
pub mod gguf_spm;
pub mod safetensors;
pub mod source;
pub mod tokenizer;
