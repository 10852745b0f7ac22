"""Small talk: the turns a user types before (or instead of) a task question: a greeting, who the model is,
what it can do, thanks, goodbye. The report's fusion data covers general conversation (paper §4.3); ours is
templated, so that the chat answers "Hello" with a greeting and an honest line about what it can do rather
than with text from its pre-training corpus.

``small_talk(rng)`` draws one exchange: (user text, reply, thought), the thought being the short reasoning a
thinking-mode reply opens with. ``TOPICS`` are the kinds of exchange; every user text is one of ``ASKS``' phrasings
of its topic, capitalised or not, with a closing mark; ``replies_to(topic)`` lists the replies a topic allows, which
the tests use to check a reply.
"""
import random

NAME = "qwen3mini-chat"
CAN_DO = ("arithmetic (adding, subtracting and multiplying integers), expressions with + - * and parentheses, "
          "linear equations in x, sorting numbers, countdown puzzles and short word problems about quantities; "
          "with the calculator tool, long products")

ASKS: dict[str, tuple[str, ...]] = {   # topic -> what the user types (before casing and the closing mark)
    "greeting": ("hello", "hi", "hey", "hello there", "hi there", "good morning", "good evening"),
    "identity": ("who are you", "what are you", "what is your name", "what's your name", "are you a person",
                 "tell me about yourself"),
    "abilities": ("what can you do", "how can you help me", "what do you know", "what questions can I ask you",
                  "what are you good at"),
    "thanks": ("thanks", "thank you", "thank you very much", "thanks a lot", "great, thanks"),
    "goodbye": ("bye", "goodbye", "see you", "that's all for now", "good night"),
}
TOPICS = tuple(ASKS)
_REPLIES: dict[str, tuple[str, ...]] = {
    "greeting": (f"Hello! I am {NAME}, a small language model. Ask me a math question, or to sort some numbers.",
                 f"Hi! I am {NAME}. I can work through arithmetic, equations and sorting step by step. "
                 "What would you like to solve?"),
    "identity": (f"I am {NAME}, a small Qwen3-style language model (18.9M parameters) trained from scratch in the "
                 "qwen3mini project. I am not a person.",),
    "abilities": (f"I can solve {CAN_DO}. I think step by step unless you add /no_think. "
                  "I know little else, so check what I say.",),
    "thanks": ("You're welcome!", "Glad to help."),
    "goodbye": ("Goodbye!", "Bye! Come back with more problems."),
}
_THOUGHTS = {
    "greeting": "The user greets me. I greet back and say what I can help with.",
    "identity": "The user asks who I am. I say my name and what kind of model I am.",
    "abilities": "The user asks what I can do. I list the kinds of problems I solve, and my limits.",
    "thanks": "The user thanks me. A short reply is enough.",
    "goodbye": "The user says goodbye. I say goodbye too.",
}


def replies_to(topic: str) -> tuple[str, ...]:
    """The replies that answer ``topic`` (KeyError for an unknown topic)."""
    return _REPLIES[topic]


def small_talk(rng: random.Random, topic: str | None = None) -> tuple[str, str, str]:
    """(user text, reply, thought) of one exchange of ``topic`` (a random topic when None)."""
    topic = topic or rng.choice(TOPICS)
    text = rng.choice(ASKS[topic])
    if rng.random() < 0.7:                    # most people type the capital; some do not
        text = text[0].upper() + text[1:]
    mark = "?" if topic in ("identity", "abilities") else rng.choice(("!", ".", ""))
    return text + mark, rng.choice(_REPLIES[topic]), _THOUGHTS[topic]
