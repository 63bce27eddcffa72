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
