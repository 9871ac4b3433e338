//! Training data: JSONL (text, text+label, prompt/completion, messages), CSV,
//! TXT and sniffed files; label maps; encoding for both tasks with a chat
//! template. Input: one byte choosing the file name, one the task and seq_len,
//! then the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use webpeft::train::data::{encode, label_map, parse, EncodeOptions, Task};

mod common;

const NAMES: [&str; 6] = ["train.jsonl", "train.csv", "train.txt", "train.json", "train", "TRAIN.CSV"];

thread_local! {
    static TOK: webpeft::formats::tokenizer::TextTokenizer = common::chat_tokenizer();
}

fuzz_target!(|data: &[u8]| {
    let [name, opts, file @ ..] = data else { return };
    let name = NAMES[*name as usize % NAMES.len()];
    let ds = parse(name, file);
    common::debug("parse", &ds);
    let Ok(ds) = ds else { return };
    let task = if opts & 1 == 0 { Task::CausalLm } else { Task::SeqCls };
    let seq_len = (*opts >> 1) as usize; // 0..127: also the too-short values
    let labels = label_map(&ds).ok();
    TOK.with(|tok| {
        common::debug("encode", &encode(&ds, tok, &EncodeOptions { task, seq_len }, labels.as_ref()));
    });
});
