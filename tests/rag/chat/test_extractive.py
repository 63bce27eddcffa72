"""ExtractiveChat: quotes the best source sentences with [n]; says so when the sources hold nothing."""

from __future__ import annotations

from rag.chat.extractive import NOT_FOUND, ExtractiveChat, answer, split_sentences
from rag.config import Settings
from rag.registry import make_chat
from rag.types import ChatRequest, Chunk, GenParams, Message, ScoredChunk

EN = (
    "# Leave policy\n\nEmployees get 25 days of paid vacation per year. Unused days carry over until March, "
    "e.g. up to 5 days.\n\n- Sick leave is unlimited with a doctor's note.\n- Parental leave is 16 weeks.",
    "## Expenses\nTravel must be booked through the portal. Meals are reimbursed up to $50 per day. "
    "Dr. Smith approves exceptions.",
)
KO = (
    "## 휴가 규정\n직원은 매년 25일의 유급 휴가를 받습니다. 사용하지 않은 휴가는 3월까지 이월됩니다.\n"
    "- 병가는 의사 소견서가 있으면 무제한입니다.",
    "출장비는 포털을 통해 신청해야 합니다. 식비는 하루 5만원까지 지원됩니다.",
)


def sources(texts: tuple[str, ...]) -> tuple[ScoredChunk, ...]:
    return tuple(ScoredChunk(Chunk(id=f"c{i}", text=t, source=f"doc{i}.md"), 0.5) for i, t in enumerate(texts))


def request(question: str, texts: tuple[str, ...]) -> ChatRequest:
    return ChatRequest(messages=(Message("user", question),), sources=sources(texts), question=question)


def test_sentences_split_at_ends_but_not_abbreviations_and_headings_are_dropped():
    assert split_sentences(EN[0]) == [
        "Employees get 25 days of paid vacation per year.",
        "Unused days carry over until March, e.g. up to 5 days.",
        "Sick leave is unlimited with a doctor's note.",
        "Parental leave is 16 weeks.",
    ]
    assert split_sentences(EN[1])[-1] == "Dr. Smith approves exceptions."
    assert split_sentences(KO[0]) == [
        "직원은 매년 25일의 유급 휴가를 받습니다.",
        "사용하지 않은 휴가는 3월까지 이월됩니다.",
        "병가는 의사 소견서가 있으면 무제한입니다.",
    ]


def test_table_rows_from_ingestion_are_one_sentence_each_and_the_right_row_is_quoted():
    table = (
        "Every job names a queue.\n\n"
        "Queue: `interactive`; Max run time: 8 hours; Preemptible: no\n"
        "Queue: `batch`; Max run time: 72 hours; Preemptible: no\n\nCheckpoint every 2 hours."
    )
    assert split_sentences(table) == [
        "Every job names a queue.",
        "Queue: interactive; Max run time: 8 hours; Preemptible: no",
        "Queue: batch; Max run time: 72 hours; Preemptible: no",
        "Checkpoint every 2 hours.",
    ]
    text = answer("What is the max run time in the batch queue?", sources((table,)))
    assert text.startswith("Queue: batch; Max run time: 72 hours; Preemptible: no [1]")


def test_english_answer_quotes_the_right_sentence_with_its_source_number():
    text = answer("How many vacation days do employees get?", sources(EN))
    assert text.startswith("Employees get 25 days of paid vacation per year [1].")
    text = answer("What is the meal reimbursement limit?", sources(EN))
    assert "Meals are reimbursed up to $50 per day [2]." in text
    assert answer("How long is parental leave?", sources(EN)).startswith("Parental leave is 16 weeks [1].")


def test_korean_answer_quotes_the_right_sentence_with_its_source_number():
    assert answer("유급 휴가는 며칠인가요?", sources(KO)).startswith("직원은 매년 25일의 유급 휴가를 받습니다 [1].")
    assert answer("식비는 얼마까지 지원되나요?", sources(KO)) == "식비는 하루 5만원까지 지원됩니다 [2]."


def test_no_sources_or_no_overlap_says_it_could_not_find_in_the_question_language():
    assert (
        answer("What is the capital of Mongolia?", sources(EN)) == "I could not find this in the available documents."
    )
    assert answer("회사의 주차 정책은 무엇인가요?", sources(KO)) == "제공된 문서에서 답을 찾을 수 없습니다."
    assert answer("How many vacation days?", ()) == "I could not find this in the available documents."
    assert "[" not in answer("휴가는 며칠인가요?", ())


