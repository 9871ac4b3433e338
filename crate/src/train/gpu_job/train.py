#!/usr/bin/env python3
"""Continue a webpeft training run with transformers' Trainer and PEFT.

    pip install -r requirements.txt
    accelerate launch train.py            # one or many GPUs (python train.py works too)

Everything comes from job.json (written by webpeft): the base model, the PEFT adapter and
optimiser state in checkpoint/, the encoded rows and the run's batches in data/. The run
resumes at the step webpeft stopped at, with the same hyperparameters: the same learning-rate
schedule and warm-up, the same AdamW (or SGD) settings with weight decay on every trainable
tensor as webpeft applies it, gradient clipping (or none), gradient accumulation and batches.
The adapter is saved to --output-dir as a PEFT adapter.

On several GPUs, accelerate splits each step's batches between them, so each process sees part
of webpeft's batches; on one device the run continues exactly as webpeft would have.
"""
import argparse
import json
import os
import shutil
import warnings

import torch
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    Trainer,
    TrainerCallback,
    TrainerState,
    TrainingArguments,
    get_scheduler,
)
from peft import PeftConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEDULES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


def load_job():
    with open(os.path.join(HERE, "job.json"), encoding="utf-8") as f:
        return json.load(f)


def without_dropout(config):
    """Every dropout probability in `config` (and its sub-configs) set to 0: webpeft trains the
    frozen base without dropout (only the adapter's own, e.g. lora_dropout), and modules read
    these when they are built, so the config must say so before the model is."""
    for k, v in vars(config).items():
        if isinstance(v, PretrainedConfig):
            without_dropout(v)
        elif ("dropout" in k or k.endswith("pdrop")) and isinstance(v, float):
            setattr(config, k, 0.0)
    return config


