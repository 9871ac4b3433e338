// The bundled models, the per-task and per-method defaults, and the sample data sets.

export const BUNDLED = {
  minilm: {
    label: "all-MiniLM-L6-v2",
    source: { urls: ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"].map((f) => `/models/all-MiniLM-L6-v2/${f}`) },
    baseModel: "sentence-transformers/all-MiniLM-L6-v2",
  },
  smollm2: {
    label: "SmolLM2-135M-Instruct",
    source: { urls: ["/models/SmolLM2-135M-Instruct.Q4_1.gguf"] },
    baseModel: "HuggingFaceTB/SmolLM2-135M-Instruct",
  },
  // Fetched by `npm start` (scripts/fetch-models.sh --chat); its Q4_K/Q6_K blocks stay quantized.
  qwen05b: {
    label: "Qwen2.5-Coder-0.5B-Instruct",
    source: { urls: ["/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"] },
    baseModel: "Qwen/Qwen2.5-Coder-0.5B-Instruct",
  },
};

// PEFT-ish starting points; the learning rate depends on the method more than on the model.
export const DEFAULTS = {
  "seq-cls": { lr: 1e-3, epochs: 3, batch: 8, seqLen: 64, evalEvery: 5 },
  "causal-lm": { lr: 2e-4, epochs: 1, batch: 4, seqLen: 128, evalEvery: 10 },
};
export const METHOD_LR = { bitfit: 1e-3, ia3: 3e-3, prompt: 3e-2, prefix: 1e-2 };

export const SAMPLES = {
  tickets: { url: "samples/ticket-labels.csv", name: "ticket-labels.csv", tryText: "I was charged twice this month\nThe app freezes when I upload a file\nPlease add an export to PDF" },
  chat: { url: "samples/chat-style.jsonl", name: "chat-style.jsonl", tryText: "What is the capital of Italy?" },
};
