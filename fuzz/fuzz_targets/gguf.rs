//! GGUF: header, metadata, tensor table, dequantisation of every tensor type,
//! the mapping to an HF config and tensors, the embedded BPE tokenizer and chat
//! template, the memory plan, and loading the model.
#![no_main]
use libfuzzer_sys::fuzz_target;
use webpeft::formats::gguf;
use webpeft::formats::tokenizer::{render_chat_template, Message};
use webpeft::models::{Model, ModelFiles};
use webpeft::plan::{bytes_needed, plan, FileHead};

mod common;

fuzz_target!(|data: &[u8]| {
    let _ = bytes_needed("model.gguf", data, data.len() as u64 + 1);
    let g = gguf::parse(data, "model.gguf");
    common::debug("parse", &g);
    let Ok(g) = g else { return };
    for t in g.tensors.iter().take(64) {
        let _ = g.tensor_f32(&t.name);
    }
    let _ = plan(&[FileHead { name: "model.gguf".into(), bytes: data.to_vec(), len: data.len() as u64 }], None);
    let hf = gguf::to_hf(&g);
    common::debug("to_hf", &hf);
    if let Ok(hf) = hf {
        let _ = hf.tokenizer.encode("Hello world, héllo 123!", true).map(|e| hf.tokenizer.decode(e.get_ids(), true));
        if let Some(t) = &hf.chat_template {
            let m = [Message { role: "user".into(), content: "Hi".into() }];
            let _ = render_chat_template(t, &m, true, hf.bos_token.as_deref(), hf.eos_token.as_deref());
        }
        let mut files = ModelFiles::default();
        files.add("model.gguf", data.to_vec());
        let m = Model::load(&files, &webpeft::device::cpu());
        common::debug("load", &m);
        if let Ok(m) = m {
            let _ = m.forward(&[vec![0, 1]], None, None, None);
        }
    }
});
