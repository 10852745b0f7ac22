"""The evaluation harness (issue 17 §2), shared by every post-training stage: the verifiable task families'
fixed held-out test sets (``qwen3mini.tasks``), asked in thinking and non-thinking mode, under a sweep of
thinking budgets, and ThinkFollow (paper §4.3); every reply generated through the one batched path
(``qwen3mini.chat.generate_replies``).

    from qwen3mini.evaluation import Selection, evaluate, write_report
    results = evaluate(model, tokenizer, Selection(families=["add", "sort"], samples=8, thinkfollow=100))
    write_report(results, "runs/eval")          # evaluation.json, accuracy_by_difficulty.png, accuracy_by_budget.png

    scoring.py      one reply: correct?, thinking / answer tokens, ended by itself?; a cell's figures
    thinkfollow.py  the multi-turn /think /no_think dialogues and their scoring
    general.py      instruction following, knowledge questions, tool use (issue 19)
    harness.py      the cells, their generation in batches, the results dict
    journal.py      the finished phases on disk, so that an interrupted evaluation resumes
    report.py       JSON and plots, written atomically

The results dict (``evaluation.json``): ``schema``, ``selection`` (what ran), ``sampling`` (the paper's
settings per mode), ``reply_limit``, ``cells``, ``thinkfollow`` (n, correct, accuracy, wilson95, by_kind,
replied_modes; or null), ``general`` (general.py's instructions / knowledge / tools figures per mode, each
present when asked for), ``ended_within_1024`` (per mode, the share of greedy task replies that ended by
themselves within 1,024 tokens) and ``generation`` (replies, generated_tokens, seconds, tokens_per_second). A cell
is one record per family, difficulty, mode and budget (null: none): n, correct, pass@1 (greedy), wilson95,
mean_thinking_tokens, mean_answer_tokens, self_ended (share of greedy replies that ended their turn
themselves), thought (share of greedy replies with a non-empty think block), samples, pass@k (``{"1": ..,
"8": ..}`` from the samples, or null), example (the first item's question and greedy reply) and misses (the first
four wrong greedy replies, each with its question and the right answer).
"""
from .harness import BUDGETS, MODES, SCHEMA, Selection, evaluate, reply_limit
from .journal import Journal
from .report import write_report
from .scoring import Scored, score_reply, summarize, token_counts
from .thinkfollow import Dialogue, make_dialogues, reply_mode

__all__ = ["BUDGETS", "MODES", "SCHEMA", "Dialogue", "Journal", "Scored", "Selection", "evaluate", "make_dialogues",
           "reply_limit", "reply_mode", "score_reply", "summarize", "token_counts", "write_report"]
