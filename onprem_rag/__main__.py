"""``python -m onprem_rag`` runs the ``rag`` command."""

from onprem_rag.cli import main

main()