def test_near_duplicate_sentences_are_quoted_once():
    dup = ("Refunds are issued within 30 days of purchase.", "Refunds are issued within 30 days of purchase!")
    text = answer("When are refunds issued?", sources(dup))
    assert text.count("Refunds are issued") == 1


async def test_streams_word_by_word_and_ends_with_stop_and_usage():
    chat = make_chat(Settings(), "extractive://")
    assert isinstance(chat, ExtractiveChat) and await chat.health()
    req = request("How long is parental leave?", EN)
    deltas = [d async for d in chat.stream(req)]
    text = "".join(d.text for d in deltas)
    assert text == answer(req.question, req.sources)
    assert len([d for d in deltas if d.text]) >= 3
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens == len(text.split())
    again = "".join([d.text async for d in chat.stream(req)])
    assert again == text


async def test_max_tokens_cuts_the_answer_to_that_many_words_with_finish_reason_length():
    chat = ExtractiveChat()
    full = request("How long is parental leave?", EN)
    whole = "".join([d.text async for d in chat.stream(full)])
    assert len(whole.split()) > 4
    cut = ChatRequest(messages=full.messages, sources=full.sources, question=full.question,
                      params=GenParams(max_tokens=4))  # fmt: skip
    deltas = [d async for d in chat.stream(cut)]
    text = "".join(d.text for d in deltas)
    assert text.split() == whole.split()[:4]
    assert deltas[-1].finish_reason == "length"
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens == 4


async def test_stop_ends_the_answer_before_the_first_stop_sequence_and_a_long_limit_changes_nothing():
    chat = ExtractiveChat()
    full = request("How long is parental leave?", EN)
    whole = "".join([d.text async for d in chat.stream(full)])
    word = whole.split()[2]
    params = GenParams(stop=(word, "never-there"), max_tokens=1000, seed=3)
    stopped = ChatRequest(messages=full.messages, sources=full.sources, question=full.question, params=params)
    deltas = [d async for d in chat.stream(stopped)]
    text = "".join(d.text for d in deltas)
    assert text == whole[: whole.index(word)]
    assert deltas[-1].finish_reason == "stop"


def test_markdown_emphasis_links_html_and_anchors_are_quoted_as_plain_text():
    text = (
        '<a id="scope"></a>The **Scope** of a <code>CustomResourceDefinition</code> is set by '
        "[`spec.scope`](#spec-scope) and is _either_ cluster-wide or namespaced &amp; immutable. "
        "Objects live under `/apis/<group>/<version>/` paths."
    )
    assert split_sentences(text) == [
        "The Scope of a CustomResourceDefinition is set by spec.scope and is either cluster-wide or namespaced "
        "& immutable.",
        "Objects live under /apis/<group>/<version>/ paths.",
    ]
    reply = answer("What sets the scope of a CustomResourceDefinition?", sources((text,)))
    assert reply.startswith("The Scope of a CustomResourceDefinition is set by spec.scope")
    assert not any(mark in reply for mark in ("**", "<a", "<code>", "](", "&amp;", "`"))


def test_a_table_row_reads_as_key_value_whether_ingested_or_left_as_pipes():
    ingested = "column 1: **Scope**; column 2: cluster-scoped\ncolumn 1: **Kind**; column 2: `Pod`"
    assert split_sentences(ingested) == ["Scope: cluster-scoped", "Kind: Pod"]
    piped = "| Queue | Max run time |\n|---|---|\n| **batch** | 72 hours |\n| interactive | 8 hours |"
    assert split_sentences(piped) == [
        "Queue: batch; Max run time: 72 hours",
        "Queue: interactive; Max run time: 8 hours",
    ]
    headerless = "| | |\n|---|---|\n| Scope | cluster-scoped |"
    assert split_sentences(headerless) == ["Scope: cluster-scoped"]
    assert answer("What is the scope?", sources((ingested,))) == "Scope: cluster-scoped [1]"


