"""OCR benchmark: character error rate per language and variant, and retrieval hit@5 on OCR'd vs original text.

Pages are rendered at run time from two BEIR folders (Korean: allganize_ko_rag, English: xquad_en; nothing is
downloaded): the gold passages of the first ``--pages`` questions of each set (questions taken in SHA-256
order of their ids), each cut to ``--max-chars`` at a line or word boundary, drawn on an A4 page at 300 dpi
(12 pt) in fonts taken in turn (Korean: four Nanum faces; English: DejaVu Sans, Serif, Sans Mono), saved as
PNG and read by the ingestion's own image parser (``ingest.formats.parse_image``, default settings: the
Hangul script model, Tesseract page mode 4). Variants of the first ``--variant-pages`` pages: Gaussian
noise, a 1.5° rotation, a blur, a 150-dpi scan, and the clean page read with Tesseract's automatic layout
(page mode 3) or with the kor+eng models.

CER = Levenshtein distance / reference length, summed over the pages of a language (micro-average), after
NFC normalisation and with every whitespace character removed from both texts: line breaks and the
spacing of a wrapped layout are not errors; Korean word spacing is not scored.

Retrieval: the whole corpus of each set is indexed twice in a memory store with the bundled MiniLM and BM25
through ``rag.retrieval.Retriever`` with default settings (the service's path), once as is and once with
the rendered pages replaced by their clean OCR text; every question of those pages asks for its gold
passage, hit@5 = it is among the first five results.

    .venv/bin/python benchmarks/ocr.py --data /work/shared/data
    .venv/bin/python benchmarks/ocr.py --data /work/shared/data --pages 8 --variant-pages 4   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import add_data_options, check_data_options
from ingest.formats import parse_image
from ingest.ocr import OcrOptions, unavailable
from rag.config import RetrievalSettings, Settings
from rag.registry import make_embedder
from rag.retrieval import Retriever
from rag.stores.memory import MemoryStore
from rag.types import Chunk

NANUM, DEJAVU = Path("/usr/share/fonts/truetype/nanum"), Path("/usr/share/fonts/truetype/dejavu")
FONTS = {
    "ko": [NANUM / f for f in ("NanumGothic.ttf", "NanumMyeongjo.ttf", "NanumBarunGothic.ttf", "NanumSquareR.ttf")],
    "en": [DEJAVU / f for f in ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")],
}
SETS = {"ko": "allganize_ko_rag/beir", "en": "xquad_en/beir"}
PAGE = (2480, 3508)  # A4 at 300 dpi
MARGIN, FONT_PX = 200, 50  # 12 pt at 300 dpi
VARIANTS = ("noise", "rotate", "blur", "150dpi", "psm3", "kor+eng")


@dataclass(frozen=True)
class Page:
    """One rendered passage: its corpus id, text and the questions whose gold passage it is."""

    lang: str
    doc_id: str
    text: str
    questions: tuple[str, ...]
    font: Path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def cut(text: str, limit: int) -> str:
    """The text up to ``limit`` characters, ended at a line or word boundary."""
    text = unicodedata.normalize("NFC", text).strip()
    if len(text) <= limit:
        return text
    head = text[:limit]
    end = max(head.rfind("\n"), head.rfind(" "))
    return head[: end if end > limit // 2 else limit].strip()


def load(lang: str, data: Path, pages: int, max_chars: int) -> tuple[list[dict[str, Any]], list[Page]]:
    """The set's corpus and the pages to render (gold passages of the first questions by id hash)."""
    folder = data / SETS[lang]
    corpus = read_jsonl(folder / "corpus.jsonl")
    by_id = {d["_id"]: d for d in corpus}
    gold: dict[str, str] = {}
    for line in (folder / "qrels.tsv").read_text().splitlines()[1:]:
        qid, doc, score = line.split("\t")
        if int(score) > 0:
            gold[qid] = doc
    queries = sorted(read_jsonl(folder / "queries.jsonl"), key=lambda q: hashlib.sha256(q["_id"].encode()).hexdigest())
    chosen: dict[str, list[str]] = {}
    for q in queries:
        doc = gold.get(q["_id"])
        if doc is None or len(by_id[doc]["text"].strip()) < 200:
            continue  # cover pages and the like: nothing to read
        if doc in chosen or len(chosen) < pages:
            chosen.setdefault(doc, []).append(q["text"])
    fonts = FONTS[lang]
    out = [
        Page(lang, doc, cut(by_id[doc]["text"], max_chars), tuple(qs), fonts[i % len(fonts)])
        for i, (doc, qs) in enumerate(chosen.items())
    ]
    return corpus, out


