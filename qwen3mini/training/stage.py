"""What every stage script shares (paper §3: S1 general, S2 reasoning, S3 long context; post-training next).

A stage script = its settings + how to build its model + how to read its data, then ``run_stage``: join the
processes, build both, train with ``Trainer``, save the model in the HF layout (``save_pretrained``), plot
the loss and write a summary. ``run_script`` turns bad input into one line on stderr instead of a traceback.
"""
import dataclasses
import hashlib
import json
import os
import shutil
import sys

import torch

from ..chat import SAMPLING_DEFAULTS
from ..config import PRESETS
from .checkpoints import write_atomic
from .distributed import barrier, close_distributed, gathered_model, init_distributed, seed_everything, wrap_model
from .logs import plot_losses, read_log
from .optim import Schedule, build_optimizer
from .trainer import Trainer


def scratch_config(preset: str, vocab_size: int, seq_len: int):
    """The ``Qwen3Config`` of a model trained from scratch: a shape of ``config.PRESETS`` with our vocabulary,
    fp32 master weights, S1's RoPE base 10,000 (S3 raises it: ABF, paper §3), a context of ``seq_len`` and
    no special token ids (``save_pretrained`` adds the tokenizer's)."""
    if preset not in PRESETS:
        raise ValueError(f"--model {preset!r}: expected one of {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[preset], vocab_size=vocab_size, torch_dtype="float32", rope_theta=10_000.0,
                               max_position_embeddings=seq_len, rope_scaling=None, bos_token_id=None,
                               eos_token_id=None)


def load_start(path: str, vocab_size: int, previous_stage: str):
    """The fp32 model a continuing stage starts from (the previous stage's ``out_dir/final``)."""
    import qwen3mini
    if not os.path.isdir(path):
        raise ValueError(f"--init_from {path}: no such folder (run {previous_stage} first, or point "
                         f"--init_from at its out_dir/final)")
    model = qwen3mini.load_model(path, dtype=torch.float32)
    if model.config.vocab_size != vocab_size:
        raise ValueError(f"--init_from {path} has vocab_size {model.config.vocab_size}, the shards "
                         f"{vocab_size}: they come from different tokenizers")
    return model.train()


def special_token_ids(tokenizer_dir: str) -> dict:
    """Ids of ``<|endoftext|>`` and ``<|im_end|>`` in a tokenizer (they differ from Qwen3's in a small vocab)."""
    import qwen3mini
    if not os.path.isdir(tokenizer_dir):
        raise ValueError(f"--tokenizer {tokenizer_dir}: no such folder (python -m train.data.train_tokenizer "
                         f"builds it; an empty --tokenizer saves the model without one)")
    ids = qwen3mini.load_tokenizer(tokenizer_dir).token_to_id
    missing = sorted({"<|endoftext|>", "<|im_end|>"} - set(ids))
    if missing:
        raise ValueError(f"{tokenizer_dir}: the tokenizer has no added token {missing}")
    return {name: ids[name] for name in ("<|endoftext|>", "<|im_end|>")}


def check_shards_tokenizer(data_dir: str, tokenizer_dir: str):
    """ValueError unless the shards in ``data_dir`` were encoded by ``tokenizer_dir``'s tokenizer (build_shards
    records the sha256 of the tokenizer.json it used): a model saved with another tokenizer than the one its
    data was encoded with reads some ids as other strings."""
    meta, tokenizer_file = os.path.join(data_dir, "train.json"), os.path.join(tokenizer_dir, "tokenizer.json")
    if not (os.path.isfile(meta) and os.path.isfile(tokenizer_file)):
        return
    with open(meta) as f:
        recorded = json.load(f).get("tokenizer_sha256")
    with open(tokenizer_file, "rb") as f:
        actual = hashlib.sha256(f.read()).hexdigest()
    if recorded and recorded != actual:
        raise ValueError(f"--data {data_dir}: its shards were encoded by another tokenizer than --tokenizer "
                         f"{tokenizer_dir} (tokenizer.json sha256 {recorded[:12]}..., not {actual[:12]}...); "
                         f"encode them with python -m train.data.build_shards --tokenizer {tokenizer_dir}")


