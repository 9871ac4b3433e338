//! safetensors: header, dtypes, shapes and data of one file (WeightMap), a
//! shard index, and the memory plan read from the same bytes as a header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use webpeft::formats::safetensors::{shard_files, WeightMap};
use webpeft::plan::{bytes_needed, plan, FileHead};

mod common;

fuzz_target!(|data: &[u8]| {
    let mut w = WeightMap::new("model.safetensors");
    let r = w.add_safetensors("model.safetensors", data);
    common::debug("add_safetensors", &r);
    if r.is_ok() {
        let names: Vec<String> = w.names().iter().map(|s| s.to_string()).collect();
        for n in names {
            let shape = w.shape(&n).map(<[usize]>::to_vec).unwrap_or_default();
            let _ = w.take(&n, &shape, "fuzz");
        }
    }
    let _ = shard_files("model.safetensors.index.json", data);
    let _ = bytes_needed("model.safetensors", data, data.len() as u64 + 1);
    let config = common::MODELS[0].1.to_vec();
    let files = [
        FileHead { name: "config.json".into(), len: config.len() as u64, bytes: config },
        FileHead { name: "model.safetensors".into(), bytes: data.to_vec(), len: data.len() as u64 },
    ];
    common::debug("plan", &plan(&files, None));
});