def load_base(job, path):
    """The base model as webpeft trained on it (float32, no dropout), with its classification head size."""
    kw = {}
    if path.endswith(".gguf"):
        kw["gguf_file"] = os.path.basename(path)
        path = os.path.dirname(path) or "."
    head = {}
    if job["task"] == "seq-cls":
        labels = job["labels"] or []
        head = dict(num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    config = without_dropout(AutoConfig.from_pretrained(path, **kw, **head))
    auto = AutoModelForSequenceClassification if job["task"] == "seq-cls" else AutoModelForCausalLM
    model = auto.from_pretrained(path, config=config, dtype=torch.float32, **kw)
    if "gguf_file" in kw:
        # transformers 5 dequantises a GGUF to float32 but keeps it marked as quantized, and its
        # Trainer refuses to train a model so marked; the weights are plain tensors, so the mark goes.
        model.hf_quantizer, model.is_quantized = None, False
        model.__dict__.pop("quantization_method", None)
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return model


class Rows(torch.utils.data.Dataset):
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.rows = [json.loads(line) for line in f if line.strip()]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


class RunBatches(torch.utils.data.Sampler):
    """webpeft's micro-batches of the whole run, in its order (its shuffles included)."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def collate(pad_id):
    """Right padding with the pad id, a zero mask and ignored labels, as webpeft collates."""

    def f(rows):
        width = max(len(r["input_ids"]) for r in rows)
        ids = [r["input_ids"] + [pad_id] * (width - len(r["input_ids"])) for r in rows]
        mask = [[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows]
        out = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
        if "label" in rows[0]:
            out["labels"] = torch.tensor([r["label"] for r in rows])
        else:
            out["labels"] = torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in rows])
        return out

    return f


def saved_names(model):
    """Each trainable parameter's name in PEFT's adapter file: PEFT's own get_peft_model_state_dict,
    run on a state dict whose trainable entries are markers."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if getattr(model, "peft_config", {}).get("default") is not None and model.peft_config["default"].is_prompt_learning:
        return {"prompt_embeddings": params[0][1]} if len(params) == 1 else {}
    state = dict(model.state_dict())
    markers = {}
    for n, p in params:
        key = n if n in state else None
        if key is None:
            continue
        marker = torch.empty(0)
        state[key] = marker
        markers[id(marker)] = p
    saved = get_peft_model_state_dict(model, state_dict=state)
    return {k: markers[id(v)] for k, v in saved.items() if id(v) in markers}


def load_adapter(base, path):
    """The checkpoint's PEFT adapter on `base`, trainable. PEFT loads a prompt-learning adapter
    only for inference, so that one is made from its config and given the saved values."""
    config = PeftConfig.from_pretrained(path)
    if not config.is_prompt_learning:
        return PeftModel.from_pretrained(base, path, is_trainable=True)
    config.inference_mode = False
    model = get_peft_model(base, config)
    set_peft_model_state_dict(model, load_file(os.path.join(path, "adapter_model.safetensors")))
    return model


def build_optimizer(job, model):
    params = [p for p in model.parameters() if p.requires_grad]
    if job["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=job["lr"], momentum=job["momentum"] or 0.0, weight_decay=job["weight_decay"])
    b1, b2 = job["adam_betas"]
    return torch.optim.AdamW(params, lr=job["lr"], betas=(b1, b2), eps=job["adam_eps"], weight_decay=job["weight_decay"])


def write_resume_checkpoint(job, model, optimizer, scheduler, args, out):
    """An HF Trainer checkpoint at webpeft's step: the adapter, the optimiser state moved onto
    the PEFT model's parameters, the scheduler at that step, and the trainer state."""
    step = job["step"]
    ckpt = os.path.join(out, f"checkpoint-{step}")
    os.makedirs(ckpt, exist_ok=True)
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(os.path.join(HERE, "checkpoint", f), ckpt)
    state = load_file(os.path.join(HERE, "checkpoint", "optimizer_state.safetensors"))
    names = saved_names(model)
    kinds = ["momentum_buffer"] if job["optimizer"] == "sgd" else ["exp_avg", "exp_avg_sq"]
    for key, p in names.items():
        found = {k: state.get(f"{k}.{key}") for k in kinds}
        if any(v is None for v in found.values()):
            raise SystemExit(f"optimizer_state.safetensors has no state for {key}")
        entry = {k: v.reshape(p.shape).to(p.device, p.dtype).clone() for k, v in found.items()}
        if job["optimizer"] != "sgd":
            entry["step"] = torch.tensor(float(step))
        optimizer.state[p] = entry
    if step > 0 and not names:
        raise SystemExit("no trainable parameter matched the adapter's tensors")
    # The scheduler moves the optimiser's learning rate to the step's before both are saved, as
    # they would be in a checkpoint the Trainer wrote itself.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
        for _ in range(step):
            scheduler.step()
    torch.save(optimizer.state_dict(), os.path.join(ckpt, "optimizer.pt"))
    torch.save(scheduler.state_dict(), os.path.join(ckpt, "scheduler.pt"))
    st = TrainerState(global_step=step, max_steps=job["total_steps"], num_train_epochs=1, logging_steps=1, train_batch_size=job["batch"])
    st.save_to_json(os.path.join(ckpt, "trainer_state.json"))
    return ckpt


class JobTrainer(Trainer):
    """Feeds webpeft's batches in its order, and records each micro-batch's loss."""

    def __init__(self, *a, batches, collator, **kw):
        super().__init__(*a, **kw)
        # Each micro-batch's loss is its own mean, and the Trainer divides it by the gradient
        # accumulation steps: the step's gradient is the mean over micro-batches, as webpeft's.
        self.model_accepts_loss_kwargs = False
        self.run_batches = batches
        self.run_collator = collator
        self.micro_losses = []

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        # The model already holds the checkpoint's adapter (loaded in main, trainable; PEFT
        # refuses to reload a prompt-learning adapter as trainable).
        pass

    def get_train_dataloader(self):
        dl = torch.utils.data.DataLoader(self.train_dataset, batch_sampler=RunBatches(self.run_batches), collate_fn=self.run_collator)
        return self.accelerator.prepare(dl)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Each micro-batch's own mean loss, as webpeft averages it over the accumulated micro-batches.
        outputs = model(**inputs)
        self.micro_losses.append(outputs.loss.item())
        loss = outputs.loss
        return (loss, outputs) if return_outputs else loss


class StepLosses(TrainerCallback):
    def __init__(self, trainer, grad_accum):
        self.trainer, self.grad_accum, self.losses = trainer, grad_accum, []

    def on_step_end(self, args, state, control, **kw):
        last = self.trainer.micro_losses[-self.grad_accum :]
        self.losses.append({"step": state.global_step, "loss": sum(last) / len(last)})


def main():
    job = load_job()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-model", default=job["base_model"], help="the base model: a Hub id, a directory or a .gguf file (default: job.json's)")
    ap.add_argument("--output-dir", default=os.path.join(HERE, "output"))
    ap.add_argument("--max-steps", type=int, default=job["total_steps"], help="stop earlier than the run's end")
    ap.add_argument("--losses", help="write each step's loss here as JSON")
    args = ap.parse_args()

    model = load_adapter(load_base(job, args.base_model), os.path.join(HERE, "checkpoint"))
    optimizer = build_optimizer(job, model)
    scheduler = get_scheduler(SCHEDULES[job["schedule"]], optimizer, num_warmup_steps=job["warmup"], num_training_steps=job["total_steps"])
    with open(os.path.join(HERE, "data", "batches.json"), encoding="utf-8") as f:
        batches = json.load(f)
    targs = TrainingArguments(
        output_dir=args.output_dir,
        per_device_train_batch_size=job["batch"],
        gradient_accumulation_steps=job["grad_accum"],
        learning_rate=job["lr"],
        lr_scheduler_type=SCHEDULES[job["schedule"]],
        warmup_steps=job["warmup"],
        weight_decay=job["weight_decay"],
        max_steps=job["total_steps"],
        num_train_epochs=1,
        max_grad_norm=job["clip"] or 0.0,
        seed=job["seed"],
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
    )
    ckpt = write_resume_checkpoint(job, model, optimizer, scheduler, targs, args.output_dir)
    # The scheduler stepped to webpeft's step to be saved; the Trainer restores it from there.
    scheduler = get_scheduler(SCHEDULES[job["schedule"]], optimizer, num_warmup_steps=job["warmup"], num_training_steps=job["total_steps"])
    trainer = JobTrainer(
        model=model,
        args=targs,
        train_dataset=Rows(os.path.join(HERE, "data", "examples.jsonl")),
        optimizers=(optimizer, scheduler),
        batches=batches[: args.max_steps * job["grad_accum"]],
        collator=collate(job["pad_id"]),
    )
    losses = StepLosses(trainer, job["grad_accum"])
    trainer.add_callback(losses)
    trainer.args.max_steps = args.max_steps
    trainer.train(resume_from_checkpoint=ckpt)
    model.save_pretrained(args.output_dir)
    if args.losses:
        with open(args.losses, "w", encoding="utf-8") as f:
            json.dump(losses.losses, f)
    print(json.dumps({"resumed_at": job["step"], "steps": [l["step"] for l in losses.losses], "losses": [l["loss"] for l in losses.losses]}))


if __name__ == "__main__":
    main()
