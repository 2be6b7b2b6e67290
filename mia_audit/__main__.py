"""`python -m mia_audit`: the command line."""

from mia_audit.cli import main

main()
