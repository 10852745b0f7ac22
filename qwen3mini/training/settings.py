"""Settings of a training run: a dataclass per stage whose fields are also its command-line options.

Every field is declared with ``setting(default, help)`` so that ``--help`` explains each option; a stage
script subclasses ``TrainSettings``, adds its own fields the same way and changes inherited defaults with
plain values. ``parse_settings`` applies, in order: the
dataclass defaults, a named preset (``--preset tiny``), then each ``--field value`` given.
"""
import argparse
import dataclasses
from dataclasses import dataclass, field


def setting(default, help: str, choices=None):
    """A settings field with its ``--help`` text (and, optionally, the values it accepts)."""
    return field(default=default, metadata={"help": help, "choices": choices})


def require_at_least(settings, low: int, *names: str):
    """ValueError naming the first of the ``names`` fields of ``settings`` below ``low`` (counts and sizes)."""
    for name in names:
        if getattr(settings, name) < low:
            raise ValueError(f"--{name} {getattr(settings, name)}: expected a count >= {low}")


@dataclass
class TrainSettings:
    """What every stage decides the same way. Global batch = micro_batch x grad_accum x processes sequences."""
    out_dir: str = setting("runs/stage", "output folder: log.jsonl, ckpt/, final/, loss.png, summary.json")
    seed: int = setting(1337, "seed of the initial weights and of the data order")
    seq_len: int = setting(512, "tokens per training sequence")
    micro_batch: int = setting(16, "sequences per forward pass and process")
    grad_accum: int = setting(1, "micro-batches per optimizer step")
    steps: int = setting(1000, "optimizer steps of the whole run (a resumed run continues up to this)")
    lr: float = setting(3e-3, "peak learning rate (AdamW)")
    min_lr: float = setting(3e-4, "learning rate at the end of the decay")
    schedule: str = setting("cosine", "learning-rate schedule after the warmup", ("cosine", "wsd", "constant"))
    warmup_steps: int = setting(100, "steps of linear warmup")
    decay_frac: float = setting(0.2, "wsd: share of the steps spent in the final decay")
    weight_decay: float = setting(0.1, "AdamW weight decay of the matrices (norm weights get none)")
    beta1: float = setting(0.9, "AdamW beta1")
    beta2: float = setting(0.95, "AdamW beta2")
    grad_clip: float = setting(1.0, "clip the global gradient norm to this")
    lbl_coef: float = setting(0.001, "MoE: weight of the global-batch load-balancing loss (Qwen3 uses 0.001)")
    device: str = setting("auto", "where to train (auto: cuda if there is a GPU)", ("auto", "cpu", "cuda"))
    dtype: str = setting("bfloat16", "autocast dtype on a GPU; float32 turns autocast off",
                         ("bfloat16", "float32"))
    compile: bool = setting(False, "torch.compile the model and the loss")
    parallel: str = setting("ddp", "with several processes: ddp (replicas) or fsdp (sharded)", ("ddp", "fsdp"))
    log_every: int = setting(10, "steps between full log lines (the per-expert load table of an MoE)")
    eval_every: int = setting(250, "steps between validation losses")
    eval_batches: int = setting(10, "validation micro-batches per evaluation")
    ckpt_every: int = setting(500, "steps between resumable checkpoints in out_dir/ckpt")
    resume: bool = setting(True, "continue from out_dir/ckpt if a checkpoint is there; false starts over")
    progress: bool = setting(True, "show a progress bar (rank 0)")

    def __post_init__(self):
        require_at_least(self, 1, "seq_len", "micro_batch", "grad_accum", "steps", "log_every", "eval_every",
                         "eval_batches", "ckpt_every")
        for name in ("lr", "min_lr", "warmup_steps", "weight_decay", "grad_clip", "lbl_coef"):
            if not getattr(self, name) >= 0:                       # also rejects nan
                raise ValueError(f"--{name} {getattr(self, name)}: expected a number >= 0")
        if not 0 <= self.decay_frac <= 1:
            raise ValueError(f"--decay_frac {self.decay_frac}: expected a share in [0, 1]")


@dataclass
class SFTSettings(TrainSettings):
    """What the post-training SFT stages over sampled replies share (thinking-mode fusion, off-policy
    distillation): the flags of the samples, the held-out share, rows of whole conversations."""
    unflagged_share: float = setting(0.3, "share of thinking samples without a flag (thinking is the default)")
    template_switch_share: float = setting(0.5, "share of single-turn non-thinking samples asked with no flag and "
                                                "the template's empty think block (enable_thinking=False)")
    val_share: float = setting(0.02, "share of samples held out for the validation loss")
    seq_len: int = 1024
    micro_batch: int = 64
    warmup_steps: int = 20
    eval_every: int = 100
    eval_batches: int = 4
    ckpt_every: int = 100

    def __post_init__(self):
        super().__post_init__()
        for name in ("unflagged_share", "template_switch_share", "val_share"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"--{name} {getattr(self, name)}: expected a share in [0, 1)")


def parse_settings(cls, argv=None, presets=None, description=None):
    """Build ``cls`` from its defaults, then ``--preset NAME`` (a dict of overrides), then ``--field value``.

    Every dataclass field becomes an option of its own type; booleans take true/false/1/0.
    """
    presets = presets or {}
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(presets), default=None,
                        help="named group of settings applied before the other options")
    for f in dataclasses.fields(cls):
        kind = type(f.default) if f.default is not dataclasses.MISSING else str
        declared = _declaration(cls, f.name)
        parser.add_argument(f"--{f.name}", dest=f.name, default=None, type=_parse_bool if kind is bool else kind,
                            choices=declared.metadata["choices"],
                            help=f"{declared.metadata['help']} (default: {f.default})")
    args = parser.parse_args(argv)
    values = dict(presets.get(args.preset, {}))
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"preset {args.preset!r} sets unknown settings {sorted(unknown)}")
    values.update({k: v for k, v in vars(args).items() if k != "preset" and v is not None})
    return cls(**values)


def _declaration(cls, name):
    """The ``setting(...)`` that declared field ``name``: a subclass may override a default with a plain value
    (``steps: int = 2000``) and keep the help text of the class that introduced the field."""
    for klass in cls.__mro__:
        declared = getattr(klass, "__dataclass_fields__", {}).get(name)
        if declared is not None and "help" in declared.metadata:
            return declared
    raise TypeError(f"{cls.__name__}.{name}: declare it with setting(default, help)")


def _parse_bool(text):
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")
