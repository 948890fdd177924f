"""Questions answered by a model behind an OpenAI-compatible server: each question a conversation of chat calls
(turn k+1 sent with the model's own answer to turn k), through pacos.remote's client (retries, deadlines,
size caps)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pacos.errors import PacosError
from pacos.eval.questions import Question


async def endpoint_answers(config, todo: list[tuple[int, Question]], sampling_of: Callable,
                           write: Callable[[int, Question, list[str], list], None]) -> None:
    """Ask every (index, question) of `todo`, `config.concurrency` questions at a time (all turns of one before
    it frees its place, so questions finish, and are written, as the run goes), calling `write(index, question,
    answers, finish_reasons)` as each finishes. A question the server answers unreadably is left unwritten
    and named at the end, after the others are in."""
    from pacos.remote.client import RemoteModel

    model = RemoteModel(config)
    places = asyncio.Semaphore(config.concurrency)
    failed: list[str] = []

    async def ask(index: int, question: Question):
        async with places:
            params = sampling_of(index, question)
            messages = [{"role": "system", "content": question.system}] if question.system else []
            answers = []
            for turn in question.turns:
                messages.append({"role": "user", "content": turn})
                reply = await model.chat(messages, temperature=params.temperature, top_p=params.top_p,
                                         max_tokens=params.max_new_tokens)
                answer = reply.answers[0]
                if answer.error:
                    failed.append(f"{question.where} turn {len(answers) + 1}: {answer.error}")
                    return None
                messages.append({"role": "assistant", "content": answer.text})
                answers.append(answer)
            return index, question, answers

    tasks = [asyncio.ensure_future(ask(index, question)) for index, question in todo]
    try:
        for next_done in asyncio.as_completed(tasks):
            done = await next_done
            if done is not None:
                index, question, answers = done
                write(index, question, [a.text for a in answers], [a.finish_reason for a in answers])
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await model.close()
    if failed:
        raise PacosError(f"{config.url} gave no usable answer to {len(failed)} question(s) (first: {failed[0]}); "
                         "the others are written: rerun the same command to ask these again")