def load_own(
    lang: str, folder: Path, questions: Path, pages: int, max_chars: int
) -> tuple[list[dict[str, Any]], list[Page]]:
    """A team's corpus (parsed as ingestion parses it) and the pages to render: the gold documents of its
    questions in ``lang`` (Korean: mostly Hangul), in question order."""
    from benchmarks.common import corpus_set
    from rag.lang import hangul_ratio

    imported = corpus_set(folder, questions)
    corpus = [{"_id": d.id, "text": d.text} for d in imported.corpus]
    by_id = {d["_id"]: d for d in corpus}
    chosen: dict[str, list[str]] = {}
    for case in imported.cases:
        doc = next((by_id[s] for s in case.sources if s in by_id), None)
        if doc is None or (hangul_ratio(doc["text"]) > 0.3) != (lang == "ko"):
            continue
        if doc["_id"] in chosen or len(chosen) < pages:
            chosen.setdefault(doc["_id"], []).append(case.question)
    fonts = FONTS[lang]
    out = [
        Page(lang, doc, cut(by_id[doc]["text"], max_chars), tuple(qs), fonts[i % len(fonts)])
        for i, (doc, qs) in enumerate(chosen.items())
    ]
    return corpus, out


def wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Lines that fit ``width`` pixels: greedy by words, a word longer than a line broken by characters."""
    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in para.split():
            candidate = f"{line} {word}".strip()
            if font.getlength(candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = ""
            for ch in word:
                if font.getlength(line + ch) > width:
                    lines.append(line)
                    line = ""
                line += ch
        lines.append(line)
    return lines


def render(page: Page) -> tuple[Image.Image, str]:
    """The page at 300 dpi, and the text as drawn (what fits on one page)."""
    font = ImageFont.truetype(str(page.font), FONT_PX)
    image = Image.new("L", PAGE, 255)
    draw = ImageDraw.Draw(image)
    y, drawn = MARGIN, []
    for line in wrap(page.text, font, PAGE[0] - 2 * MARGIN):
        if y + FONT_PX > PAGE[1] - MARGIN:
            break
        draw.text((MARGIN, y), line, font=font, fill=0)
        drawn.append(line)
        y += int(FONT_PX * 1.6)
    return image, "\n".join(drawn)


def variant(image: Image.Image, name: str, seed: int) -> tuple[Image.Image, int]:
    """A degraded copy and its resolution: noise, rotation, blur or a 150-dpi scan."""
    if name == "noise":
        rng = np.random.default_rng(seed)
        pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 40, (image.height, image.width))
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), 300
    if name == "rotate":
        return image.rotate(1.5, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255), 300
    if name == "blur":
        return image.filter(ImageFilter.GaussianBlur(2.0)), 300
    if name == "150dpi":
        return image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS), 150
    return image, 300


def normalised(text: str) -> str:
    return "".join(unicodedata.normalize("NFC", text).split())


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions), two rows of the dynamic programme."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def ocr(image: Image.Image, dpi: int, options: OcrOptions) -> tuple[str, float]:
    """Text by the ingestion's image parser (a PNG declaring ``dpi``), and the seconds it took."""
    buf = io.BytesIO()
    image.save(buf, "PNG", dpi=(dpi, dpi))
    start = time.perf_counter()
    parsed = parse_image(buf.getvalue(), options)
    return "\n".join(s.text for s in parsed.sections), time.perf_counter() - start


def cer_row(scored: Sequence[tuple[int, int, float]]) -> dict[str, float]:
    errors, length = sum(e for e, _, _ in scored), sum(n for _, n, _ in scored)
    return {
        "pages": len(scored),
        "cer": round(errors / max(length, 1), 4),
        "worst_page_cer": round(max((e / max(n, 1) for e, n, _ in scored), default=0.0), 4),
        "reference_chars": length,
        "seconds_per_page": round(sum(s for _, _, s in scored) / max(len(scored), 1), 2),
    }


