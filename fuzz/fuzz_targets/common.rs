//! Shared by the fuzz targets: splitting one input into several files, and
//! the tiny committed fixtures the targets load models from.
#![allow(dead_code)]

use webpeft::models::{Model, ModelFiles};

/// Separates the files packed into one fuzz input (see fuzz/README.md).
pub const SEP: &[u8] = b"\n--8<--\n";

/// `data` cut at each [`SEP`], at most `n` parts (the last keeps the rest).
pub fn split(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    while out.len() + 1 < n {
        match rest.windows(SEP.len()).position(|w| w == SEP) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + SEP.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}

macro_rules! fixture {
    ($dir:literal, $file:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/", $dir, "/", $file)).as_slice()
    };
}

/// (config.json, model.safetensors, tokenizer.json) of the tiny models.
pub const MODELS: [(&str, &[u8], &[u8], &[u8]); 3] = [
    ("tiny-llama", fixture!("tiny-llama", "config.json"), fixture!("tiny-llama", "model.safetensors"), fixture!("tiny-llama", "tokenizer.json")),
    ("tiny-gpt2", fixture!("tiny-gpt2", "config.json"), fixture!("tiny-gpt2", "model.safetensors"), fixture!("tiny-gpt2", "tokenizer.json")),
    ("tiny-bert", fixture!("tiny-bert", "config.json"), fixture!("tiny-bert", "model.safetensors"), fixture!("tiny-bert", "tokenizer.json")),
];

pub fn model_files(i: usize) -> ModelFiles {
    let (_, config, weights, tokenizer) = MODELS[i % MODELS.len()];
    let mut files = ModelFiles::default();
    files.add("config.json", config.to_vec());
    files.add("model.safetensors", weights.to_vec());
    files.add("tokenizer.json", tokenizer.to_vec());
    files
}

thread_local! {
    static LOADED: Vec<Model> = (0..MODELS.len())
        .map(|i| Model::load(&model_files(i), &webpeft::device::cpu()).expect("the tiny fixture loads"))
        .collect();
}

/// A fresh copy of tiny model `i` (llama, gpt2, bert), loaded once per process.
pub fn model(i: usize) -> Model {
    LOADED.with(|m| m[i % m.len()].clone())
}

/// tiny-llama's tokenizer with a small ChatML template, for datasets with `messages`.
pub fn chat_tokenizer() -> webpeft::formats::tokenizer::TextTokenizer {
    const CONFIG: &str = r#"{"bos_token":"<s>","eos_token":"</s>","chat_template":"{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"}"#;
    webpeft::formats::tokenizer::TextTokenizer::from_hf(MODELS[0].3, Some(CONFIG.as_bytes())).expect("the tiny tokenizer loads")
}

/// With `FUZZ_DEBUG` set, prints what a step returned (to check that seeds get deep).
pub fn debug<T, E: std::fmt::Display>(what: &str, r: &Result<T, E>) {
    if std::env::var_os("FUZZ_DEBUG").is_some() {
        match r {
            Ok(_) => eprintln!("{what}: ok"),
            Err(e) => eprintln!("{what}: {e}"),
        }
    }
}