# What tokenizer.load_tokenizer reads from a directory (HF layout).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")


def save_pretrained(model, directory: str, tokenizer_dir: str = None, dtype=None, max_shard_size=None,
                    post_trained: bool = False):
    """Save ``model`` in the HF layout: config.json, safetensors, and with ``tokenizer_dir`` its tokenizer
    files plus a ``generation_config.json`` with Qwen3's sampling settings (docs/qwen3.md §2.4: thinking mode's
    for a post-trained model, non-thinking mode's for a base model, which cannot think yet).
    A ``post_trained`` model ends its turns, so it stops on ``<|im_end|>`` as well as ``<|endoftext|>``; a base
    model stops on ``<|endoftext|>`` alone, as Qwen's -Base releases do (qwen3mini.chat reads the difference)."""
    from ..checkpoint import save_model
    config = model.config
    if tokenizer_dir:
        ids = special_token_ids(tokenizer_dir)
        eot, im_end = ids["<|endoftext|>"], ids["<|im_end|>"]
        model.config = dataclasses.replace(config, bos_token_id=eot, eos_token_id=eot)
    save_model(model, directory, max_shard_size=max_shard_size, dtype=dtype)
    model.config = config
    if not tokenizer_dir:
        return
    for name in TOKENIZER_FILES:   # (not the whole folder: a model directory also holds its own measurements)
        if os.path.isfile(os.path.join(tokenizer_dir, name)):
            shutil.copy(os.path.join(tokenizer_dir, name), os.path.join(directory, name))
    sampling = SAMPLING_DEFAULTS["think" if post_trained else "no-think"]   # a base model cannot think yet
    generation = {"bos_token_id": eot, "eos_token_id": [im_end, eot] if post_trained else eot, "pad_token_id": eot,
                  "do_sample": True, **{k: sampling[k] for k in ("temperature", "top_p", "top_k")}}
    write_atomic(os.path.join(directory, "generation_config.json"), json.dumps(generation, indent=2) + "\n")


