"""The shipped students of strong-to-weak distillation (issue 20): each at most 20 MB on disk, loadable as a
chat model, with the teacher's vocabulary (what distillation taught them to write), thinking when asked and
answering in the chat format."""
import os

import pytest

from qwen3mini.chat import generate_replies, load, render
from qwen3mini.generation import SamplingParams
from qwen3mini.tokenizer import load_tokenizer

CHECKPOINTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "checkpoints")


@pytest.mark.parametrize("name", ["qwen3mini-student", "qwen3mini-student-moe"])
def test_a_shipped_student_loads_and_answers_in_both_modes(name):
    folder = os.path.join(CHECKPOINTS, name)
    assert sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) <= 20_000_000
    model, tokenizer, _ = load(folder, device="cpu")
    teacher = load_tokenizer(os.path.join(CHECKPOINTS, "qwen3mini-chat"))
    assert tokenizer.id_to_bytes == teacher.id_to_bytes and tokenizer.token_to_id == teacher.token_to_id
    question = [{"role": "user", "content": "What is 12 + 34?"}]
    thinking, direct = generate_replies(model, tokenizer, [render(tokenizer, question, think=True),
                                                           render(tokenizer, question, think=False)],
                                        256, SamplingParams(temperature=0.0))
    assert thinking.parts.thinking.strip() and "\\boxed{" in thinking.parts.answer
    assert not direct.parts.thinking.strip() and "\\boxed{" in direct.parts.answer