def test_an_answer_never_starts_with_a_cut_sentence_or_a_list_item_stub():
    chunk = (
        "ted by the scheduler when the quota of the team is exceeded. Jobs over the quota are preempted first.\n\n"
        "The preemption rules are:\n- **Quota**\n- Preempted jobs are requeued with their priority kept."
    )
    assert split_sentences(chunk) == [
        "Jobs over the quota are preempted first.",
        "Preempted jobs are requeued with their priority kept.",
    ]
    reply = answer("Which jobs are preempted when the quota is exceeded?", sources((chunk,)))
    assert reply.startswith("Jobs over the quota are preempted first [1].")
    assert "ted by" not in reply and "rules are" not in reply


def test_code_is_quoted_only_when_the_question_asks_for_it():
    chunk = (
        "Install it as below.\n\n```bash\npip install kfp==2.9.0\n```\n\n"
        '{"sdk": "kfp", "version": "2.9.0", "pinned": true}\n\nThe SDK version is pinned to 2.9.0 on the platform.'
    )
    prose = answer("Which version is the SDK pinned to?", sources((chunk,)))
    assert prose.startswith("The SDK version is pinned to 2.9.0 on the platform [1].")
    assert "pip install" not in prose and "{" not in prose
    asked = answer("What command installs the kfp SDK?", sources((chunk,)))
    assert "pip install kfp==2.9.0" in asked


def test_yaml_lines_outside_a_fence_are_code_and_left_out_of_a_prose_answer():
    chunk = (
        "Large language models use the runtime hari-vllm-runtime.\n"
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: qwen-7b\n"
        "  runtime: hari-vllm-runtime"
    )
    assert split_sentences(chunk) == ["Large language models use the runtime hari-vllm-runtime."]
    assert answer("Which runtime serves large language models?", sources((chunk,))) == (
        "Large language models use the runtime hari-vllm-runtime [1]."
    )
    assert "kind: InferenceService" in answer("Show the YAML manifest of the InferenceService", sources((chunk,)))


def test_rows_of_a_docx_table_are_named_by_its_first_row_and_korean_rows_are_quoted():
    chunk = (
        "담당 부서 연락처\n\n부서 | 담당 업무 | 연락처\n인사팀 | 계정 발급, 휴가 | 내선 1200\n"
        "정보보안팀 | 보안 사고 신고 | 내선 2119"
    )
    assert split_sentences(chunk)[1:] == [
        "부서: 인사팀; 담당 업무: 계정 발급, 휴가; 연락처: 내선 1200",
        "부서: 정보보안팀; 담당 업무: 보안 사고 신고; 연락처: 내선 2119",
    ]
    assert "내선 2119 [1]" in answer("보안 사고는 어느 번호로 신고하나요?", sources((chunk,)))


def test_a_korean_question_weighs_the_bigrams_of_its_content_morphemes_only():
    from rag.lexical.tokens import question_terms

    question = "앞으로 교체되어질 CCTV의 수는 얼마나 되며, 이것이 관제의 범위에 어떤 영향을 미칠 것으로 예상하는가?"
    words, plain = question_terms(question, morphemes=False)
    _, content = question_terms(question)
    assert {"교체", "관제", "범위", "영향", "예상"} <= content < plain
    assert not content & {"것으", "는가", "상하", "체되", "어질", "향을"} and {"것으", "는가", "체되"} <= plain
    assert {"cctv", "cctv의"} <= words  # the Latin part of a word written into Korean is a word too
    assert question_terms("휴가", morphemes=True) == question_terms("휴가", morphemes=False)
    assert question_terms("Who won the 1998 World Cup?") == question_terms("Who won the 1998 World Cup?", False)


def test_question_terms_no_sentence_holds_do_not_keep_a_matching_sentence_out():
    turbine = (
        "A steam turbine consists of one or more rotors mounted on a drive shaft. The rotors have blades at the outer "
        "edge. The stator redirects the steam onto the next rotor stage. A turbine rotor turns one way only. Steam "
        "acts upon these blades. A condenser provides a vacuum. Turbines are efficient at high speed.",
    )
    # "another" and "term" occur nowhere: counted, they left "rotor" (in 4 of 7 sentences) under the floor.
    text = answer("What is another term for rotors?", sources(turbine))
    assert text.startswith("A steam turbine consists of one or more rotors mounted on a drive shaft [1].")
    assert answer("What is another term for quasars?", sources(turbine)) == NOT_FOUND["en"]
