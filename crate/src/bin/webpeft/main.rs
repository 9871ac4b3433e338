//! `webpeft`: the native command-line tool. It owns everything the core must
//! not touch (files, arguments, blocking on GPU reads) and calls the core.

mod bench;
mod plan;
mod train;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use webpeft::device::{self, Backend};
use webpeft::formats::safetensors::{write_f32, OutTensor};
use webpeft::formats::tokenizer::Message;
use webpeft::generate::{generate, read_f32, stop_ids, GenerateOptions};
use webpeft::models::{LoadOptions, Quantize};
use webpeft::formats::source::{ByteSource, DiskFile};
use webpeft::{Error, Model, ModelFiles, Result};

#[derive(Parser)]
#[command(name = "webpeft", version, about = "Run and fine-tune small Hugging Face transformers (natively; the same core runs in the browser)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How the base weights are held: none keeps them as stored (GGUF blocks stay quantized,
    /// floats become f32), f32 widens everything, q8_0/q4_0 quantize float matrices on load.
    #[arg(long, global = true, value_enum, default_value = "none")]
    quantize: Quantize,
}

/// `--quantize`, set once from the command line for every load.
static QUANTIZE: std::sync::OnceLock<Quantize> = std::sync::OnceLock::new();

/// The load options the command line asked for.
pub fn load_options() -> LoadOptions {
    LoadOptions { quantize: QUANTIZE.get().copied().unwrap_or_default(), ..LoadOptions::default() }
}

/// Loads model files onto `device` with the command line's options.
pub fn load_files(files: &ModelFiles, device: &burn::tensor::Device) -> Result<Model> {
    Model::load_with(files, device, &load_options())
}

