"""Training, split by job. A stage script reads top to bottom through these, in this order:

* ``settings.py``     the settings dataclass of a run and its command line (``setting``, ``parse_settings``)
* ``distributed.py``  processes, DDP / FSDP2 wrapping, collectives, seeding
* ``optim.py``        AdamW with weight decay on matrices only, learning-rate schedules
* ``losses.py``       the loss-function protocol the trainer calls; pre-training's ``CausalLMLoss``
* ``moe_loss.py``     the global-batch load-balancing loss of the MoE (paper §2)
* ``trainer.py``      ``Trainer``: the loop, one optimizer step, evaluation
* ``checkpoints.py``  resumable checkpoints (atomic, with RNG states and data positions)
* ``logs.py``         the JSONL log of a run and loss plots
* ``stage.py``        what every stage script shares: ``run_stage``, ``save_pretrained``, ``run_script``
"""
