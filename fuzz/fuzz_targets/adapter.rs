//! PEFT adapters: adapter_config.json + adapter_model.safetensors (+ webpeft.json),
//! attached to a copy of a tiny model, as the CLI's `--adapter`, the browser's
//! `loadAdapter` and the adapter zip import (after unzipping) do. Input: one
//! byte choosing the model (llama, gpt2, bert), then adapter_config.json SEP
//! adapter_model.safetensors SEP webpeft.json.
#![no_main]
use libfuzzer_sys::fuzz_target;
use webpeft::peft::{load_adapter, set_label_names, Sidecar};

mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let parts = common::split(rest, 3);
    let (config, weights) = (parts[0], parts.get(1).copied().unwrap_or(&[]));
    let mut model = common::model(which as usize);
    if let Some(labels) = parts.get(2).and_then(|s| Sidecar::parse(s)).and_then(|s| s.labels) {
        set_label_names(&mut model.config, &labels);
    }
    let r = load_adapter(&mut model, config, weights);
    common::debug("load_adapter", &r);
    if r.is_ok() {
        let _ = model.forward(&[vec![1, 2, 3]], None, None, None);
        model.set_adapter_enabled(false);
    }
});