#[derive(Subcommand)]
enum Command {
    /// Print architecture, parameter count, dtypes, vocabulary and context length.
    Info {
        /// A model directory (config.json + safetensors + tokenizer.json) or a .gguf file.
        model: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print one-button training settings for MODEL and the data (`train::suggest`, as the npm
    /// package's `suggestOptions`): the options as `train` reads them (JSON) and why.
    Suggest {
        model: PathBuf,
        /// The training data (JSONL, CSV or TXT): its rows and task decide the settings.
        #[arg(long)]
        data: PathBuf,
        /// seq-cls or causal-lm (default: seq-cls for labelled rows, else causal-lm).
        #[arg(long)]
        task: Option<String>,
    },
    /// Print the token ids of TEXT as a JSON array (special tokens included, as transformers does).
    Tokenize {
        model: PathBuf,
        #[arg(long)]
        text: String,
    },
    /// Run one forward pass and write `logits` and `last_hidden_state` (f32) to a safetensors file.
    Forward {
        model: PathBuf,
        /// Comma-separated token ids.
        #[arg(long)]
        tokens: String,
        #[arg(long)]
        out: PathBuf,
        /// A PEFT adapter directory (adapter_config.json + adapter_model.safetensors).
        #[arg(long)]
        adapter: Option<PathBuf>,
        #[arg(long, default_value = "cpu")]
        device: Backend,
    },
    /// Generate text, streamed to stdout.
    Generate {
        model: PathBuf,
        #[arg(long)]
        prompt: String,
        /// Wrap the prompt as a user message in the model's chat template.
        #[arg(long)]
        chat: bool,
        #[arg(long, default_value_t = 64)]
        max_new_tokens: usize,
        /// 0 = greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A PEFT adapter directory (adapter_config.json + adapter_model.safetensors).
        #[arg(long)]
        adapter: Option<PathBuf>,
        #[arg(long, default_value = "cpu")]
        device: Backend,
    },
    /// Fine-tune a PEFT adapter; prints one JSON event per step and writes the adapter to --out.
    Train(Box<train::TrainArgs>),
    /// Write a checkpointed run (--resume OUT/checkpoint, with the run's train flags) as a
    /// directory (--out) that transformers' Trainer + PEFT continue on a GPU machine (train.py).
    GpuJob(Box<train::TrainArgs>),
    /// Print loss and metrics (perplexity, or accuracy and macro-F1) on a data file as JSON.
    Eval {
        model: PathBuf,
        #[arg(long)]
        adapter: Option<PathBuf>,
        #[arg(long)]
        data: PathBuf,
        /// Defaults to the adapter's task, else seq-cls for models with a classification head.
        #[arg(long, value_enum)]
        task: Option<webpeft::train::data::Task>,
        #[arg(long, default_value_t = 128)]
        seq_len: usize,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        #[arg(long, default_value = "cpu")]
        device: Backend,
    },
    /// Fold an adapter (LoRA, DoRA, IA3, BitFit) into the base weights and write an HF model directory.
    Merge {
        model: PathBuf,
        #[arg(long)]
        adapter: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a LoRA adapter as a GGUF LoRA for llama.cpp, Ollama (`ADAPTER` in a Modelfile) or wllama.
    ExportGguf {
        /// The base model (directory or .gguf) the adapter was trained on.
        model: PathBuf,
        /// The PEFT adapter directory (adapter_config.json + adapter_model.safetensors).
        #[arg(long)]
        adapter: PathBuf,
        /// The .gguf file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the memory plan of loading (and, with --task/--method, training) a model, from its headers only; exit 1 when it does not fit.
    Plan(Box<plan::PlanArgs>),
    /// Measure speed (a measurement, not a test).
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    QUANTIZE.set(cli.quantize).expect("set once");
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Info { model, json } => {
            let m = load(&model, Backend::Cpu)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&m.info).expect("info serialises"));
            } else {
                let i = &m.info;
                println!("architecture:    {} ({})", i.architecture, i.model_type);
                println!("task:            {}", i.task);
                println!("parameters:      {} ({:.1} M)", i.num_parameters, i.num_parameters as f64 / 1e6);
                println!("dtypes:          {}", i.dtypes.join(", "));
                println!("format:          {}", i.format);
                println!("vocabulary:      {}", i.vocab_size);
                println!("hidden size:     {}", i.hidden_size);
                println!("layers:          {}", i.num_layers);
                println!("context length:  {}", i.context_length);
                if let Some(n) = i.num_labels {
                    println!("labels:          {n}");
                }
                println!("chat template:   {}", if i.has_chat_template { "yes" } else { "no" });
            }
        }
        Command::Plan(a) => plan::run(*a)?,
        Command::Suggest { model, data, task } => {
            use webpeft::train::data::{validate, Task, ValidateOptions};
            let m = load(&model, Backend::Cpu)?;
            let shown = data.display().to_string();
            let bytes = std::fs::read(&data).map_err(|e| Error::io(&shown, e.to_string()))?;
            let task = task.as_deref().map(Task::parse).transpose()?;
            let v = validate(&shown, &bytes, None, &ValidateOptions { task, ..Default::default() });
            if let Some(p) = v.problems.first() {
                return Err(Error::input(&shown, p.message.clone()));
            }
            let s = webpeft::train::suggest::suggest(&m.info, v.task.unwrap_or(Task::CausalLm), v.rows, None);
            println!("{}", serde_json::to_string_pretty(&s).expect("a suggestion serialises"));
        }
        Command::Tokenize { model, text } => {
            let m = load(&model, Backend::Cpu)?;
            let ids = tokenizer(&m)?.encode(&text, true)?;
            println!("{}", serde_json::to_string(&ids).expect("ids serialise"));
        }
        Command::Forward { model, tokens, out, adapter, device } => {
            let ids = parse_tokens(&tokens)?;
            let mut m = load(&model, device)?;
            apply_adapter(&mut m, adapter.as_deref())?;
            let fwd = m.forward(&[ids.clone()], None, None, None)?;
            let [_, s, h] = fwd.last_hidden_state.dims();
            let mut tensors = vec![OutTensor {
                name: "last_hidden_state".into(),
                shape: vec![s, h],
                data: block(read_f32(fwd.last_hidden_state))?,
            }];
            // `logits` is what transformers calls logits: a classifier's class
            // logits, else the token logits.
            if let Some(l) = fwd.class_logits {
                let n = l.dims()[1];
                tensors.push(OutTensor { name: "logits".into(), shape: vec![n], data: block(read_f32(l))? });
            } else if let Some(l) = fwd.token_logits {
                let v = l.dims()[2];
                tensors.push(OutTensor { name: "logits".into(), shape: vec![s, v], data: block(read_f32(l))? });
            }
            let bytes = write_f32(&tensors, None)?;
            std::fs::write(&out, bytes).map_err(|e| Error::io(out.display().to_string(), e.to_string()))?;
        }
        Command::Generate { model, prompt, chat, max_new_tokens, temperature, top_p, seed, adapter, device } => {
            let mut m = load(&model, device)?;
            apply_adapter(&mut m, adapter.as_deref())?;
            let tok = tokenizer(&m)?;
            let prompt_ids = if chat {
                let text = tok.apply_chat_template(&[Message { role: "user".into(), content: prompt }], true)?;
                tok.encode(&text, false)?
            } else {
                tok.encode(&prompt, true)?
            };
            let opts = GenerateOptions { max_new_tokens, temperature, top_p, seed, stop_ids: stop_ids(&m) };
            let mut ids: Vec<u32> = Vec::new();
            let mut printed = 0usize;
            let mut stdout = std::io::stdout();
            block(generate(&m, &prompt_ids, &opts, |id| {
                ids.push(id);
                // Decode everything so far and print only the new suffix, so
                // multi-byte characters split across tokens come out whole.
                if let Ok(text) = tok.decode(&ids) {
                    if text.len() > printed && text.is_char_boundary(printed) {
                        let _ = stdout.write_all(text[printed..].as_bytes());
                        let _ = stdout.flush();
                        printed = text.len();
                    }
                }
                true
            }))?;
            println!();
        }
        Command::Train(args) => train::train(*args)?,
        Command::GpuJob(args) => train::gpu_job(*args)?,
        Command::Eval { model, adapter, data, task, seq_len, batch, device } => {
            train::eval(&model, adapter.as_deref(), &data, task, seq_len, batch, device)?
        }
        Command::Merge { model, adapter, out } => train::merge(&model, &adapter, &out)?,
        Command::ExportGguf { model, adapter, out } => {
            let mut m = load(&model, Backend::Cpu)?;
            apply_adapter(&mut m, Some(&adapter))?;
            let bytes = block(webpeft::peft::gguf_lora::export_gguf_lora(&mut m))?;
            std::fs::write(&out, &bytes).map_err(|e| Error::io(out.display().to_string(), e.to_string()))?;
            eprintln!("GGUF LoRA written to {} ({} bytes)", out.display(), bytes.len());
        }
        Command::Bench { what } => bench::run(what)?,
    }
    Ok(())
}

