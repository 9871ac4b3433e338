//! New adapters created by webpeft: the same config, tensor names and shapes
//! as PEFT's for the same settings (compared with the PEFT fixtures), and
//! PEFT's initialisation (an untrained LoRA / DoRA / IA3 adapter leaves the
//! model's outputs unchanged).

mod common;

use common::*;
use serde_json::Value;
use webpeft::device::Backend;
use webpeft::peft::create::{create_adapter, AdapterSpec, Method};
use webpeft::peft::export::export_adapter;
use webpeft::peft::TargetModules;
use webpeft::train::freeze;
use webpeft::Model;

/// The spec that should reproduce fixture `case`'s PEFT config.
fn spec_for(method: &str, cfg: &Value) -> AdapterSpec {
    let kind = match method {
        "dora" => Method::Dora,
        "bitfit" => Method::Bitfit,
        "ia3" => Method::Ia3,
        "prompt" => Method::Prompt,
        "prefix" => Method::Prefix,
        _ => Method::Lora,
    };
    let mut s = AdapterSpec::new(kind);
    s.base_model = cfg["base_model_name_or_path"].as_str().unwrap().to_string();
    s.seq_cls = cfg["task_type"] == "SEQ_CLS";
    if matches!(kind, Method::Lora | Method::Dora) {
        s.r = cfg["r"].as_u64().map(|v| v as usize);
        s.alpha = cfg["lora_alpha"].as_f64();
        s.use_rslora = cfg["use_rslora"].as_bool().unwrap();
        s.targets = Some(serde_json::from_value::<TargetModules>(cfg["target_modules"].clone()).unwrap());
        s.layers_to_transform = serde_json::from_value(cfg["layers_to_transform"].clone()).unwrap();
    }
    if matches!(kind, Method::Prompt | Method::Prefix) {
        s.virtual_tokens = cfg["num_virtual_tokens"].as_u64().map(|v| v as usize);
    }
    s
}

fn new_model(model: &str) -> Model {
    freeze(Model::load(&files(&fixture(&format!("tiny-{model}"))), &device(Backend::Cpu).autodiff()).unwrap())
}

#[test]
fn new_adapters_have_peft_configs_keys_and_shapes() {
    let mut n = 0;
    for model in ["llama", "qwen2", "gpt2", "bert", "qwen3", "gemma3", "roberta", "xlm-roberta", "phi3", "modernbert"] {
        for method in ["lora", "rslora", "dora", "lora-targets", "lora-layers", "ia3", "bitfit", "prompt", "prefix"] {
            let dir = fixture("peft").join(format!("{model}-{method}"));
            if !dir.exists() {
                continue;
            }
            let case = format!("{model}-{method}");
            let want_cfg: Value = serde_json::from_slice(&std::fs::read(dir.join("adapter_config.json")).unwrap()).unwrap();
            let mut m = new_model(model);
            create_adapter(&mut m, &spec_for(method, &want_cfg)).unwrap_or_else(|e| panic!("{case}: {e}"));
            let files = pollster::block_on(export_adapter(&mut m)).unwrap();
            let got_cfg: Value = serde_json::from_slice(&files.config).unwrap();
            assert_eq!(got_cfg, want_cfg, "{case}: config differs from PEFT's");
            let got = adapter_tensors(&files.weights);
            let want = adapter_tensors(&std::fs::read(dir.join("adapter_model.safetensors")).unwrap());
            let shapes = |m: &std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)>| m.iter().map(|(k, (s, _))| (k.clone(), s.clone())).collect::<Vec<_>>();
            assert_eq!(shapes(&got), shapes(&want), "{case}: tensor names/shapes differ from PEFT's");
            n += 1;
        }
    }
    assert_eq!(n, 80);
    // Decoder classification: a new `score` head saved as PEFT saves it.
    for model in ["llama", "gpt2"] {
        let dir = fixture("peft").join(format!("{model}-seqcls-lora"));
        let want_cfg: Value = serde_json::from_slice(&std::fs::read(dir.join("adapter_config.json")).unwrap()).unwrap();
        let mut m = new_model(model);
        let mut spec = spec_for("lora", &want_cfg);
        spec.labels = Some(vec!["a".into(), "b".into(), "c".into()]);
        create_adapter(&mut m, &spec).unwrap();
        let files = pollster::block_on(export_adapter(&mut m)).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&files.config).unwrap(), want_cfg, "{model} seq-cls config");
        let shapes = |b: &[u8]| adapter_tensors(b).into_iter().map(|(k, (s, _))| (k, s)).collect::<Vec<_>>();
        assert_eq!(shapes(&files.weights), shapes(&std::fs::read(dir.join("adapter_model.safetensors")).unwrap()), "{model} seq-cls tensors");
    }
}

