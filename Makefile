.PHONY: run test install lint bench pipelines
run:            ## install, ingest the sample documents, serve on http://127.0.0.1:8000
	scripts/quickstart.sh
test:           ## install dev extras, lint, type-check, run every test
	scripts/test.sh
install:
	scripts/install.sh dev
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy
pipelines:      ## render deploy/ (Argo, Kubeflow Pipelines, Katib) with the SDKs in .venv-deploy
	scripts/install_deploy.sh >/dev/null
	PYTHONPATH=. .venv-deploy/bin/python -m deploy.render