async def hit_at_5(
    corpus: list[dict[str, Any]], vectors: np.ndarray, pages: list[Page], texts: dict[str, str], embedder: Any
) -> float:
    """Share of the pages' questions whose gold passage is in the first five results, with ``texts`` indexed.

    ``vectors`` are the corpus's own embeddings; only the passages ``texts`` replaces are embedded again.
    """
    store = MemoryStore("ocr_bench")
    await store.open(embedder.info, create=True)
    chunks = [
        Chunk(id=hashlib.sha256(d["_id"].encode()).hexdigest()[:32], text=texts.get(d["_id"], d["text"]),
              title="", source=d["_id"])
        for d in corpus
    ]  # fmt: skip
    vectors = vectors.copy()
    replaced = [i for i, d in enumerate(corpus) if d["_id"] in texts]
    if replaced:
        vectors[replaced] = await embedder.embed_documents([chunks[i].text for i in replaced])
    await store.upsert(chunks, vectors)
    retriever = Retriever(store, embedder, RetrievalSettings())
    hits = total = 0
    for page in pages:
        for question in page.questions:
            found = [h.chunk.source for h in await retriever.search(question, 5)]
            hits += page.doc_id in found
            total += 1
    await store.close()
    return round(hits / max(total, 1), 3)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    options = OcrOptions()
    reason = unavailable(options)
    if reason:
        raise SystemExit(f"benchmarks/ocr.py: {reason}")
    embedder = make_embedder(Settings())
    results: dict[str, Any] = {}
    for lang in ("ko", "en"):
        if args.corpus is not None:
            corpus, pages = load_own(lang, args.corpus, args.questions, args.pages, args.max_chars)
            if not pages:
                print(f"{lang}: no question of --questions has its gold document in this language", flush=True)
                continue
        else:
            corpus, pages = load(lang, args.data, args.pages, args.max_chars)
        scored: dict[str, list[tuple[int, int, float]]] = {"clean": []}
        ocr_texts, originals = {}, {}
        for n, page in enumerate(pages):
            image, drawn = render(page)
            reference = normalised(drawn)
            originals[page.doc_id] = drawn
            text, seconds = ocr(image, 300, options)
            ocr_texts[page.doc_id] = text
            scored["clean"].append((levenshtein(reference, normalised(text)), len(reference), seconds))
            cer = scored["clean"][-1][0] / len(reference)
            print(f"{lang} page {n + 1}/{len(pages)} {page.font.name}: CER {cer:.3f} in {seconds:.1f} s", flush=True)
            if n >= args.variant_pages:
                continue
            for name in VARIANTS:
                degraded, dpi = variant(image, name, seed=n)
                opts = replace(options, psm=3) if name == "psm3" else options
                opts = replace(options, languages=name) if name == "kor+eng" else opts
                text, seconds = ocr(degraded, dpi, opts)
                scored.setdefault(name, []).append((levenshtein(reference, normalised(text)), len(reference), seconds))
        print(f"{lang}: embedding the corpus ({len(corpus)} passages)", flush=True)
        vectors = await embedder.embed_documents([d["text"] for d in corpus])
        # The clean row again over the variant pages only, so that variants compare on the same pages.
        scored["clean (variant pages)"] = scored["clean"][: args.variant_pages]
        results[lang] = {
            "cer": {name: cer_row(rows) for name, rows in scored.items()},
            "hit_at_5": {
                "original": await hit_at_5(corpus, vectors, pages, originals, embedder),
                "ocr": await hit_at_5(corpus, vectors, pages, ocr_texts, embedder),
                "questions": sum(len(p.questions) for p in pages),
                "corpus": len(corpus),
            },
            "fonts": sorted({p.font.name for p in pages}),
        }
    return results