/// Blocks on a future (native only; the browser awaits instead).
pub fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    pollster::block_on(f)
}

fn parse_tokens(s: &str) -> Result<Vec<u32>> {
    let ids: std::result::Result<Vec<u32>, _> = s.split(',').map(|t| t.trim().parse::<u32>()).collect();
    match ids {
        Ok(ids) if !ids.is_empty() => Ok(ids),
        _ => Err(Error::input("--tokens", format!("'{s}' is not a comma-separated list of token ids"))),
    }
}

fn tokenizer(m: &Model) -> Result<&webpeft::formats::tokenizer::TextTokenizer> {
    m.tokenizer.as_ref().ok_or_else(|| Error::format("model", "no tokenizer.json was found with this model"))
}

/// Loads a PEFT adapter directory onto `m`, if one was given.
fn apply_adapter(m: &mut Model, dir: Option<&Path>) -> Result<()> {
    let Some(dir) = dir else { return Ok(()) };
    train::labels_from_sidecar(m, dir);
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read(&p).map_err(|e| Error::io(p.display().to_string(), e.to_string()))
    };
    let summary = webpeft::peft::load_adapter(m, &read("adapter_config.json")?, &read("adapter_model.safetensors")?)
        .map_err(|e| Error { source: format!("{}/{}", dir.display(), e.source), ..e })?;
    eprintln!(
        "adapter: {} on {} modules, {} base tensors replaced",
        summary.peft_type, summary.adapted_modules, summary.replaced_tensors
    );
    Ok(())
}

/// Reads a model directory or .gguf file and loads it on `backend`.
pub fn load(path: &Path, backend: Backend) -> Result<Model> {
    let files = read_model_files(path)?;
    let device = device::native(backend)?;
    load_files(&files, &device)
}

/// Reads the files a model needs from disk.
pub fn read_model_files(path: &Path) -> Result<ModelFiles> {
    let shown = path.display().to_string();
    let read = |p: &Path| std::fs::read(p).map_err(|e| Error::io(p.display().to_string(), e.to_string()));
    // Weight files are read a tensor at a time while loading, never whole.
    let open = |p: &Path| -> Result<std::sync::Arc<dyn ByteSource>> { Ok(std::sync::Arc::new(DiskFile::open(p)?)) };
    let mut files = ModelFiles::default();
    if path.is_file() {
        if !shown.ends_with(".gguf") {
            return Err(Error::input(shown, "a model is a directory (config.json + safetensors) or a .gguf file"));
        }
        files.add_source(&shown, open(path)?);
        return Ok(files);
    }
    let entries = std::fs::read_dir(path).map_err(|e| Error::io(&shown, e.to_string()))?;
    let list: Vec<String> = entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    let needed = ModelFiles::needed_from_listing(&list, || std::fs::read(path.join("model.safetensors.index.json")).ok())
        .map_err(|e| Error { source: format!("{shown}/{}", e.source), ..e })?;
    for name in needed {
        if name.ends_with(".safetensors") {
            files.add_source(&name, open(&path.join(&name))?);
        } else {
            files.add(&name, read(&path.join(&name))?);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    /// Every subcommand's flags are distinct: the training flags come from `TrainSpec` and
    /// `DpSpec`, so a field added there could clash with a CLI-only flag (clap checks this only
    /// in debug builds, and the tests run in release).
    #[test]
    fn no_subcommand_repeats_a_flag() {
        use clap::CommandFactory;
        let cli = super::Cli::command();
        for sub in cli.get_subcommands() {
            let mut ids = std::collections::HashSet::new();
            let mut longs = std::collections::HashSet::new();
            for arg in sub.get_arguments() {
                assert!(ids.insert(arg.get_id().as_str()), "webpeft {}: argument {} is defined twice", sub.get_name(), arg.get_id());
                if let Some(long) = arg.get_long() {
                    assert!(longs.insert(long), "webpeft {}: --{long} is defined twice", sub.get_name());
                }
            }
        }
    }
}
