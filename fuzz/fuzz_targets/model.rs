//! config.json (+ the tiny fixtures' weights and tokenizer): the memory plan and
//! building a model from a hand-edited or hostile config. Input: one byte
//! choosing the fixture (llama, gpt2, bert), then config.json.
#![no_main]
use libfuzzer_sys::fuzz_target;
use webpeft::models::Model;
use webpeft::plan::{plan, FileHead};

mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&which, config)) = data.split_first() else { return };
    let mut files = common::model_files(which as usize);
    files.add("config.json", config.to_vec());
    let heads: Vec<FileHead> = files.files.iter().map(|(n, b)| FileHead { name: n.clone(), bytes: b.clone(), len: b.len() as u64 }).collect();
    common::debug("plan", &plan(&heads, None));
    let m = Model::load(&files, &webpeft::device::cpu());
    common::debug("load", &m);
    if let Ok(m) = m {
        let _ = m.forward(&[vec![1, 2, 3]], None, None, None);
    }
});