def tesseract_version() -> str:
    exe = shutil.which("tesseract") or "tesseract"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else "unknown"


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    names = {"ko": "Korean (allganize_ko_rag pages)", "en": "English (xquad_en paragraphs)"}
    if meta.get("corpus"):
        names = {"ko": f"Korean ({meta['corpus']})", "en": f"English ({meta['corpus']})"}
    lines = [
        "# OCR benchmark",
        "",
        f"Machine: {meta['machine']}. Date: {meta['date']}. {meta['tesseract']}, languages {meta['languages']}, "
        f"page mode {meta['psm']}, rendered at {meta['dpi']} dpi.",
        "",
        f"Command: `{meta['command']}` ({meta['wall_s']} s)",
        "",
        "Pages are rendered from the data sets' passages (each cut to "
        f"{meta['max_chars']} characters) on A4 at 300 dpi, 12 pt, fonts in turn, and read by the ingestion's "
        "image parser with the default settings. CER = edit distance / reference length over all pages of a "
        "language, after NFC and with all whitespace removed from both texts (line breaks and spacing are not "
        "scored). Variants degrade the first pages: `noise` Gaussian σ=40 grey levels, `rotate` 1.5°, `blur` "
        "Gaussian radius 2 px, `150dpi` the page scanned at half the resolution, `psm3` the clean page read with "
        "Tesseract's automatic layout (page mode 3) instead of the default 4, `kor+eng` the clean page read with the "
        "kor and eng models instead of the default Hangul script model. `clean (variant pages)` is the clean "
        "row on the same pages as the variants.",
        "",
        "| language | variant | pages | CER | worst page CER | s/page |",
        "|---|---|---|---|---|---|",
    ]
    for lang, res in results.items():
        for name, row in res["cer"].items():
            lines.append(
                f"| {names[lang]} | {name} | {row['pages']} | {row['cer']:.2%} | {row['worst_page_cer']:.2%} | "
                f"{row['seconds_per_page']} |"
            )
    lines += [
        "",
        "Retrieval, hit@5: the whole corpus indexed with the bundled MiniLM + BM25 (default retrieval settings, "
        "memory store), once with the original text and once with the rendered pages replaced by their clean OCR "
        "text; the questions are those whose gold passage was rendered.",
        "",
        "| language | questions | corpus | hit@5 original | hit@5 OCR | fonts |",
        "|---|---|---|---|---|---|",
    ]
    for lang, res in results.items():
        h = res["hit_at_5"]
        lines.append(
            f"| {names[lang]} | {h['questions']} | {h['corpus']} | {h['original']:.3f} | {h['ocr']:.3f} | "
            f"{', '.join(res['fonts'])} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="folder holding allganize_ko_rag/ and xquad_en/ (the public sets)")
    add_data_options(
        ap,
        corpus="a folder of your own documents: the gold documents of --questions are rendered, OCR'd and searched",
        questions="your questions (eval case file); their gold documents are the pages rendered",
    )
    ap.add_argument("--out", type=Path, default=Path("bench-results"), help="ocr.json, or this folder's ocr.json")
    ap.add_argument("--pages", type=int, default=24, help="pages rendered per language")
    ap.add_argument("--variant-pages", type=int, default=8, help="of which this many also in every variant")
    ap.add_argument("--max-chars", type=int, default=700, help="characters of a passage rendered")
    args = ap.parse_args(argv)
    check_data_options(args)
    if args.corpus is not None and args.questions is None:
        raise SystemExit("--corpus needs --questions (their gold documents are the pages rendered)")
    if args.corpus is None and args.data is None:
        raise SystemExit("give --data (the public sets) or --corpus with --questions")
    page_path = args.page or Path("docs/benchmarks/ocr.md")
    random.seed(0)
    start = time.perf_counter()
    results = asyncio.run(run(args))
    options = OcrOptions()
    meta = {
        "machine": f"{os.cpu_count()} CPU cores (shared), no GPU, {platform.machine()}, Python "
        f"{platform.python_version()}",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "tesseract": tesseract_version(),
        "languages": options.languages,
        "psm": options.psm,
        "dpi": options.dpi,
        "max_chars": args.max_chars,
        "corpus": str(args.corpus) if args.corpus else "",
        "command": "python benchmarks/ocr.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    out = args.out if args.out.suffix == ".json" else args.out / "ocr.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2, ensure_ascii=False))
    report = markdown(results, meta)
    page_path.parent.mkdir(parents=True, exist_ok=True)
    page_path.write_text(report + "\n", encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
