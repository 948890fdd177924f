"""pacos's judge prompts, each with a version: a new text gets a new version, so cached verdicts of an old
text are never reused for it (the version is part of every cache key).

The judge sees one question and one or two answers; for turn 2 of a multi-turn question, the whole
conversation (MT-bench's multi-turn setting). Pairwise verdicts are `[[A]]`, `[[B]]` or `[[C]]` (tie), ratings
`[[N]]` for N in 1..10, so a parser can find them in free text after the judge's explanation.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JudgePrompt:
    version: str  # bump it whenever `system` or `user` changes
    system: str
    user: str  # str.format fields: see the render_* functions


_FAIR = ("Judge what the answers say, not how they are presented: the order in which they are shown does not "
         "matter, a longer answer is not better for being longer, and confident tone is no substitute for being "
         "right.")

_PAIRWISE_VERDICT = ("First compare the two in a few sentences, then end with your verdict on a line of its own, "
                     "exactly one of: [[A]] if assistant A's answer is better, [[B]] if assistant B's answer is "
                     "better, [[C]] if they are equally good.")

_RATING = ("First explain your assessment in a few sentences, then end with the rating on a line of its own, "
           "an integer from 1 (useless) to 10 (excellent) in double brackets, like this: Rating: [[6]]")

PAIRWISE = JudgePrompt(
    "pairwise-v1",
    "You are a careful, impartial judge of AI assistants. Two assistants answered the same user question. "
    "Decide whose answer serves the user better: correct, helpful, relevant, as detailed as the question "
    f"needs, and clear. {_FAIR} {_PAIRWISE_VERDICT}",
    "[User question]\n{question}\n\n[Assistant A's answer]\n{answer_a}\n[End of assistant A's answer]\n\n"
    "[Assistant B's answer]\n{answer_b}\n[End of assistant B's answer]",
)

PAIRWISE_MULTI = JudgePrompt(
    "pairwise-multi-v1",
    "You are a careful, impartial judge of AI assistants. Below are two conversations of a user with two "
    "assistants; the user's messages are the same in both. Judge only the assistants' answers to the user's "
    "last message, reading the earlier turns as their context: correct, helpful, relevant, consistent with "
    f"the conversation, and clear. {_FAIR} {_PAIRWISE_VERDICT}",
    "[Conversation with assistant A]\n{conversation_a}\n[End of conversation with assistant A]\n\n"
    "[Conversation with assistant B]\n{conversation_b}\n[End of conversation with assistant B]",
)

SINGLE = JudgePrompt(
    "single-v1",
    "You are a careful, impartial judge of an AI assistant. Rate how well its answer serves the user: "
    "correct, helpful, relevant, as detailed as the question needs, and clear. A longer answer is not better "
    f"for being longer. {_RATING}",
    "[User question]\n{question}\n\n[Assistant's answer]\n{answer}\n[End of assistant's answer]",
)

SINGLE_MULTI = JudgePrompt(
    "single-multi-v1",
    "You are a careful, impartial judge of an AI assistant. Below is a conversation of a user with it. Rate "
    "only its answer to the user's last message, reading the earlier turns as context: correct, helpful, "
    f"relevant, consistent with the conversation, and clear. {_RATING}",
    "[Conversation]\n{conversation}\n[End of conversation]",
)

REFERENCE = JudgePrompt(
    "reference-v1",
    "You are a careful, impartial judge of an AI assistant on a question with a verifiable answer (math, "
    "reasoning, code). A reference answer is given: check the assistant's answer against it, find every "
    "mistake in its result and in its reasoning, and rate mostly on correctness; a wrong final answer cannot "
    f"rate above 3. {_RATING}",
    "[User question]\n{question}\n\n[Reference answer]\n{reference}\n[End of reference answer]\n\n"
    "[Assistant's answer]\n{answer}\n[End of assistant's answer]",
)

REFERENCE_MULTI = JudgePrompt(
    "reference-multi-v1",
    "You are a careful, impartial judge of an AI assistant on questions with verifiable answers (math, "
    "reasoning, code). Below is a conversation of a user with it and a reference answer to the user's last "
    "message. Check only the assistant's answer to that last message against the reference, find every "
    "mistake in its result and in its reasoning, and rate mostly on correctness; a wrong final answer cannot "
    f"rate above 3. {_RATING}",
    "[Conversation]\n{conversation}\n[End of conversation]\n\n"
    "[Reference answer to the last message]\n{reference}\n[End of reference answer]",
)

ALL = (PAIRWISE, PAIRWISE_MULTI, SINGLE, SINGLE_MULTI, REFERENCE, REFERENCE_MULTI)


def conversation(turns, answers, who: str = "Assistant") -> str:
    """User turns and the assistant's answers up to the judged turn, as one block of text."""
    return "\n\n".join(f"### User:\n{q}\n\n### {who}:\n{a}" for q, a in zip(turns, answers))


def _messages(prompt: JudgePrompt, **fields) -> list[dict]:
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user.format(**fields)}]


def render_pairwise(turns, first: list[str], second: list[str]) -> tuple[JudgePrompt, list[dict]]:
    """The prompt judging the last of `turns` (the user's messages up to the judged turn): `first` is shown as
    assistant A, `second` as B, each the answers up to that turn."""
    if len(turns) == 1:
        return PAIRWISE, _messages(PAIRWISE, question=turns[0], answer_a=first[0], answer_b=second[0])
    return PAIRWISE_MULTI, _messages(PAIRWISE_MULTI, conversation_a=conversation(turns, first, "Assistant A"),
                                     conversation_b=conversation(turns, second, "Assistant B"))


def render_rating(turns, answers: list[str], reference: str | None = None) -> tuple[JudgePrompt, list[dict]]:
    """The prompt rating the answer to the last of `turns`, against `reference` when given."""
    if reference is None:
        if len(turns) == 1:
            return SINGLE, _messages(SINGLE, question=turns[0], answer=answers[0])
        return SINGLE_MULTI, _messages(SINGLE_MULTI, conversation=conversation(turns, answers))
    if len(turns) == 1:
        return REFERENCE, _messages(REFERENCE, question=turns[0], reference=reference, answer=answers[0])
    return REFERENCE_MULTI, _messages(REFERENCE_MULTI, conversation=conversation(turns, answers),
                                      reference=reference)
