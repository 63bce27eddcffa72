.PHONY: run test test-fast install lint pipelines
run:            ## install, ingest the sample documents, serve on http://127.0.0.1:8000
	scripts/quickstart.sh
test:           ## install dev extras and test tools, lint, type-check, run every test (what CI runs)
	scripts/test.sh
test-fast:      ## the edit-test loop: tests that need no browser, llama.cpp, Open WebUI or platform SDKs
	scripts/test.sh --fast
install:        ## the development install (.venv)
	scripts/install.sh dev
lint:           ## ruff, ruff format --check, mypy
	test -x .venv/bin/ruff || scripts/install.sh fast
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy
pipelines:      ## render deploy/ (Argo, Kubeflow Pipelines, Katib) with the SDKs in .venv-deploy
	scripts/install_deploy.sh >/dev/null
	PYTHONPATH=. .venv-deploy/bin/python -m deploy.render
.PHONY: image image-test
image:          ## build the container image with podman, air-gapped from wheelhouse/ (see charts/README.md)
	scripts/image.sh
image-test:     ## build the image, then ingest, serve (cited answer) and eval in it read-only as uid 10001
	scripts/image_test.sh

.PHONY: bench
BENCH_DATA ?= ../shared/data
BENCH_OUT ?= bench-results
# A team's own data goes to bench-results/pages, never over the project's pages.
BENCH_PAGES ?= $(if $(BENCH_CORPUS),$(BENCH_OUT)/pages,docs/benchmarks)
# BENCH_LLM=1: also the answers and eval runs with the bundled Gemma 3 270M (extra local-llm; hours more).
BENCH_LLM ?= 0
# A team's own data: BENCH_CORPUS=folder [BENCH_QUESTIONS=cases.jsonl] measures it with the same scripts.
BENCH_OWN = $(if $(BENCH_CORPUS),--corpus $(BENCH_CORPUS)) $(if $(BENCH_QUESTIONS),--questions $(BENCH_QUESTIONS))
BENCH_CORPUS_ONLY = $(if $(BENCH_CORPUS),--corpus $(BENCH_CORPUS))
# Quality benchmarks of a team's corpus need its questions; without them they are left out, saying so.
BENCH_QSKIP = $(if $(BENCH_CORPUS),$(if $(BENCH_QUESTIONS),,echo "skipped: needs BENCH_QUESTIONS with BENCH_CORPUS" ||))
BENCH_PY = PYTHONPATH=. HF_HUB_OFFLINE=1 ANONYMIZED_TELEMETRY=False TOKENIZERS_PARALLELISM=false .venv/bin/python
bench:          ## every benchmark (hours): JSON in bench-results/, pages in docs/benchmarks/; BENCH_DATA=shared data folder
	mkdir -p $(BENCH_OUT) $(BENCH_PAGES)
	scripts/install_bench.sh
	$(BENCH_PY) benchmarks/ingest.py --data $(BENCH_DATA) --out $(BENCH_OUT)/ingest.json --page $(BENCH_PAGES)/ingest.md $(BENCH_OWN)
	$(BENCH_PY) benchmarks/batching.py --data $(BENCH_DATA) --out $(BENCH_OUT)/batching.json --page $(BENCH_PAGES)/batching.md $(BENCH_OWN)
	$(BENCH_QSKIP) $(BENCH_PY) benchmarks/retrieval.py --data $(BENCH_DATA) --out $(BENCH_OUT) --page $(BENCH_PAGES)/retrieval.md $(BENCH_OWN)
	$(BENCH_QSKIP) $(BENCH_PY) benchmarks/answers.py --data $(BENCH_DATA) --out $(BENCH_OUT) --page $(BENCH_PAGES)/answers.md $(BENCH_OWN)
	test "$(BENCH_LLM)" != 1 || $(BENCH_QSKIP) $(BENCH_PY) benchmarks/answers.py --data $(BENCH_DATA) --gguf --max-tokens 96 --limit xquad_en=50,allganize_ko_rag=30 --out $(BENCH_OUT) --page $(BENCH_PAGES)/answers-gguf.md $(BENCH_OWN)
	$(BENCH_PY) benchmarks/service.py --out $(BENCH_OUT)/service.json --page $(BENCH_PAGES)/service.md $(BENCH_OWN)
	$(BENCH_PY) benchmarks/service.py --load --out $(BENCH_OUT)/service-load.json --page $(BENCH_PAGES)/service-load.md $(BENCH_OWN)
	$(BENCH_QSKIP) $(BENCH_PY) benchmarks/eval.py --data $(BENCH_DATA) $(if $(filter 1,$(BENCH_LLM)),,--no-llm) --out $(BENCH_OUT)/eval --page $(BENCH_PAGES)/eval.md $(BENCH_OWN)
	$(BENCH_PY) benchmarks/parse_limits.py --data $(BENCH_DATA) --out $(BENCH_OUT)/parse_limits.json --page $(BENCH_PAGES)/parse_limits.md $(BENCH_CORPUS_ONLY)
	$(BENCH_PY) benchmarks/reads.py --out $(BENCH_OUT)/reads.json --page $(BENCH_PAGES)/reads.md $(BENCH_CORPUS_ONLY)
	$(BENCH_PY) benchmarks/docsites.py --out $(BENCH_OUT)/docsites.json --page $(BENCH_PAGES)/docsites.md $(BENCH_CORPUS_ONLY)
	$(BENCH_PY) benchmarks/hwp_parsers.py --corpus $(or $(BENCH_CORPUS),$(BENCH_DATA)/hwp_samples) --out $(BENCH_OUT)/hwp_parsers.json --page $(BENCH_PAGES)/hwp_parsers.md
	# Scale: 10k, 100k and 1M chunks in each store, then the service over the largest (about 3 hours here).
	$(BENCH_PY) benchmarks/scale.py --data $(BENCH_DATA) --service --out $(BENCH_OUT)/scale.json --page $(BENCH_PAGES)/scale.md $(BENCH_OWN)
	# Benchmarks other parts of the project add; each takes the same options (benchmarks/common.py).
	for name in refusal diversity ocr; do \
		if test -f benchmarks/$$name.py; then \
			$(BENCH_PY) benchmarks/$$name.py --data $(BENCH_DATA) --out $(BENCH_OUT)/$$name.json --page $(BENCH_PAGES)/$$name.md $(BENCH_OWN) || exit 1; \
		fi; \
	done