fn logits(m: &Model, ids: &[u32]) -> Vec<f32> {
    let out = m.forward(&[ids.to_vec()], None, None, None).unwrap();
    host(out.token_logits.map(|l| l.reshape([-1])).or(out.class_logits.map(|l| l.reshape([-1]))).unwrap())
}

#[test]
fn untrained_adapters_leave_outputs_unchanged() {
    let ids: Vec<u32> = (1..13).collect();
    for model in ["llama", "gpt2", "bert", "roberta"] {
        for method in [Method::Lora, Method::Dora, Method::Ia3, Method::Bitfit] {
            let mut m = new_model(model);
            let base = logits(&m, &ids);
            let mut spec = AdapterSpec::new(method);
            spec.seq_cls = matches!(model, "bert" | "roberta");
            create_adapter(&mut m, &spec).unwrap();
            let after = logits(&m, &ids);
            // DoRA rescales by m/||W|| = 1 up to rounding.
            let tol = if method == Method::Dora { 1e-5 } else { 0.0 };
            let d = max_abs_diff("logits", &after, &base);
            assert!(d <= tol, "{model} {method:?}: an untrained adapter changed the logits by {d}");
        }
    }
}

#[test]
fn lora_init_is_kaiming_uniform_or_gaussian() {
    for gaussian in [false, true] {
        let mut m = new_model("llama");
        let mut spec = AdapterSpec::new(Method::Lora);
        spec.r = Some(16);
        spec.gaussian_init = gaussian;
        spec.seed = 3;
        create_adapter(&mut m, &spec).unwrap();
        let t = adapter_tensors(&pollster::block_on(export_adapter(&mut m)).unwrap().weights);
        let (shape, a) = &t["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"];
        let b = &t["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"].1;
        assert!(b.iter().all(|&v| v == 0.0), "B starts at zero");
        let fan_in = shape[1] as f32;
        let std = (a.iter().map(|v| v * v).sum::<f32>() / a.len() as f32).sqrt();
        if gaussian {
            // N(0, 1/r): std 1/16.
            assert!((std - 1.0 / 16.0).abs() < 0.01, "gaussian A std {std}");
        } else {
            // kaiming_uniform(a=sqrt 5): U(-1/sqrt(in), 1/sqrt(in)), std bound/sqrt 3.
            let bound = 1.0 / fan_in.sqrt();
            assert!(a.iter().all(|v| v.abs() <= bound), "A outside U(±{bound})");
            assert!((std - bound / 3f32.sqrt()).abs() < 0.1 * bound, "uniform A std {std}");
        }
    }
}

#[test]
fn prompt_text_init_copies_token_embeddings() {
    let mut m = new_model("llama");
    let tok = m.tokenizer.as_ref().unwrap();
    let ids = tok.encode("hello world", false).unwrap();
    let mut spec = AdapterSpec::new(Method::Prompt);
    spec.virtual_tokens = Some(5);
    spec.init_text = Some("hello world".into());
    create_adapter(&mut m, &spec).unwrap();
    let files = pollster::block_on(export_adapter(&mut m)).unwrap();
    let cfg: Value = serde_json::from_slice(&files.config).unwrap();
    assert_eq!(cfg["prompt_tuning_init"], "TEXT");
    let table = &adapter_tensors(&files.weights)["prompt_embeddings"].1;
    let emb = read_ref(&fixture("tiny-llama/model.safetensors"));
    let e = &emb["model.embed_tokens.weight"];
    let dim = e.shape[1];
    for (row, id) in ids.iter().cycle().take(5).enumerate() {
        let want = &e.f32[*id as usize * dim..(*id as usize + 1) * dim];
        assert_eq!(&table[row * dim..(row + 1) * dim], want, "virtual token {row} is not the embedding of token {id}");
    }
}

