"""Strong-to-weak distillation (paper §4.5): a small student learns from a post-trained teacher.

* Off-policy (train/distill_off_policy.py): SFT on the teacher's own replies in both modes, each kept only
  when the task's check accepts it: the verifier and the response filters for task replies
  (fusion_samples.rejection_sampled), general RL's rule-based rewards for instructions, dialogues and tool
  calls (``rewarded_replies``).
* On-policy (train/distill_on_policy.py): the student samples (either mode) through the one generation path,
  the teacher scores the same tokens, and the loss is the per-token reverse KL from student to teacher over
  the whole vocabulary (exact: the vocabulary has 16,384 ids), summed over the sampled completion tokens and
  divided by their count over every micro-batch and rank (the trainer's token-level normalisation, as GRPO):

      KL(π_s ‖ π_t)(t) = Σ_v π_s(v | prefix) · (log π_s(v | prefix) - log π_t(v | prefix))

  The prefixes are the student's own samples, so minimising it pulls the student towards the teacher where
  the student actually goes (mode-seeking), with no reward needed; the rewards of the samples are logged for
  information only. ``divergence="forward"`` takes KL(π_t ‖ π_s) on the same samples instead (mean-seeking,
  SFT's direction). The shared RL loop (rl.py) runs it: ``DistillObjective`` in place of GRPO.
"""
import os

import torch
import torch.nn.functional as F

from ..config import Qwen3Config
from .losses import IGNORE, CausalLMLoss
from .rl import Objective
from .rollouts import RolloutSample, packed_steps

# The task queries of both distillations: the cold start's range and the RL stage's edge past it
# (train/rl_reasoning.py), where the students' accuracy is set against the control arm's.
DISTILL_RANGES = "add:1-9,mul:1-4,expr:1-7,linear:1-6,sort:3-13,countdown:3-5,chain:1-7"


DIVERGENCES = ("reverse", "forward")


def reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(student ‖ teacher) over the whole vocabulary at every position, fp32 [..., ] of logits [..., V]."""
    student, teacher = F.log_softmax(student_logits.float(), dim=-1), F.log_softmax(teacher_logits.float(), dim=-1)
    return (student.exp() * (student - teacher)).sum(-1)


def forward_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student), the same shapes as ``reverse_kl``: the same divergence with the roles swapped."""
    return reverse_kl(teacher_logits, student_logits)


def check_divergence(divergence: str):
    if divergence not in DIVERGENCES:
        raise ValueError(f"--divergence {divergence}: expected one of {', '.join(DIVERGENCES)}")


class TeacherKLLoss(CausalLMLoss):
    """The on-policy distillation loss of packed micro-batches (inputs, targets, position_ids, ...): the sum
    of the KL (``divergence``: ``reverse_kl`` or ``forward_kl``) over the positions whose target is a sampled
    token (not IGNORE), the teacher's logits computed here without a graph. An MoE student keeps the global-batch
    load-balancing loss (losses.py). Metrics: ``kl`` (the loss) and ``teacher_nll``, the teacher's negative
    log-likelihood of the sampled tokens (how plausible the teacher finds what the student writes)."""

    def __init__(self, config, teacher, lbl_coef: float = 0.0, divergence: str = "reverse"):
        super().__init__(config, lbl_coef)
        check_divergence(divergence)
        self.teacher, self.kl = teacher, reverse_kl if divergence == "reverse" else forward_kl

    def token_loss(self, logits, micro_batch):
        inputs, targets, positions = micro_batch[:3]
        mask = targets != IGNORE
        with torch.no_grad():
            teacher_logits = self.teacher(inputs, position_ids=positions)
            teacher_logp = F.log_softmax(teacher_logits.float(), dim=-1)
            nll = -(teacher_logp.gather(-1, targets.clamp_min(0)[..., None])[..., 0] * mask).sum()
        kl = (self.kl(logits, teacher_logits) * mask).sum()
        return kl, {"loss": kl.detach(), "kl": kl.detach(), "teacher_nll": nll}


class DistillObjective(Objective):
    """On-policy distillation in the RL loop: every sampled completion is trained on (no advantage: the
    teacher's distribution is the signal), packed like GRPO's rollouts, with ``TeacherKLLoss``."""
    metrics = ("loss", "kl", "teacher_nll", "lbl")
    curves = ["kl", "teacher_nll", "reward", "thinking_tokens", "truncated", "generate_seconds", "update_seconds"]

    def __init__(self, config, teacher, lbl_coef: float, divergence: str = "reverse"):
        self.loss_fn = TeacherKLLoss(config, teacher, lbl_coef, divergence)

    def samples(self, groups, advantages, equal):
        return [RolloutSample(prompt + r.tokens, [False] * len(prompt) + r.mask, 0.0)
                for prompt, group in groups for r in group]

    def update_batches(self, samples, model, settings, pad_id, info, seed):
        return packed_steps(samples, settings.seq_len, settings.micro_batch, settings.minibatches, pad_id, info, seed)


def load_teacher(path: str, tokenizer, device, dtype=None):
    """The teacher (HF layout, frozen, in eval mode) on ``device``; its vocabulary must be the student's."""
    import qwen3mini
    if not os.path.isdir(path):
        raise ValueError(f"--teacher {path}: no such folder (the post-trained chat model, e.g. "
                         f"checkpoints/qwen3mini-chat or runs/posttrain/rl_general/final)")
    ours, theirs = tokenizer, qwen3mini.load_tokenizer(path)
    if theirs.id_to_bytes != ours.id_to_bytes or theirs.token_to_id != ours.token_to_id:
        differs = next((i for i, (a, b) in enumerate(zip(theirs.id_to_bytes, ours.id_to_bytes)) if a != b),
                       min(len(theirs.id_to_bytes), len(ours.id_to_bytes)))
        raise ValueError(f"--teacher {path}: its vocabulary differs from the student's (first at id {differs}: "
                         f"{theirs.decode([differs]) if differs < theirs.vocab_size else None!r} for the teacher, "
                         f"{ours.decode([differs]) if differs < ours.vocab_size else None!r} for the student); "
                         f"distillation compares distributions over one vocabulary, so pre-train the student "
                         f"with the teacher's tokenizer (train/run_distill.sh does)")
    teacher = qwen3mini.load_model(path, device=device, dtype=dtype)
    teacher.requires_grad_(False)
    return teacher.eval()


def distill_objective(settings, info, tokenizer, previous_stage: str) -> DistillObjective:
    """run_rl's ``make_objective`` for on-policy distillation: the teacher ``settings.teacher``, in bf16 on a
    GPU (the student's autocast computes in bf16 anyway), fp32 on the CPU."""
    dtype = torch.bfloat16 if info.device.type == "cuda" else torch.float32
    teacher = load_teacher(settings.teacher, tokenizer, info.device, dtype)
    return DistillObjective(Qwen3Config.load(settings.init_from), teacher, settings.lbl_coef, settings.divergence)


def rewarded_replies(environment, generator, queries: list, tries: int, sampling, seed: int,
                     batch_rows: int) -> list[tuple | None]:
    """For each query of a general-RL ``environment`` (general_rl.py), the first of ``tries`` sampled replies
    that earns reward 1, as a training sample (ids, mask) (the mask: the tokens the model wrote, a tool's
    replies left out); None when none does (rejection sampling by the rule-based rewards)."""
    kept = []
    for prompt, rollouts in environment.rollouts(generator, queries, tries, sampling, seed, batch_rows):
        kept.append(next(((prompt + r.tokens, [False] * len(prompt) + r.mask) for r in rollouts if r.reward == 1),
                         None))
    return kept