def save_final(model, out_dir: str, tokenizer_dir: str):
    """A post-training stage's ``out_dir/final``: bf16, with the tokenizer, written beside it first and swapped
    in (a kill keeps the previous one)."""
    final, tmp = os.path.join(out_dir, "final"), os.path.join(out_dir, "final.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_pretrained(model, tmp, tokenizer_dir, dtype=torch.bfloat16, post_trained=True)
    if os.path.exists(final):
        shutil.rmtree(final + ".old", ignore_errors=True)
        os.replace(final, final + ".old")
    os.replace(tmp, final)
    shutil.rmtree(final + ".old", ignore_errors=True)


def fine_tune(name: str, settings, info, model, tokenizer_dir: str, pad_id: int, train: list, val: list,
              extra: dict | None = None) -> dict:
    """The SFT run of a post-training stage (paper §4.1, §4.3): ``train`` / ``val`` samples [(ids, mask)]
    packed into rows (sft.py), the shared trainer (resumable), ``out_dir/final`` in bf16 with the tokenizer,
    ``loss.png`` and ``summary.json`` (with ``extra``). Returns the summary on rank 0 ({} elsewhere)."""
    from .losses import CausalLMLoss
    from .sft import PackedBatches
    batches = [PackedBatches(samples, settings.seq_len, settings.micro_batch, info, settings.seed, pad_id,
                             model.config.vocab_size, shuffle=samples is train) for samples in (train, val)]
    wrapped = wrap_model(model, info, settings.parallel, settings.compile)
    optimizer = build_optimizer(wrapped, settings.lr, settings.weight_decay, (settings.beta1, settings.beta2))
    loss_fn = CausalLMLoss(model.config, settings.lbl_coef, settings.compile)
    trainer = Trainer(wrapped, optimizer, Schedule.from_settings(settings), settings, info, *batches, name=name,
                      loss_fn=loss_fn)
    records = trainer.fit()
    final = gathered_model(wrapped, info)
    summary = {}
    if info.is_main:
        save_final(final, settings.out_dir, tokenizer_dir)
        plot_losses({f"{name} train": trainer.log.path}, os.path.join(settings.out_dir, "loss.png"), key="loss",
                    title=f"{name}: training loss (assistant tokens)")
        summary = {**stage_summary(name, trainer, records, model.config, info.world_size), **(extra or {})}
        write_atomic(os.path.join(settings.out_dir, "summary.json"), json.dumps(summary, indent=2))
        print(f"{name}: {trainer.step} steps, {trainer.elapsed:.0f} s, loss {summary['final_loss']}, "
              f"val {summary['final_val_loss']}; saved {settings.out_dir}/final")
    return summary


def run_stage(name: str, settings, build_model, build_data) -> dict:
    """Train one stage and save ``out_dir/final`` (HF layout, fp32: the next stage's start), ``loss.png``
    and ``summary.json``; returns the summary (on rank 0; {} elsewhere).

    ``build_data(settings, info) -> (train_data, val_data)``: batch sources with a ``vocab_size``;
    ``build_model(settings, vocab_size) -> Qwen3ForCausalLM`` (fp32, on the CPU).
    """
    info = init_distributed(settings.device)
    if settings.tokenizer:
        special_token_ids(settings.tokenizer)           # a bad tokenizer folder fails now, not after training
        check_shards_tokenizer(settings.data, settings.tokenizer)
    seed_everything(settings.seed)                      # the same initial weights on every rank
    train_data, val_data = build_data(settings, info)
    model = build_model(settings, train_data.vocab_size)
    config = model.config
    if info.is_main:
        print(config.describe())
    wrapped = wrap_model(model, info, settings.parallel, settings.compile)
    optimizer = build_optimizer(wrapped, settings.lr, settings.weight_decay, (settings.beta1, settings.beta2))
    trainer = Trainer(wrapped, optimizer, Schedule.from_settings(settings), settings, info, train_data, val_data,
                      name=name)
    records = trainer.fit()
    final = gathered_model(wrapped, info)
    summary = {}
    if info.is_main:
        save_pretrained(final, os.path.join(settings.out_dir, "final"), settings.tokenizer or None)
        plot_losses({f"{name} train": trainer.log.path}, os.path.join(settings.out_dir, "loss.png"),
                    title=f"{name}: training loss")
        summary = stage_summary(name, trainer, records, config, info.world_size)
        write_atomic(os.path.join(settings.out_dir, "summary.json"), json.dumps(summary, indent=2))
        print(f"{name}: {trainer.step} steps, {summary['tokens'] / 1e6:.1f}M tokens, {trainer.elapsed:.0f} s, "
              f"loss {summary['final_loss']}, val {summary['final_val_loss']}")
    barrier()
    close_distributed()
    return summary


def stage_summary(name, trainer, records, config, world_size) -> dict:
    log = read_log(trainer.log.path)
    evals = [r for r in log if "val_loss" in r]
    tokens = log[-1]["tokens"] if log else 0
    return {"stage": name, "steps": trainer.step, "tokens": tokens, "train_seconds": trainer.elapsed,
            "tokens_per_second": tokens / max(trainer.elapsed, 1e-9) if records else None,
            "final_loss": log[-1]["loss"] if log else None,
            "final_val_loss": evals[-1]["val_loss"] if evals else None,
            "parameters": config.num_parameters(), "seq_len": trainer.settings.seq_len, "world_size": world_size,
            "settings": dataclasses.asdict(trainer.settings), "config": config.to_hf_dict()}


def run_script(main):
    """Run a script's ``main()``; bad input (a ValueError or OSError, whose message names the file or
    option at fault) ends with one line on stderr and exit status 1."""
    try:
        main()
    except (ValueError, OSError) as error:
        print(f"{os.path.basename(sys.argv[0])}: error: {error}", file=sys.stderr)
        sys.exit(1)
