"""Platform manifests made from Python: Argo Workflows (hera), Kubeflow Pipelines (kfp), Katib (kubeflow-katib).

``python -m deploy.render`` (``make pipelines``) writes the YAML under ``deploy/``; ``--check`` fails when the
checked-in files differ from a fresh render. The SDKs live in ``.venv-deploy`` (``scripts/install_deploy.sh``).
Every container runs the ``rag`` command line of the project's image; :mod:`deploy.commands` builds those
command lines in one place for all three.
"""
