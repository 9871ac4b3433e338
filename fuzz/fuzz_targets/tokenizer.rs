//! tokenizer.json (+ tokenizer_config.json and its chat template): loading,
//! encoding, decoding and rendering. Input: tokenizer.json SEP
//! tokenizer_config.json SEP text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use webpeft::formats::tokenizer::{Message, TextTokenizer};

mod common;

fuzz_target!(|data: &[u8]| {
    let parts = common::split(data, 3);
    let config = parts.get(1).copied().filter(|c| !c.is_empty());
    let text = parts.get(2).map(|t| String::from_utf8_lossy(t).into_owned()).unwrap_or_else(|| "Hello world".into());
    let tok = TextTokenizer::from_hf(parts[0], config);
    common::debug("from_hf", &tok);
    let Ok(tok) = tok else { return };
    if let Ok(ids) = tok.encode(&text, true) {
        let _ = tok.decode(&ids);
    }
    let _ = tok.vocab_size();
    let m = [Message { role: "system".into(), content: "Be brief.".into() }, Message { role: "user".into(), content: text }];
    common::debug("chat", &tok.apply_chat_template(&m, true));
});