#[test]
fn bad_adapter_settings_are_clear_errors() {
    let mut m = new_model("llama");
    let mut spec = AdapterSpec::new(Method::Lora);
    spec.targets = Some(TargetModules::Names(vec!["no_such_module".into()]));
    let e = create_adapter(&mut m, &spec).unwrap_err().to_string();
    assert!(e.contains("no module of LlamaForCausalLM matches target_modules"), "{e}");
    let mut m = new_model("bert");
    let e = create_adapter(&mut m, &AdapterSpec::new(Method::Prefix)).unwrap_err().to_string();
    assert!(e.contains("encoder") || e.contains("prefix tuning needs a decoder"), "{e}");
}

/// The files of tiny-modernbert as a masked-LM checkpoint would have them (the encoder and the
/// prediction head, no classifier), and with the prediction head dropped too.
fn modernbert_without(drop: &[&str]) -> webpeft::models::ModelFiles {
    use webpeft::formats::safetensors::{write_f32, OutTensor};
    let dir = fixture("tiny-modernbert");
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<OutTensor> = st
        .tensors()
        .into_iter()
        .filter(|(name, _)| !drop.iter().any(|d| name.starts_with(d)))
        .map(|(name, v)| OutTensor { name, shape: v.shape().to_vec(), data: v.data().chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect() })
        .collect();
    let mut config: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    config["architectures"] = serde_json::json!(["ModernBertForMaskedLM"]);
    let mut files = webpeft::models::ModelFiles::default();
    files.add("config.json", config.to_string().into_bytes());
    files.add("tokenizer.json", std::fs::read(dir.join("tokenizer.json")).unwrap());
    files.add("model.safetensors", write_f32(&kept, None).unwrap());
    files
}

/// A masked-LM ModernBERT checkpoint loads as the encoder with its prediction head; `seq-cls`
/// training gives it a `classifier` (PEFT's `modules_to_save`) that reads the head, and one
/// without a prediction head is refused with a message that says why.
#[test]
fn modernbert_masked_lm_checkpoint_gets_a_classifier() {
    let device = device(Backend::Cpu).autodiff();
    let m = Model::load(&modernbert_without(&["classifier."]), &device).unwrap();
    assert_eq!((m.info.architecture.as_str(), m.info.task.as_str(), m.info.num_labels), ("ModernBertModel", "feature-extraction", None));
    let mut m = freeze(m);
    let mut spec = AdapterSpec::new(Method::Lora);
    spec.seq_cls = true;
    spec.labels = Some(vec!["a".into(), "b".into(), "c".into()]);
    create_adapter(&mut m, &spec).unwrap();
    assert_eq!((m.info.architecture.as_str(), m.info.num_labels), ("ModernBertForSequenceClassification", Some(3)));
    let cfg: Value = serde_json::from_slice(&pollster::block_on(export_adapter(&mut m)).unwrap().config).unwrap();
    assert_eq!((cfg["target_modules"].clone(), cfg["modules_to_save"].clone()), (serde_json::json!(["Wqkv"]), serde_json::json!(["classifier", "score"])));
    let out = m.forward(&[vec![5, 9, 17]], None, None, None).unwrap();
    assert_eq!(out.class_logits.unwrap().dims(), [1, 3]);

    let mut bare = freeze(Model::load(&modernbert_without(&["classifier.", "head."]), &device).unwrap());
    let e = create_adapter(&mut bare, &spec).unwrap_err().to_string();
    assert!(e.contains("no prediction head (head.dense, head.norm)"), "{e}");
}
