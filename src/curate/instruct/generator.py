"""`InstructionGenerator`: the engine-free entry point the build (and the Beam wrapper) call.

    gen = InstructionGenerator(config); gen.setup()
    outputs = gen.generate(record, distractor_pool)        # one record
    outputs = gen.generate_batch(records, distractor_pool)  # LLM calls run concurrently
    gen.usage()                                            # for the manifest

Every input record ends with at least one output: instruction dicts, `Rejected` markers (the
record is an instruction-shaped dict saying which task was dropped and why) or `Failed` dead
letters (stage `instruct.<generator>`, with the source record id). Outputs come back in input
order, so a batch result does not depend on thread timing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from curate.instruct import records as R
from curate.instruct.caption_attributes import CaptionAttributeGenerator, templated_generator
from curate.instruct.config import InstructConfig
from curate.instruct.llm import Answer, ChatClient, prompt_input
from curate.instruct.templated import GENERATOR as TEMPLATED
from curate.instruct.templated import TemplatedGenerator
from curate.instruct.verify import ConceptExtractor, Verifier, check_structure
from curate.stages import Failed, Record, Rejected

LLM = "llm"
LLM_TASK = "llm.conversation"
Output = dict[str, Any] | Rejected | Failed


def _failed(record: Record, exc: BaseException, generator: str) -> Failed:
    return Failed.from_exception(
        exc,
        stage=f"instruct.{generator}",
        source_uri=str(
            record.get("source_uri") or record.get("image_uri") or record.get("record_id") or ""
        ),
        unit_id=record.get("unit_id"),
        record_id=record.get("record_id"),
    )


def record_outcome(outputs: list[Output]) -> str:
    """How one source record ends, for per-record accounting (`in == out + rejected + errors`).

    `generate` may return several candidates per record (instructions, rejected candidates,
    failed generators); the record is `out` when at least one instruction was kept, else
    `rejected` when some candidate was rejected, else `failed`.
    """
    if any(isinstance(o, dict) for o in outputs):
        return "out"
    if any(isinstance(o, Rejected) for o in outputs):
        return "rejected"
    return "failed"


class InstructionGenerator:
    def __init__(
        self, config: InstructConfig, concept_extractor: ConceptExtractor | None = None
    ) -> None:
        self.config = config
        self._concept_extractor = concept_extractor
        self.templated: TemplatedGenerator | CaptionAttributeGenerator | None = None
        self.client: ChatClient | None = None
        self.verifier: Verifier | None = None
        self._pool: ThreadPoolExecutor | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def setup(self) -> None:
        cfg = self.config
        if TEMPLATED in cfg.generators and self.templated is None:
            # the template file's `kind` picks CheXinstruct-style tasks or caption attributes
            self.templated = templated_generator(
                cfg.templated.templates, cfg.templated.tasks, include_image=cfg.include_image
            )
        if LLM in cfg.generators and self.client is None:
            self.client = ChatClient(cfg.llm)
            self.client.setup()
            self.verifier = Verifier(
                cfg.verify.rules,
                cfg.verify.grounding,
                concept_extractor=self._concept_extractor,
                extractor_spec=cfg.verify.concept_extractor,
            )
            self._pool = ThreadPoolExecutor(
                max_workers=cfg.llm.concurrency, thread_name_prefix="curate-llm"
            )

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self.client is not None:
            self.client.close()

    def usage(self) -> dict[str, Any]:
        return self.client.usage.as_dict() if self.client else {}

    # -- generation ---------------------------------------------------------------------------

    def generate(self, record: Record, distractor_pool: list[dict[str, Any]]) -> list[Output]:
        return self.generate_batch([record], distractor_pool)[0]

    def generate_batch(
        self, records: list[Record], distractor_pool: list[dict[str, Any]]
    ) -> list[list[Output]]:
        if not self.config.enabled:
            return [[] for _ in records]
        self.setup()
        results: list[list[Output]] = [[] for _ in records]
        readable: list[int] = []
        for index, record in enumerate(records):
            try:
                R.source_schema(record)
                if not record.get("record_id"):
                    raise R.UnknownSourceRecord("record without record_id")
                readable.append(index)
            except R.UnknownSourceRecord as exc:
                results[index] = [_failed(record, exc, "input")]
        for index in readable:
            results[index] = self._templated(records[index], distractor_pool)
        if self.client is not None:
            llm_outputs = self._llm_batch([records[i] for i in readable])
            for index, outputs in zip(readable, llm_outputs):
                results[index].extend(outputs)
        return results

    def _templated(self, record: Record, pool: list[dict[str, Any]]) -> list[Output]:
        if self.templated is None:
            return []
        try:
            samples = self.templated.generate(record, pool)
            for sample in samples:
                check_structure(sample["conversations"])  # a template bug fails loudly
        except Exception as exc:  # noqa: BLE001 - dead letter, never a crashed run
            return [_failed(record, exc, TEMPLATED)]
        if samples:
            return list(samples)
        stub = self._stub(
            record, "templated", TEMPLATED, template_version=self.templated.template_set.ref
        )
        return [Rejected(stub, "no_applicable_template_task", stage="instruct.templated")]

    def _stub(self, record: Record, task: str, generator: str, **provenance: Any) -> dict[str, Any]:
        """An instruction-shaped dict for a reject: which source record, generator and task."""
        stub = R.new_instruction(
            record,
            index=0,
            task=task,
            task_family="none",
            conversations=[],
            answer_type="none",
            answer=None,
            generator=generator,
            include_image=False,
            **provenance,
        )
        stub["image"] = None
        return stub

    def _llm_batch(self, records: list[Record]) -> list[list[Output]]:
        assert self.client is not None and self._pool is not None
        client = self.client
        outputs: list[list[Output]] = [[] for _ in records]
        todo: list[tuple[int, str]] = []
        for index, record in enumerate(records):
            try:
                source = R.source_text(record)
                skip = self._llm_skip_reason(record, source)
                if skip:
                    outputs[index] = [Rejected(self._llm_stub(record), skip, stage="instruct.llm")]
                    continue
                message = prompt_input(record, client.prompt)
                hit = client.cached(message)  # hits are answered here, without a thread hop
                if hit is not None:
                    outputs[index] = [self._verified(record, hit, source)]
                else:
                    todo.append((index, message))
            except Exception as exc:  # noqa: BLE001
                client.usage.add(failed=1)
                outputs[index] = [_failed(record, exc, LLM)]
        futures = [(index, self._pool.submit(client.answer, message)) for index, message in todo]
        for index, future in futures:
            record = records[index]
            try:
                outputs[index] = [self._verified(record, future.result(), R.source_text(record))]
            except Exception as exc:  # noqa: BLE001 - budget, HTTP and parse failures
                failure = _failed(record, exc, LLM)
                client.usage.add(
                    **(
                        {"budget_exceeded": 1}
                        if failure.reason == "budget_exceeded"
                        else {"failed": 1}
                    )
                )
                outputs[index] = [failure]
        return outputs

    def _llm_skip_reason(self, record: Record, source: str) -> str | None:
        if not R.has_image(record):
            return "no_image"
        if not source:
            return "no_source_text"
        return None

    def _llm_stub(self, record: Record) -> dict[str, Any]:
        assert self.client is not None
        return self._stub(
            record,
            LLM_TASK,
            LLM,
            prompt_version=self.client.prompt.ref,
            model=self.config.llm.model,
        )

    def _verified(self, record: Record, answer: Answer, source: str) -> Output:
        assert self.client is not None and self.verifier is not None
        verdict = self.verifier.check_text(answer.content, source, record)
        turns = verdict.turns or [{"from": "gpt", "value": answer.content}]
        instruction = R.new_instruction(
            record,
            index=0,
            task=LLM_TASK,
            task_family="conversation",
            conversations=turns,
            answer_type="open",
            answer=None,
            generator=LLM,
            include_image=self.config.include_image,
            prompt_version=self.client.prompt.ref,
            model=self.config.llm.model,
            cache_key=answer.cache_key,
            flags=verdict.flags,
        )
        if verdict.kept:
            return instruction
        instruction["image"] = None  # rejects keep the text for audit, not the pixels
        return Rejected(instruction, str(verdict.reason), stage="instruct.llm")
