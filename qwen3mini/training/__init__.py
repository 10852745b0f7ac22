"""Training, split by job. A stage script reads top to bottom through these, in this order:

* ``settings.py``     the settings dataclass of a run and its command line (``setting``, ``parse_settings``)
* ``distributed.py``  processes, DDP / FSDP2 wrapping, collectives, seeding
* ``optim.py``        AdamW with weight decay on matrices only, learning-rate schedules
* ``losses.py``       the loss-function protocol the trainer calls; pre-training's ``CausalLMLoss``
* ``moe_loss.py``     the global-batch load-balancing loss of the MoE (paper §2)
* ``trainer.py``      ``Trainer``: the loop, one optimizer step, evaluation
* ``checkpoints.py``  resumable checkpoints (atomic, with RNG states and data positions)
* ``logs.py``         the JSONL log of a run and loss plots
* ``stage.py``        what every stage script shares: ``run_stage``, ``fine_tune``, ``save_pretrained``, ``run_script``

Post-training (paper §4) adds:

* ``sft.py``             conversations rendered with the chat template, the loss mask, packing
* ``task_samples.py``    the verifiable tasks' queries and solver replies, the query filters, RL's candidates
* ``grpo.py``            the GRPO objective: group-relative advantages, the clipped ratio, KL, entropy
* ``rollouts.py``        the query pool, sampled groups, rollouts packed into micro-batches
* ``rl.py``              the RL loop both RL stages share (``Environment``, ``TaskEnvironment``, ``Objective``,
                         ``run_rl``)
* ``fusion_samples.py``  thinking-mode fusion's data: rejection sampling, flags, dialogues, knowledge, tools
* ``general_rl.py``      general RL's tasks and rule-based rewards
* ``distill.py``         strong-to-weak distillation (§4.5): the reverse-KL loss, its objective for the RL loop
"""
